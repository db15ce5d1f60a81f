"""The registry resolves ``convattn_mm.X`` from other scopes."""
import subprocess
import sys
import textwrap


def test_builds_from_mmpretrain_scope_without_import():
    """A fresh interpreter, mmpretrain's default scope, no import of
    convattn_mm: the scoped type name is enough."""
    code = textwrap.dedent('''
        import torch
        from mmengine.registry import init_default_scope
        from mmpretrain.registry import MODELS
        import sys
        assert 'convattn_mm' not in sys.modules
        init_default_scope('mmpretrain')
        layer = MODELS.build(dict(type='convattn_mm.RelPosAttention',
                                  embed_dims=8, num_heads=2, kernel_size=3,
                                  pos_encoding=dict(type='RelativeBiasTable')))
        print(type(layer).__module__, type(layer.pos_encoding).__name__,
              tuple(layer(torch.randn(1, 5, 5, 8)).shape))
    ''')
    proc = subprocess.run([sys.executable, '-W', 'ignore', '-c', code],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [
        'convattn_mm.models.layers.rel_pos_attention', 'RelativeBiasTable',
        '(1,', '5,', '5,', '8)'
    ]


def test_child_of_root_registry():
    from mmengine.registry import MODELS as ROOT

    from convattn_mm.registry import MODELS
    assert MODELS.parent is ROOT and MODELS.scope == 'convattn_mm'
    assert ROOT.get('convattn_mm.RelativeBiasTable') is MODELS.get(
        'RelativeBiasTable')
