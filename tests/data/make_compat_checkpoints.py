"""Write ``tests/data/compat_checkpoints.pth``: small instances of every
registered module (conv-init and bias tables included), their weights, one
input each and the output the code of the day computed on it.

The file was written once, before the package's layout changed (issue 10),
and ``tests/test_checkpoint_compat.py`` checks that today's code loads it
and reproduces the recorded outputs. Rerun this script only when a change
is *meant* to alter outputs or state-dict keys (then say so in the commit):

    PYTHONPATH=$PWD python tests/data/make_compat_checkpoints.py

A model registered later gets its case with ``--add-missing``, which keeps
every recorded case as it is and records only the new ones:

    PYTHONPATH=$PWD python tests/data/make_compat_checkpoints.py --add-missing
"""
import argparse
import os.path as osp

import torch
from mmengine.logging import MessageHub
from mmengine.runner import checkpoint as mmengine_checkpoint

import convattn_mm.models  # noqa: F401  (registers everything)
from convattn_mm.registry import MODELS, build_module

OUT = osp.join(osp.dirname(osp.abspath(__file__)),
               'compat_checkpoints.pth')

#: name -> (config, input shape); inputs are drawn from a fixed seed
CASES = {
    'bias_table': (dict(type='RelPosAttention', embed_dims=8, num_heads=2,
                        kernel_size=3,
                        pos_encoding=dict(type='RelativeBiasTable')),
                   (1, 5, 5, 8)),
    'quadratic': (dict(type='RelPosAttention', embed_dims=8, num_heads=2,
                       kernel_size=3, border='zeros', small_map='pad',
                       pos_encoding=dict(type='QuadraticEncoding',
                                         mode='full')), (1, 5, 5, 8)),
    'relative_keys': (dict(type='RelPosAttention', embed_dims=8,
                           num_heads=2, kernel_size=3, border='mask',
                           pos_encoding=dict(type='RelativeKeys')),
                      (1, 5, 5, 8)),
    'rope': (dict(type='RelPosAttention', embed_dims=8, num_heads=2,
                  kernel_size='global', pos_encoding=dict(type='RoPE')),
             (1, 4, 4, 8)),
    'log_cpb': (dict(type='RelPosAttention', embed_dims=8, num_heads=2,
                     kernel_size=3, pos_encoding=dict(type='LogCPB')),
                (1, 5, 5, 8)),
    'rank1': (dict(type='RelPosAttention', embed_dims=8, num_heads=2,
                   kernel_size=3, dilation=2, rank=1,
                   pos_encoding=dict(type='RelativeBiasTable')), (1, 9, 8)),
    'conv_attention': (dict(type='ConvAttention', embed_dims=4,
                            num_heads=9, out_dims=6, qk_dims=2),
                       (1, 4, 5, 5)),
    'gated_conv_attention': (dict(type='GatedConvAttention', embed_dims=4,
                                  num_heads=9, out_dims=6, qk_dims=2),
                             (1, 4, 5, 5)),
    'convattn_net': (dict(type='ConvAttnNet',
                          arch=dict(embed_dims=[8, 18, 16, 16],
                                    depths=[1, 1, 1, 1],
                                    num_heads=[2, 9, 2, 2],
                                    mixers=['conv', 'conv-init', 'local',
                                            'global'], mlp_ratio=1.0),
                          stem_stride=2, kernel_sizes=3, dilations=[1, 2, 1,
                                                                    1],
                          out_indices=(1, 2, 3)), (1, 3, 16, 16)),
    'sa_resnet': (dict(type='SAResNet', depth=18, base_channels=2,
                       num_heads=2, conv_init=True, stem='cifar',
                       out_indices=(0, 3)), (1, 3, 16, 16)),
    'isotropic': (dict(type='IsotropicAttnNet', num_layers=2, num_heads=9,
                       embed_dims=18, ffn_dims=16),
                  (1, 3, 8, 8)),
    'temporal': (dict(type='TemporalAttnNet', in_channels=6, embed_dims=8,
                      depth=2, num_heads=2), (1, 6, 9)),
    'volume': (dict(type='VolumeAttnNet', embed_dims=(8, 8), depths=(1, 1),
                    num_heads=(2, 2), kernel_size=(3, 3, 3),
                    out_indices=(0, 1)), (1, 3, 4, 8, 8)),
    'converted_resnet': (dict(type='ConvToAttention',
                              module=dict(type='mmpretrain.ResNet_CIFAR',
                                          depth=18, base_channels=2,
                                          out_indices=(3, )),
                              select='layer[14].0.conv[12]',
                              init='gated', qk_dims=2), (1, 3, 8, 8)),
    # added with --add-missing (3-D pose lifting, issue 13)
    'motion_attn_net': (dict(type='MotionAttnNet', in_channels=3,
                             embed_dims=8, depth=1, num_heads=2,
                             num_keypoints=5, kernel_size=3), (1, 6, 5, 3)),
    'tcn_attn_net': (dict(type='TCNAttnNet', in_channels=6, stem_channels=8,
                          num_blocks=1, kernel_sizes=(3, 3), dropout=0.0),
                     (1, 6, 11)),
}


def build(cfg):
    net = build_module(cfg)
    if hasattr(net, 'init_weights'):
        net.init_weights()
    net.eval()  # mmpretrain's ResNet.train returns None
    return net


def as_tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for t in out]


def record(cfg, shape):
    net = build(cfg)
    with torch.no_grad():
        for p in net.parameters():  # away from init: every weight counts
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randn(shape)
    with torch.no_grad():
        outs = as_tensors(net(x))
    return dict(cfg=cfg, input=x, outputs=outs, state_dict=net.state_dict())


def add_missing():
    """Record only the cases the file lacks; keep the rest byte for byte."""
    ckpt = torch.load(OUT, map_location='cpu', weights_only=True)
    for name, (cfg, shape) in CASES.items():
        if name not in ckpt['cases']:
            torch.manual_seed(sorted(CASES).index(name))
            ckpt['cases'][name] = record(cfg, shape)
            print('added', name)
    torch.save(ckpt, OUT)


def main():
    torch.manual_seed(0)
    records = {}
    for name, (cfg, shape) in CASES.items():
        records[name] = record(cfg, shape)
    hub = MessageHub.get_instance('compat_fixture')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    # looked up at call time: the package wraps it (message hub -> plain)
    mmengine_checkpoint.save_checkpoint(dict(meta=dict(epoch=1, iter=2, seed=0),
                         state_dict=records['convattn_net']['state_dict'],
                                         message_hub=hub.state_dict(),
                                         cases=records), OUT)
    print(OUT)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--add-missing', action='store_true',
                        help='record only cases the file lacks')
    if parser.parse_args().add_missing:
        add_missing()
    else:
        main()
