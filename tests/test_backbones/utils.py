"""Helpers shared by the backbone tests."""
import torch


def assert_grads_reach_all(model, outs):
    sum(o.float().pow(2).mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or
                                       not torch.isfinite(p.grad).all())]
    assert not missing, missing


def check_cp_matches(build, x):
    """with_cp=True gives the same outputs and gradients as plain."""
    torch.manual_seed(0)
    plain = build(False)
    cp = build(True)
    cp.load_state_dict(plain.state_dict())
    plain.train(), cp.train()
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    oa, ob = plain(xa), cp(xb)
    for a, b in zip(oa, ob):
        torch.testing.assert_close(a, b)
    sum(o.sum() for o in oa).backward()
    sum(o.sum() for o in ob).backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for (n, p), (_, q) in zip(plain.named_parameters(),
                              cp.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def check_pretrained_prefix(build, tmp_path):
    """init_cfg=Pretrained with prefix loads a classifier's backbone."""
    src = build(None)
    state = {f'backbone.{k}': v.clone() + 0.5 for k, v in
             src.state_dict().items() if v.is_floating_point()}
    state['head.fc.weight'] = torch.zeros(3, 3)
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'state_dict': state}, path)
    dst = build(dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    dst.init_weights()
    for k, v in dst.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, state[f'backbone.{k}'], msg=k)
