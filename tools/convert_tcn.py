"""Convert a trained mmpose TCN pose lifter (VideoPose3D) into the same
lifter with δ-attention in place of its temporal convolutions.

    python tools/convert_tcn.py CONFIG CHECKPOINT --out-dir DIR \
        [--init exact|quadratic|gated] [--qk-dims N] [--frames T]

CONFIG is the lifter's config (e.g. mmpose's
``video-pose-lift_tcn-27frm-supv_8xb128-160e_h36m.py``, or ``mmpose::...``),
CHECKPOINT its weights (mmengine checkpoint or bare state dict). Writes into
DIR:

* ``<config-name>_tcn-attn-<init>.py``: CONFIG with the backbone replaced
  by ``convattn_mm.TCNAttnNet`` (same arguments) and ``load_from`` set to
* ``<config-name>_tcn-attn-<init>.pth``: the converted weights (backbone
  converted, head unchanged; loads with ``weights_only=True``).

Then it checks that both models give the same 3-D poses on random inputs of
``--frames`` frames (default: the TCN's receptive field, 20 more with
``--frames``), relative error ``max|Δ| / max|y| <= --tol`` (1e-5; exit
status 1 otherwise; soft inits are reported, not checked), and that the
written config rebuilds a model that loads the checkpoint strictly.
"""
import argparse
import copy
import os
import os.path as osp
import sys

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Convert an mmpose TCN pose lifter to δ-attention '
        '(convattn_mm.TCNAttnNet).')
    p.add_argument('config', help='the TCN lifter config')
    p.add_argument('checkpoint', help='its checkpoint')
    p.add_argument('--out-dir', required=True, help='output folder')
    p.add_argument('--init', default='exact',
                   choices=['exact', 'quadratic', 'gated'])
    p.add_argument('--qk-dims', type=int, default=None,
                   help='soft inits: content q/k dims per head')
    p.add_argument('--frames', type=int, default=None,
                   help='check input length (default: receptive field)')
    p.add_argument('--tol', type=float, default=1e-5,
                   help='relative tolerance of the check (exact init)')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='load with weights_only=False (trusted files only)')
    return p.parse_args(argv)


def build_lifter(cfg):
    from mmengine.registry import DefaultScope, MODELS
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope',
                                                      'mmpose')):
        model = MODELS.build(copy.deepcopy(cfg.model))
    return model.eval()


@torch.no_grad()
def lift(model, x):
    return model.head(model.extract_feat(x))


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.hub import get_config
    from mmengine.runner.checkpoint import save_checkpoint

    import convattn_mm.registry  # noqa: F401 (registers the scope)
    from convattn_mm.convert import (convert_lifter_state_dict,
                                     load_cnn_state_dict, relative_error)
    cfg = (get_config(args.config) if '::' in args.config else
           Config.fromfile(args.config))
    state, _ = load_cnn_state_dict(args.checkpoint, layout='auto',
                                   trust=args.trust_checkpoint)
    new_state, backbone = convert_lifter_state_dict(
        state, cfg.model.backbone, args.init, args.qk_dims)
    os.makedirs(args.out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(args.config))[0]
    stem = f'{stem}_tcn-attn-{args.init}'
    ckpt = osp.abspath(osp.join(args.out_dir, stem + '.pth'))
    save_checkpoint(dict(meta=dict(converted_from=args.checkpoint,
                                   init=args.init),
                         state_dict=new_state), ckpt)
    new_cfg = copy.deepcopy(cfg)
    new_cfg.model.backbone = dict(backbone)
    new_cfg.load_from = ckpt
    cfg_path = osp.join(args.out_dir, stem + '.py')
    new_cfg.dump(cfg_path)

    tcn = build_lifter(cfg)
    tcn.load_state_dict(state, strict=True)
    net = build_lifter(Config.fromfile(cfg_path))
    net.load_state_dict(new_state, strict=True)
    frames = args.frames or net.backbone.receptive_field
    x = torch.randn(4, cfg.model.backbone.in_channels, frames,
                    generator=torch.Generator().manual_seed(0))
    err = relative_error(lift(net, x), lift(tcn, x))
    print(f'config:     {cfg_path}\ncheckpoint: {ckpt}\n'
          f'relative error on {frames}-frame inputs: {err:.2e}', flush=True)
    if args.init == 'exact' and err > args.tol:
        print(f'FAILED: {err:.2e} > tol {args.tol:.0e}', flush=True)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
