"""Write an SAResNet checkpoint initialised from an ImageNet ResNet.

    python tools/misc/resnet_to_saresnet.py RESNET.pth OUT.pth \
        [--depth 50] [--num-heads 8] [--init-mass 0.9] [--layout auto]

RESNET.pth: torchvision (``resnet50-*.pth``) or mmpretrain
(``resnet50_8xb32_in1k_*.pth``) layout, loaded with ``weights_only=True``
(``--trust-checkpoint`` for an old pickle you trust). OUT.pth holds
``{'meta', 'state_dict'}`` with ``backbone.``-prefixed keys: point a
detection or pose config's ``init_cfg=dict(type='Pretrained',
checkpoint=OUT.pth, prefix='backbone.')`` at it. The per-layer table shows
how much of each 3×3 conv the attention layer carries (see
``convattn_mm.convert.resnet``).
"""
import argparse
import os.path as osp

from mmengine.runner.checkpoint import save_checkpoint


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='ResNet checkpoint')
    p.add_argument('dst', help='output SAResNet checkpoint')
    p.add_argument('--depth', type=int, default=50)
    p.add_argument('--num-heads', type=int, default=8)
    p.add_argument('--base-channels', type=int, default=64,
                   help='width of the first stage (64 for ResNet-50)')
    p.add_argument('--init-mass', type=float, default=0.9)
    p.add_argument('--layout', default='auto',
                   help="'auto', 'mmengine', 'state_dict' or 'torchvision'")
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='allow arbitrary pickles (trusted files only)')
    return p.parse_args()


def main():
    args = parse_args()
    from convattn_mm.convert import load_cnn_state_dict
    from convattn_mm.models.backbones import SAResNet
    from convattn_mm.convert import resnet_to_saresnet
    sd, layout = load_cnn_state_dict(args.src, args.layout,
                                     trust=args.trust_checkpoint)
    model = SAResNet(depth=args.depth, num_heads=args.num_heads,
                     base_channels=args.base_channels,
                     conv_init=True, init_mass=args.init_mass,
                     out_indices=(0, 1, 2, 3))
    state, report = resnet_to_saresnet(sd, model)
    model.load_state_dict(state, strict=True)
    width = max(len(r['name']) for r in report)
    for r in report:
        print(f"{r['name']:<{width}}  rank/offset {r['rank']:>4}  "
              f"rel. error {r['rel_error']:.3f}")
    meta = dict(source=osp.basename(args.src), source_layout=layout,
                arch=f'SAResNet-{args.depth}', num_heads=args.num_heads,
                init_mass=args.init_mass)
    save_checkpoint(
        dict(meta=meta,
             state_dict={'backbone.' + k: v.cpu()
                         for k, v in model.state_dict().items()}), args.dst)
    print(f'wrote {args.dst} ({len(report)} attention layers mapped)')


if __name__ == '__main__':
    main()
