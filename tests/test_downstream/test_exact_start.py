"""The exact ImageNet start: a ResNet-50 checkpoint as the user downloads it
(torchvision's key layout, or an mmpretrain classifier file), written here
with random weights, loads through the ``*_convattn-r50-exact_*`` configs'
``init_cfg`` into the converted backbone, whose multi-scale features on a
real photograph (scikit-image's astronaut) equal the CNN's."""
import pytest

from .synthetic import require_stack

require_stack()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.registry import MODELS  # noqa: E402
from mmengine.runner.checkpoint import save_checkpoint  # noqa: E402

from convattn_mm.models.layers import ConvAttention  # noqa: E402

from .synthetic import ROOT, scope  # noqa: E402

RETINANET = f'{ROOT}/configs/det/retinanet_convattn-r50-exact_fpn_1x_coco.py'
MASK_RCNN = f'{ROOT}/configs/det/mask-rcnn_convattn-r50-exact_fpn_1x_coco.py'
POSE = (f'{ROOT}/configs/pose/'
        'td-hm_convattn-r50-exact_8xb64-210e_coco-256x192.py')
TOL = 1e-5  # max |Δ| / max |feature|, per stage


@pytest.fixture(scope='module')
def resnet50_torchvision(tmp_path_factory):
    """torchvision's ResNet-50 state dict, random weights and BN statistics
    (as a trained file has them), saved the way torchvision's files are."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.resnet50()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp('ckpt') / 'resnet50-random.pth'
    sd = net.state_dict()
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope='module')
def resnet50_mmpretrain(resnet50_torchvision, tmp_path_factory):
    """The same weights as an mmpretrain ImageClassifier checkpoint
    (``{'meta', 'state_dict'}``, keys ``backbone.*`` and ``head.fc.*``)."""
    from convattn_mm.convert import torchvision_to_mmpretrain
    path = tmp_path_factory.mktemp('ckpt') / 'resnet50_8xb32_in1k.pth'
    save_checkpoint(dict(meta=dict(), state_dict=torchvision_to_mmpretrain(
        resnet50_torchvision[1])), str(path))
    return path


def photograph(size=224):
    """scikit-image's astronaut, resized and normalised as ImageNet
    models' inputs: ``[1, 3, size, size]``."""
    from skimage import data
    from skimage.transform import resize
    img = resize(data.astronaut(), (size, size), anti_aliasing=True)
    x = torch.from_numpy(np.ascontiguousarray(img)).float().permute(2, 0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((x - mean) / std)[None]


def build_backbone(config, scope_name, init_weights=True, **init):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg.update(init)
    with scope(scope_name):
        backbone = MODELS.build(cfg.model.backbone)
        reference = MODELS.build(cfg.model.backbone.module)
    if init_weights:
        backbone.init_weights()
    backbone.eval()  # mmdet's ResNet.train() returns None: no chaining
    reference.eval()
    return backbone, reference


def max_rel_errors(backbone, reference, sd, x):
    reference.load_state_dict(sd, strict=False)  # torchvision keys; fc extra
    with torch.no_grad():
        ours, theirs = backbone(x), reference(x)
    assert len(ours) == len(theirs)
    return [((a - b).abs().max() / b.abs().max()).item()
            for a, b in zip(ours, theirs)]


@pytest.mark.parametrize('layout', ['torchvision', 'mmpretrain'])
def test_detection_backbone_equals_resnet50(layout, resnet50_torchvision,
                                            resnet50_mmpretrain):
    path, sd = resnet50_torchvision
    init = (dict(checkpoint=str(path)) if layout == 'torchvision' else
            dict(checkpoint=str(resnet50_mmpretrain), prefix='backbone.'))
    backbone, reference = build_backbone(RETINANET, 'mmdet', **init)
    converted = [m for m in backbone.modules()
                 if isinstance(m, ConvAttention)]
    assert len(converted) == 17  # the 7x7 stem and the 16 3x3 convs
    assert all(m.is_hard_conv for m in converted)
    errors = max_rel_errors(backbone, reference, sd, photograph())
    print(layout, errors)
    assert len(errors) == 3 and max(errors) <= TOL, errors


def test_pose_backbone_equals_resnet50(resnet50_torchvision):
    path, sd = resnet50_torchvision
    backbone, reference = build_backbone(POSE, 'mmpose',
                                         checkpoint=str(path))
    errors = max_rel_errors(backbone, reference, sd, photograph(192))
    print('pose', errors)
    assert len(errors) == 1 and errors[0] <= TOL, errors


def test_unconverted_resnet_keys_are_refused(resnet50_mmpretrain):
    """An mmpretrain classifier file without prefix='backbone.' matches no
    key: an error that says which prefix to set, not random weights."""
    backbone, _ = build_backbone(RETINANET, 'mmdet', init_weights=False,
                                 checkpoint=str(resnet50_mmpretrain))
    with pytest.raises(ValueError, match="prefix='backbone.'"):
        backbone.init_weights()


@pytest.mark.parametrize('config', [RETINANET, MASK_RCNN, POSE])
def test_config_without_checkpoint_says_how_to_set_it(config):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    assert cfg.model.backbone.init_cfg.checkpoint is None
    with scope('mmpose' if 'pose' in config else 'mmdet'):
        with pytest.raises(ValueError,
                           match='model.backbone.init_cfg.checkpoint='):
            MODELS.build(cfg.model)
        cfg.model.backbone.init_cfg.checkpoint = 'no/such/resnet50.pth'
        with pytest.raises(ValueError, match='is not a file'):
            MODELS.build(cfg.model)
