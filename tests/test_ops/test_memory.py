"""Memory is linear in tokens: the default CPU training path runs at 128x128
tokens under an address-space cap that an N x N score matrix cannot fit."""
import subprocess
import sys
import textwrap


SCRIPT = textwrap.dedent('''
    import resource, sys, torch
    from convattn_mm.ops import neighborhood_attention
    backend = sys.argv[1]
    torch.set_num_threads(1)
    B, H, D, S = 1, 2, 16, 128
    q = torch.randn(B, S, S, H, D, requires_grad=True)
    k = torch.randn(B, S, S, H, D, requires_grad=True)
    v = torch.randn(B, S, S, H, D, requires_grad=True)
    bias = torch.zeros(H, 13, 13, requires_grad=True)
    # warm up (loads the kernel library) on a tiny map, then cap: 600 MiB
    # more address space than now. One N x N float32 score matrix for
    # N = 128*128 tokens and 2 heads is 2 GiB.
    neighborhood_attention(q[:, :8, :8], k[:, :8, :8], v[:, :8, :8], 7,
                           pos_bias=bias, backend=backend).sum().backward()
    with open('/proc/self/statm') as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    cap = vm + 600 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        out = neighborhood_attention(q, k, v, 7, pos_bias=bias,
                                     backend=backend)
        out.sum().backward()
    except (MemoryError, RuntimeError) as e:
        print('OOM', type(e).__name__)
        sys.exit(3)
    print('OK', tuple(out.shape), float(bias.grad.abs().sum()) > 0)
''')


def _run(backend):
    return subprocess.run([sys.executable, '-c', SCRIPT, backend],
                          capture_output=True, text=True, timeout=300)


def test_default_training_path_is_linear_in_tokens():
    proc = _run('auto')
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert 'OK (1, 128, 128, 2, 16) True' in proc.stdout


def test_the_cap_is_real_for_a_quadratic_path():
    """The same cap stops the dense reference (N x N scores)."""
    proc = _run('reference')
    assert proc.returncode == 3, proc.stdout + proc.stderr[-2000:]
    assert 'OOM' in proc.stdout
