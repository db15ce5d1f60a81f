"""Write an SAResNet checkpoint initialised from an ImageNet ResNet: an
APPROXIMATION of the ResNet, not an exact start (see below).

    python tools/misc/resnet_to_saresnet.py RESNET.pth OUT.pth \
        [--depth 50] [--num-heads 8] [--init-mass 0.9] [--layout auto]

RESNET.pth: torchvision (``resnet50-*.pth``) or mmpretrain
(``resnet50_8xb32_in1k_*.pth``) layout, loaded with ``weights_only=True``
(``--trust-checkpoint`` for an old pickle you trust). OUT.pth holds
``{'meta', 'state_dict'}`` with ``backbone.``-prefixed keys: point a
detection or pose config's ``init_cfg=dict(type='Pretrained',
checkpoint=OUT.pth, prefix='backbone.')`` at it.

It prints how much of each 3×3 conv the attention layer carries (relative
weight error per layer) and how far the SAResNet's features are from the
ResNet's at every stage, on scikit-image's astronaut photograph (seeded
noise when scikit-image is missing), and warns when they differ by more
than ``--warn-above``. SAResNet's 8 heads of ``C/8`` value channels cannot
hold a 3×3 conv's nine ``C×C`` matrices (``convattn_mm.convert.resnet``);
for features identical to the ResNet's, use the ``*_convattn-r50-exact_*``
configs, which load the ResNet checkpoint itself.
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
    p.add_argument('--image-size', type=int, default=224,
                   help='side of the photograph the features are compared on')
    p.add_argument('--warn-above', type=float, default=0.01,
                   help='warn when a stage\'s relative feature error exceeds '
                   'this')
    return p.parse_args()


def test_image(size):
    """``[1, 3, size, size]``: the astronaut photograph, ImageNet-normalised
    (seeded noise without scikit-image), and its name."""
    import torch
    try:
        from skimage import data
        from skimage.transform import resize
    except ImportError:
        g = torch.Generator().manual_seed(0)
        return torch.randn(1, 3, size, size, generator=g), 'seeded noise'
    img = resize(data.astronaut(), (size, size), anti_aliasing=True)
    x = torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return ((x - mean) / std)[None], 'scikit-image astronaut'



def main():
    args = parse_args()
    from convattn_mm.convert import load_cnn_state_dict
    from convattn_mm.models.backbones import SAResNet
    from convattn_mm.convert import feature_errors, resnet_to_saresnet
    sd, layout = load_cnn_state_dict(args.src, args.layout,
                                     trust=args.trust_checkpoint)
    model = SAResNet(depth=args.depth, num_heads=args.num_heads,
                     base_channels=args.base_channels,
                     conv_init=True, init_mass=args.init_mass,
                     out_indices=(0, 1, 2, 3))
    state, report = resnet_to_saresnet(sd, model)
    model.load_state_dict(state, strict=True)
    width = max(len(r['name']) for r in report)
    print('3x3 conv -> attention, relative weight error '
          '||W - W_approx|| / ||W||:')
    for r in report:
        print(f"  {r['name']:<{width}}  rank/offset {r['rank']:>4}  "
              f"rel. error {r['rel_error']:.3f}")
    x, image = test_image(args.image_size)
    errors = feature_errors(sd, model, x)
    print(f'features vs the ResNet ({image}, {args.image_size}x'
          f'{args.image_size}), ||f_SA - f_ResNet|| / ||f_ResNet||:')
    for i, e in enumerate(errors):
        print(f'  stage {i + 1}  {e:.3f}')
    worst = max(errors)
    if worst > args.warn_above:
        print(f'WARNING: this is an approximate start, not the ResNet: '
              f'stage-4 features differ by {errors[-1]:.1%} (worst stage '
              f'{worst:.1%}). SAResNet ({args.num_heads} heads of C/'
              f'{args.num_heads} value channels) cannot hold a 3x3 conv '
              f'exactly; for features identical to the ResNet\'s use the '
              f'*_convattn-r50-exact_* configs with the ResNet checkpoint '
              f'itself (docs/downstream.md).')
    meta = dict(source=osp.basename(args.src), source_layout=layout,
                arch=f'SAResNet-{args.depth}', num_heads=args.num_heads,
                init_mass=args.init_mass, exact=False,
                feature_rel_errors=[round(e, 6) for e in errors])
    save_checkpoint(
        dict(meta=meta,
             state_dict={'backbone.' + k: v.cpu()
                         for k, v in model.state_dict().items()}), args.dst)
    print(f'wrote {args.dst} ({len(report)} attention layers mapped)')


if __name__ == '__main__':
    main()
