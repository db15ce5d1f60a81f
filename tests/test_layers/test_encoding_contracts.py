"""Position encodings: the documented contracts of each constructor argument,
default, error message and helper (what the equation tests in
``test_encodings.py`` take for granted)."""
import logging
import math

import pytest
import torch

from convattn_mm.models.encodings import (CONV_INIT_OFFSETS, LogCPB,
                                          QuadraticEncoding,
                                          RelativeBiasTable, RelativeKeys,
                                          RoPE, alpha_for_mass,
                                          check_encoding, conv_centres,
                                          conv_init_encoding, grid_centres,
                                          interpolate_table)
from convattn_mm.ops import PositionCarry

GEOM = dict(num_heads=4, head_dims=8, rank=2, radius=(2, 1), step=(1, 2))
ENCODINGS = [RelativeBiasTable, RelativeKeys, QuadraticEncoding, RoPE, LogCPB]


# --- the shared interface ----------------------------------------------------


@pytest.mark.parametrize('cls', ENCODINGS, ids=lambda c: c.__name__)
def test_constructor_keeps_geometry_and_init_cfg(cls):
    """Every encoding stores the geometry it was built for and hands
    ``init_cfg`` on to mmengine's ``BaseModule``."""
    init_cfg = dict(type='Constant', val=0.0, layer='Linear')
    enc = cls(**GEOM, init_cfg=init_cfg)
    assert (enc.num_heads, enc.head_dims, enc.rank) == (4, 8, 2)
    assert (enc.radius, enc.step) == ((2, 1), (1, 2))
    assert enc.table_shape == (5, 3)
    assert enc.init_cfg == init_cfg


@pytest.mark.parametrize('cls,extra', [
    (RelativeBiasTable, ''), (RelativeKeys, ''), (LogCPB, ''),
    (QuadraticEncoding, ", mode='isotropic'"), (RoPE, ", mode='axial'")
], ids=lambda x: getattr(x, '__name__', x))
def test_extra_repr(cls, extra):
    """``repr`` names the geometry (and the mode where there is one)."""
    enc = cls(**GEOM)
    assert enc.extra_repr() == ('num_heads=4, rank=2, radius=(2, 1), '
                                f'step=(1, 2){extra}')
    assert enc.extra_repr() in repr(enc)


def test_check_encoding_drops_the_package_prefix_only():
    """``check_encoding`` drops exactly ``'convattn_mm.'`` from ``type`` and
    keeps the other keys; a longer dotted name is not an encoding."""
    cfg = dict(type='convattn_mm.RoPE', mode='mixed')
    assert check_encoding(cfg, 'pos') == dict(type='RoPE', mode='mixed')
    assert cfg['type'] == 'convattn_mm.RoPE'  # the argument is not changed
    assert check_encoding(dict(type='LogCPB', hidden_dims=8), 'pos') == dict(
        type='LogCPB', hidden_dims=8)
    assert check_encoding(None, 'pos') is None
    for kind in ('convattn_mm.RoPE.extra', 'convattn_mm.mmdet.RoPE'):
        with pytest.raises(ValueError, match=f'^pos.type={kind!r} is not'):
            check_encoding(dict(type=kind), 'pos')


def test_check_encoding_messages():
    """A config without ``type`` is a TypeError, an unknown type a
    ValueError listing the registered encodings."""
    with pytest.raises(TypeError) as err:
        check_encoding(dict(mode='axial'), 'pos_encoding')
    assert str(err.value) == ("pos_encoding={'mode': 'axial'} must be None "
                              'or a dict with "type"')
    with pytest.raises(TypeError, match=r"^pe='RoPE' must be None or a dict"):
        check_encoding('RoPE', 'pe')
    with pytest.raises(ValueError) as err:
        check_encoding(dict(type='Sinusoidal'), 'pe')
    assert str(err.value) == (
        "pe.type='Sinusoidal' is not a position encoding; choose one of "
        "['LogCPB', 'QuadraticEncoding', 'RelativeBiasTable', "
        "'RelativeKeys', 'RoPE']")


# --- table resizing ----------------------------------------------------------


@pytest.mark.parametrize('rank', [1, 3])
def test_interpolate_table_rank_1_and_3_is_linear(rank):
    """Rank 1 and 3 tables resize (linear / trilinear) centre to centre: a
    linear ramp along each axis stays that ramp."""
    old = torch.linspace(-1, 1, 3)
    new = torch.linspace(-1, 1, 5)

    def ramp(ax):
        grids = torch.meshgrid(*[ax] * rank, indexing='ij')
        return sum((a + 1) * grid for a, grid in enumerate(grids))[None]

    out = interpolate_table(ramp(old), (5, ) * rank, rank)
    torch.testing.assert_close(out, ramp(new))


def test_interpolate_table_keeps_dtype():
    """A float64 table comes back float64 (interpolated in float32)."""
    table = torch.randn(2, 3, 3, dtype=torch.float64)
    out = interpolate_table(table, (5, 5), 2)
    assert out.dtype == torch.float64 and out.shape == (2, 5, 5)
    torch.testing.assert_close(out[:, ::2, ::2], table)


@pytest.mark.parametrize('cls,key', [(RelativeBiasTable, 'table'),
                                     (RelativeKeys, 'keys')])
def test_resize_on_load_logs_to_current_logger(cls, key):
    """Loading another window's table logs the resize (the message names the
    key and both shapes) on mmengine's current logger."""
    from mmengine.logging import MMLogger
    MMLogger.get_instance('convattn_mm_encoding_contracts')
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record.getMessage())
    small = cls(num_heads=2, head_dims=4, rank=1, radius=(1, ), step=(1, ))
    big = cls(num_heads=2, head_dims=4, rank=1, radius=(2, ), step=(1, ))
    shape = tuple(getattr(small, key).shape)
    new_shape = tuple(getattr(big, key).shape)
    logger.addHandler(handler)
    try:
        big.load_state_dict({key: getattr(small, key)}, strict=False)
        assert records == [f'resized {key} from {shape} to {new_shape} '
                           '(checkpoint trained with another window)']
        big.load_state_dict(big.state_dict())  # same shape: nothing to log
        assert len(records) == 1
    finally:
        logger.removeHandler(handler)


# --- RelativeBiasTable / RelativeKeys ----------------------------------------


@pytest.mark.parametrize('cls,key', [(RelativeBiasTable, 'table'),
                                     (RelativeKeys, 'keys')])
def test_tables_start_truncated_normal_with_init_std(cls, key):
    """Learned tables start ~N(0, init_std²): 0.02 by default, else the
    given ``init_std``."""
    geom = dict(num_heads=8, head_dims=8, rank=2, radius=(5, 5), step=(1, 1))
    enc = cls(**geom)
    assert getattr(enc, key).std().item() == pytest.approx(0.02, rel=0.1)
    enc = cls(**geom, init_std=0.1)
    assert getattr(enc, key).std().item() == pytest.approx(0.1, rel=0.1)
    assert getattr(enc, 'init_std', 0.1) == 0.1


def test_relative_keys_default_scale():
    """Without ``scale`` the relative keys use the softmax scale
    ``head_dims ** -0.5``; a given scale is kept."""
    assert RelativeKeys(**GEOM).scale == pytest.approx(8**-0.5)
    assert RelativeKeys(**GEOM, scale=0.3).scale == 0.3


@pytest.mark.parametrize('use_u,use_v', [(True, False), (False, True),
                                         (False, False)])
def test_relative_keys_u_or_v_only(use_u, use_v):
    """With only ``u`` (or only ``v``) the bias is ``scale·(v-u)ᵀr_δ`` with
    the missing one zero, and only ``u`` shifts the query; neither: no bias,
    q untouched."""
    enc = RelativeKeys(**GEOM, use_u=use_u, use_v=use_v, scale=0.5)
    assert (enc.u is not None, enc.v is not None) == (use_u, use_v)
    assert enc.carry == PositionCarry(bias=use_u or use_v, rel_keys=True,
                                      rotation=use_u)
    with torch.no_grad():
        for p in (enc.u, enc.v):
            if p is not None:
                p.normal_()
    offsets = torch.tensor([[0, 0], [1, -2], [-2, 2]])
    r = enc.rel_keys(offsets)  # [H, T, D]
    bias = enc.pos_bias(offsets)
    q = torch.randn(1, 4, 3, 8)
    qs, _ = enc.transform_qk(q, q, None, None)
    if not (use_u or use_v):
        assert bias is None
        assert qs is q
        return
    want = 0.5 * (r * enc.v[:, None]).sum(-1) if use_v else \
        -0.5 * (r * enc.u[:, None]).sum(-1)
    torch.testing.assert_close(bias, want)
    torch.testing.assert_close(qs, q + enc.u[None, :, None] if use_u else q)


def test_relative_keys_u_shift_keeps_query_dtype():
    """The ``u`` shift follows the query's dtype (half-precision runs)."""
    enc = RelativeKeys(**GEOM)
    q = torch.randn(1, 4, 3, 8, dtype=torch.bfloat16)
    qs, ks = enc.transform_qk(q, q, None, None)
    assert qs.dtype == torch.bfloat16 and ks is q


# --- LogCPB ------------------------------------------------------------------


def test_log_cpb_defaults_and_buffer():
    """Swin-V2's 512-wide MLP by default (no bias on the output layer); the
    radius normaliser is a buffer left out of the state dict."""
    enc = LogCPB(**GEOM)
    assert enc.hidden_dims == 512
    assert enc.mlp[0].out_features == 512 and enc.mlp[2].bias is None
    assert LogCPB(**GEOM, hidden_dims=16).mlp[0].out_features == 16
    assert enc.norm.tolist() == [2.0, 2.0]  # radius · step per axis
    assert set(enc.state_dict()) == {'mlp.0.weight', 'mlp.0.bias',
                                     'mlp.2.weight'}


def test_log_cpb_accepts_float64_offsets():
    """Offsets of any dtype are brought to the MLP's dtype: float64 offsets
    give the same bias as integer ones."""
    enc = LogCPB(**GEOM, hidden_dims=16)
    offsets = torch.tensor([[0, 0], [1, -2], [-2, 4]])
    torch.testing.assert_close(enc.pos_bias(offsets.double()),
                               enc.pos_bias(offsets))


# --- QuadraticEncoding -------------------------------------------------------


def test_alpha_for_mass_boundaries():
    """``eps`` must lie strictly inside (0, 1); one offset needs no width
    (0.0), two already do (``ln((1-eps)/eps)``)."""
    for eps in (0, 1, 0.0, 1.0):
        with pytest.raises(ValueError, match=rf'^eps={eps!r} must lie in '):
            alpha_for_mass(9, eps)
    assert alpha_for_mass(1, 0.1) == 0.0
    assert alpha_for_mass(0, 0.1) == 0.0
    assert alpha_for_mass(2, 0.1) == pytest.approx(math.log(9))
    assert alpha_for_mass(9, 0.1, 4.0) == pytest.approx(math.log(72) / 4)


def test_conv_centres_scale_with_step():
    """``conv_centres``: ``CONV_INIT_OFFSETS[h % 9]`` times the step per
    axis, float."""
    got = conv_centres(10, (2, 3))
    want = [[2 * a, 3 * b] for a, b in CONV_INIT_OFFSETS] + [[0, 0]]
    assert got.dtype == torch.float32
    assert got.tolist() == want


def test_grid_centres_row_major_with_step():
    """``grid_centres``: row-major offsets of the kernel grid times the step,
    cycling over heads."""
    got = grid_centres(7, (3, 1), (2, 5))
    assert got.dtype == torch.float32
    assert got.tolist() == [[-2, 0], [0, 0], [2, 0]] * 2 + [[-2, 0]]


def test_conv_init_encoding_config():
    """The backbones' conv-init config, and which overrides it takes."""
    assert conv_init_encoding(0.8) == dict(
        type='QuadraticEncoding', mode='isotropic', init_kernel=3,
        init_mass=0.8, init_centres='conv')
    cfg = conv_init_encoding(
        0.8, dict(type='convattn_mm.QuadraticEncoding', mode='full'))
    assert cfg['type'] == 'QuadraticEncoding' and cfg['mode'] == 'full'
    assert conv_init_encoding(0.8, dict(init_kernel=5))['init_kernel'] == 5
    with pytest.raises(ValueError) as err:
        conv_init_encoding(0.8, dict(type='RoPE'))
    assert str(err.value) == ("pos_encoding.type='RoPE': conv-init needs "
                              "'QuadraticEncoding' (or None)")
    with pytest.raises(ValueError, match=r"^pos_encoding.type='LogCPB': "
                       r"conv_init=True needs 'QuadraticEncoding'"):
        conv_init_encoding(0.8, dict(type='LogCPB'), why='conv_init=True')


def test_quadratic_conv_init_centres():
    """``init_centres='conv'`` puts head h on ``CONV_INIT_OFFSETS[h % 9]``
    times the step (rank 2 only, with the reason in the message)."""
    enc = QuadraticEncoding(num_heads=10, head_dims=4, rank=2, radius=(2, 2),
                            step=(2, 3), init_centres='conv')
    assert enc.init_centres == 'conv'
    assert enc.centres.tolist() == conv_centres(10, (2, 3)).tolist()
    assert enc.centres[1].tolist() == [0, 3]
    with pytest.raises(ValueError) as err:
        QuadraticEncoding(num_heads=4, head_dims=4, rank=3, radius=(1, ) * 3,
                          step=(1, ) * 3, init_centres='conv')
    assert str(err.value) == ("init_centres='conv' needs rank 2 (a 3×3 "
                              "conv's offsets), got rank=3")
    with pytest.raises(ValueError) as err:
        QuadraticEncoding(**GEOM, init_centres='conv3')
    assert str(err.value) == ("init_centres='conv3' is not supported; "
                              "choose one of ['conv', 'grid']")
    assert QuadraticEncoding(**GEOM).init_centres == 'grid'


@pytest.mark.parametrize('heads,radius,kernel', [(9, (2, 2), (3, 3)),
                                                 (16, (2, 2), (3, 3)),
                                                 (9, (1, 1), (3, 3)),
                                                 (25, (1, 1), (3, 3)),
                                                 (9, (2, 0), (3, 1))])
def test_quadratic_default_init_kernel(heads, radius, kernel):
    """Without ``init_kernel`` the centres start on an odd square grid the
    heads fill (3×3 for 9-24 heads), clipped to the window per axis."""
    enc = QuadraticEncoding(num_heads=heads, head_dims=4, rank=2,
                            radius=radius, step=(1, 1))
    assert enc.init_kernel == kernel
    assert enc.centres[:3].tolist() == grid_centres(
        3, kernel, (1, 1)).tolist()


def test_quadratic_init_mass_none_means_alpha_one():
    """``init_mass=None``: ``α = 1`` (isotropic and full)."""
    enc = QuadraticEncoding(**GEOM, init_mass=None)
    torch.testing.assert_close(enc.log_alpha, torch.zeros(4))
    enc = QuadraticEncoding(**GEOM, mode='full', init_mass=None)
    torch.testing.assert_close(enc.precision(), torch.eye(2).expand(4, 2, 2))


def test_quadratic_accepts_float64_offsets():
    """Offsets of any dtype are brought to the parameters' dtype."""
    enc = QuadraticEncoding(**GEOM, init_kernel=3)
    offsets = torch.tensor([[0, 0], [1, -2], [-2, 4]])
    torch.testing.assert_close(enc.pos_bias(offsets.double()),
                               enc.pos_bias(offsets))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_quadratic_augment_qk_adds_the_bias(dtype):
    """``augment_qk``: the extra dims add ``b_δ`` (up to a constant per query)
    to the scaled scores, with the heads' real (non-zero) centres, in the
    query's dtype (float32 coordinates); key coordinates are centred per
    axis."""
    enc = QuadraticEncoding(num_heads=4, head_dims=4, rank=2, radius=(2, 2),
                            step=(1, 1), mode='full', init_kernel=3,
                            init_mass=0.5)
    with torch.no_grad():
        enc.chol.add_(0.2 * torch.randn_like(enc.chol))
    assert enc.centres.abs().sum() > 0
    rows, cols = torch.meshgrid(torch.arange(3.) + 10, torch.arange(5.),
                                indexing='ij')
    coords = torch.stack([rows, cols], -1).reshape(-1, 2)
    q = torch.randn(2, 4, 15, 4, dtype=dtype)
    k = torch.randn_like(q)
    qa, ka = enc.augment_qk(q, k, coords, coords, 0.5)
    assert qa.dtype == ka.dtype == dtype
    assert qa.shape == ka.shape == (2, 4, 15, 4 + 6)
    torch.testing.assert_close(qa[..., :4], q)
    torch.testing.assert_close(ka[..., :4], k)
    extra = 0.5 * (qa @ ka.transpose(-1, -2) - q @ k.transpose(-1, -2))
    offsets = (coords[None] - coords[:, None]).reshape(-1, 2)  # k - q
    bias = enc.pos_bias(offsets).reshape(4, 15, 15)
    rest = extra.double() - bias.double()
    # float32 parameters: rounding of about 1e-7 · α · (L/2)² either way
    torch.testing.assert_close(rest, rest[..., :1].expand_as(rest),
                               rtol=0, atol=1e-4)
    # p_k = coordinates minus their per-axis mean
    torch.testing.assert_close(ka[0, 0, :, -2:],
                               (coords - coords.mean(0)).to(dtype))


def test_quadratic_augment_qk_follows_half_precision_query():
    """With a bfloat16 query and float32 coordinates, every extra dim is
    bfloat16 too (nothing promotes q or k to float32)."""
    enc = QuadraticEncoding(**GEOM, init_kernel=3)
    coords = torch.rand(6, 2) * 8
    q = torch.randn(1, 4, 6, 8, dtype=torch.bfloat16)
    qa, ka = enc.augment_qk(q, q, coords, coords, 0.5)
    assert qa.dtype == ka.dtype == torch.bfloat16
    assert qa.shape == ka.shape == (1, 4, 6, 8 + 6)


# --- RoPE --------------------------------------------------------------------


def test_rope_axial_frequencies():
    """Axial mode: pairs alternate between the axes; pair i of axis a turns
    at ``theta^(-i/n_a)`` (theta = 100 by default) along a only; the
    frequencies are a buffer, not saved."""
    enc = RoPE(num_heads=2, head_dims=12, rank=2, radius=(1, 1), step=(1, 1))
    assert enc.theta == 100.0 and enc.mode == 'axial'
    want = torch.zeros(6, 2)
    for i in range(3):
        want[2 * i, 0] = 100**(-i / 3)
        want[2 * i + 1, 1] = 100**(-i / 3)
    torch.testing.assert_close(enc.freqs, want.expand(2, 6, 2))
    assert not isinstance(enc.freqs, torch.nn.Parameter)
    assert 'freqs' not in enc.state_dict()
    enc = RoPE(num_heads=1, head_dims=4, rank=1, radius=(1, ), step=(1, ),
               theta=16.0)
    torch.testing.assert_close(enc.freqs, torch.tensor([[[1.0], [0.25]]]))


def test_rope_rotate_closed_form():
    """``rotate`` turns channel pairs (0, 1), (2, 3), ... by the angle
    ``Σ_a f_{h,i,a} p_a``: ``(x0 cos - x1 sin, x0 sin + x1 cos)``."""
    enc = RoPE(num_heads=2, head_dims=4, rank=2, radius=(1, 1), step=(1, 1),
               mode='mixed')
    x = torch.randn(1, 2, 3, 4)
    coords = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-3.0, 0.5]])
    out = enc.rotate(x, coords)
    want = torch.empty_like(x)
    for h in range(2):
        for n in range(3):
            for i in range(2):
                a = float(enc.freqs[h, i].detach() @ coords[n])
                x0, x1 = x[0, h, n, 2 * i], x[0, h, n, 2 * i + 1]
                want[0, h, n, 2 * i] = x0 * math.cos(a) - x1 * math.sin(a)
                want[0, h, n, 2 * i + 1] = x0 * math.sin(a) + x1 * math.cos(a)
    torch.testing.assert_close(out, want)


def test_rope_rotate_keeps_dtype():
    """``rotate`` runs in the input's dtype (float64 in, float64 out)."""
    enc = RoPE(num_heads=2, head_dims=4, rank=2, radius=(1, 1), step=(1, 1))
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    coords = torch.randn(3, 2)
    out = enc.rotate(x, coords)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), enc.rotate(x.float(), coords))


@pytest.mark.parametrize('rank', [2, 3])
def test_rope_mixed_init_rotates_axial(rank):
    """Mixed mode: learned frequencies, each head's the axial ones times an
    orthogonal matrix (same lengths, other directions), the same whatever
    the global RNG state."""
    geom = dict(num_heads=3, head_dims=12, rank=rank, radius=(1, ) * rank,
                step=(1, ) * rank)
    axial = RoPE(**geom).freqs
    torch.manual_seed(1)
    enc = RoPE(**geom, mode='mixed')
    assert isinstance(enc.freqs, torch.nn.Parameter)
    assert 'freqs' in enc.state_dict()
    torch.testing.assert_close(enc.freqs.norm(dim=-1), axial.norm(dim=-1))
    assert not torch.allclose(enc.freqs, axial, atol=1e-3)
    assert not torch.allclose(enc.freqs[0], enc.freqs[1], atol=1e-3)
    torch.manual_seed(2)
    torch.testing.assert_close(RoPE(**geom, mode='mixed').freqs, enc.freqs)
    # pinned: head h's rotation is the h-th draw of a generator seeded 0
    g = torch.Generator().manual_seed(0)
    for h in range(3):
        rot = torch.linalg.qr(torch.randn(rank, rank, generator=g))[0]
        torch.testing.assert_close(enc.freqs[h], axial[h] @ rot)


def test_rope_mixed_rank_1_is_learned_axial():
    """Mixed mode on rank 1: the axial frequencies, as a learned
    parameter."""
    geom = dict(num_heads=2, head_dims=4, rank=1, radius=(1, ), step=(1, ))
    enc = RoPE(**geom, mode='mixed')
    assert isinstance(enc.freqs, torch.nn.Parameter)
    torch.testing.assert_close(enc.freqs.detach(), RoPE(**geom).freqs)


def test_rope_errors():
    """Odd head dims and unknown modes are refused with their value."""
    with pytest.raises(ValueError) as err:
        RoPE(num_heads=2, head_dims=5, rank=1, radius=(1, ), step=(1, ))
    assert str(err.value) == 'RoPE needs an even head_dims, got 5'
    with pytest.raises(ValueError, match=r"^mode='spiral' is not supported"):
        RoPE(**GEOM, mode='spiral')
