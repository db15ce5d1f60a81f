"""The pretrained path: an ImageNet ResNet-50 checkpoint (here a tiny random
one the test writes) -> tools/misc/resnet_to_saresnet.py -> the SAResNet-50
detection / pose configs' ``init_cfg=Pretrained`` -> weights in the model.
Also: layer-wise lr decay through the backbone of a detector."""
import subprocess
import sys

import pytest
import torch

from convattn_mm.convert import resnet_to_saresnet
from convattn_mm.engine import BackboneLayerDecayOptimWrapperConstructor
from convattn_mm.models.backbones import SAResNet
from convattn_mm.models.encodings import CONV_INIT_OFFSETS

from .synthetic import ROOT, require_stack


def tiny_resnet50_state_dict(width=8):
    """A random torchvision-layout ResNet-50 at 1/8 width."""
    from mmpretrain.models.backbones import ResNet
    net = ResNet(50, stem_channels=width, base_channels=width)
    return net.state_dict()


def test_resnet_to_saresnet_exact_where_representable():
    """A conv whose per-offset weights have rank <= head_dims on the heads'
    offsets (and zero elsewhere) is reproduced by the attention layer."""
    import torch.nn.functional as F
    sd = tiny_resnet50_state_dict(16)
    W = sd['layer2.0.conv2.weight']
    cout, cin = W.shape[:2]
    heads, d = 8, cout // 8
    W2 = torch.zeros_like(W)
    for h in range(heads):
        dy, dx = CONV_INIT_OFFSETS[h]
        W2[:, :, dy + 1, dx + 1] = torch.randn(cout, d) @ torch.randn(d, cin)
    sd['layer2.0.conv2.weight'] = W2
    model = SAResNet(50, base_channels=16, num_heads=heads, conv_init=True,
                     init_mass=1 - 1e-7)
    state, report = resnet_to_saresnet(sd, model)
    model.load_state_dict(state)
    errors = {r['name']: r['rel_error'] for r in report}
    assert errors['res_layers.1.0.conv2'] < 1e-5
    assert all(0 < e < 1 for n, e in errors.items()
               if n != 'res_layers.1.0.conv2')
    # copied exactly
    assert torch.equal(state['stem.0.weight'], sd['conv1.weight'])
    assert torch.equal(state['res_layers.3.2.bn3.running_var'],
                       sd['layer4.2.bn3.running_var'])
    layer = model.res_layers[1][0].conv2
    with torch.no_grad():  # no content term: position-only attention
        layer.attn.qkv.weight[:2 * heads * d] = 0
        x = torch.randn(2, cin, 10, 10)
        torch.testing.assert_close(layer(x), F.conv2d(x, W2, stride=2,
                                                      padding=1),
                                   rtol=1e-4, atol=1e-4)


def test_resnet_to_saresnet_errors():
    sd = tiny_resnet50_state_dict()
    with pytest.raises(ValueError, match='conv_init=False'):
        resnet_to_saresnet(sd, SAResNet(50, base_channels=8, num_heads=4))
    with pytest.raises(ValueError, match='shape'):
        resnet_to_saresnet(sd, SAResNet(50, base_channels=16, num_heads=4,
                                        conv_init=True))
    with pytest.raises(TypeError, match='expected SAResNet'):
        resnet_to_saresnet(sd, torch.nn.Linear(2, 2))


def write_converted(tmp_path):
    src = tmp_path / 'resnet50_tv.pth'
    torch.save(tiny_resnet50_state_dict(), src)
    dst = tmp_path / 'saresnet50.pth'
    out = subprocess.run(
        [sys.executable, f'{ROOT}/tools/misc/resnet_to_saresnet.py',
         str(src), str(dst), '--base-channels', '8', '--num-heads', '4'],
        capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert '16 attention layers mapped' in out.stdout
    return src, dst


@pytest.mark.parametrize('config', [
    'det/retinanet_saresnet50_fpn_1x_coco.py',
    'pose/td-hm_saresnet50_8xb64-210e_coco-256x192.py'
])
def test_saresnet50_config_starts_from_resnet50(tmp_path, config):
    require_stack()
    from mmengine.registry import MODELS

    from .synthetic import load_config, scope, shrink_backbone
    src, dst = write_converted(tmp_path)
    # written plain: loads with weights_only=True
    ckpt = torch.load(dst, weights_only=True)
    cfg = load_config(f'{ROOT}/configs/{config}', pretrained=str(dst))
    shrink_backbone(cfg)
    with scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        model.init_weights()
    resnet = torch.load(src, weights_only=True)
    bb = model.backbone.state_dict()
    assert torch.equal(bb['stem.0.weight'], resnet['conv1.weight'])
    assert torch.equal(bb['res_layers.2.3.conv3.weight'],
                       resnet['layer3.3.conv3.weight'])
    for k, v in bb.items():
        assert torch.equal(v, ckpt['state_dict']['backbone.' + k]), k


def test_layer_decay_through_backbone():
    """Detector-like model without get_layer_depth: the backbone's ids set
    lr = base · rate^(N+1-id); the head trains at the base rate."""
    from mmengine.optim import build_optim_wrapper

    class Det(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = SAResNet(18, base_channels=8, num_heads=2)
            self.head = torch.nn.Linear(64, 2)

    model = Det()
    optim = build_optim_wrapper(
        model,
        dict(type='OptimWrapper',
             constructor='BackboneLayerDecayOptimWrapperConstructor',
             optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
             paramwise_cfg=dict(layer_decay_rate=0.5)))
    lr = {g['param_name']: g['lr'] for g in optim.optimizer.param_groups}
    n = 8  # blocks of ResNet-18
    assert lr['head.weight'] == 1.0
    assert lr['backbone.stem.0.weight'] == 0.5**(n + 1)
    assert lr['backbone.res_layers.0.0.conv1.attn.qkv.weight'] == 0.5**n
    assert lr['backbone.res_layers.3.1.bn2.weight'] == 0.5
    assert BackboneLayerDecayOptimWrapperConstructor is not None
    with pytest.raises(TypeError, match='get_layer_depth'):
        build_optim_wrapper(
            torch.nn.Linear(2, 2),
            dict(constructor='BackboneLayerDecayOptimWrapperConstructor',
                 optimizer=dict(type='AdamW', lr=1.0),
                 paramwise_cfg=dict(layer_decay_rate=0.5)))
