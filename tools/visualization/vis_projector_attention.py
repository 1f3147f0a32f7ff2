# Show where a cross attention projector of a ScaleKD run looks: for a few
# teacher tokens, the projector's attention over the student's feature grid
# (mean over heads), drawn on the input image.
#
#   python tools/visualization/vis_projector_attention.py CONFIG CHECKPOINT \
#       IMAGE [--projector final_spatial] [--queries 0 5 10] [--out out.png]
#
# CHECKPOINT is a training checkpoint of ScaleKDDistiller (it holds no teacher
# weights; the teacher comes from `model.teacher.checkpoint`, which
# --cfg-options can override). Only warnings and errors are logged (a random
# teacher is one); --verbose adds mmengine's INFO records, one per
# initialised weight.
from __future__ import annotations  # torch and Config name types only

import argparse
import logging
import math
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np

# torch, matplotlib, mmcv, mmengine, mmpretrain and mmscalekd are imported
# where they are used, so that `--help` answers at once.

# Teacher tokens drawn by default: an evenly spaced grid of at most this many
# tokens a side.
DEFAULT_TOKENS_PER_SIDE = 3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw the attention of a ScaleKD cross attention '
        'projector over the student feature grid')
    parser.add_argument('config', help='the distillation config')
    parser.add_argument(
        'checkpoint', help='a training checkpoint of the distiller')
    parser.add_argument('image', help='an image file')
    parser.add_argument(
        '--projector',
        default='final_spatial',
        help='which projector (a key of `model.projectors`: '
        'perception_spatial, perception_frequency, final_spatial, '
        'final_frequency)')
    parser.add_argument(
        '--queries',
        type=int,
        nargs='+',
        help='teacher token indices (row-major over the teacher grid) to '
        f'draw; default: a grid of up to {DEFAULT_TOKENS_PER_SIDE}x'
        f'{DEFAULT_TOKENS_PER_SIDE} tokens')
    parser.add_argument(
        '--out', default='projector_attention.png', help='PNG to write')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="also print mmengine's INFO log (a line per initialised "
        'weight when the model is built), and the traceback of an error')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action='extend',
        metavar='KEY=VALUE',
        help='override config settings, e.g. model.teacher.checkpoint=None')
    args = parser.parse_args(argv)
    from mmscalekd.utils.command_line import dict_options
    return dict_options(args, 'cfg_options')


def build_model(cfg: Config, checkpoint: str, device: str = 'cpu'):
    """The distiller of ``cfg`` with the weights of a training checkpoint.

    The checkpoint is read as data only (``torch.load(weights_only=True)``
    with the types mmengine writes) and must hold exactly this distiller's
    weights.
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from mmscalekd.engine.training_checkpoint import (
        check_model_weights, read_training_checkpoint)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.to_dict()
    # As mmengine's Runner: a top-level `data_preprocessor` goes to the model.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    if not hasattr(model, 'projector_inputs'):
        raise TypeError(f'`model.type={model_cfg["type"]!r}` is not a '
                        'ScaleKDDistiller; this tool needs its projectors.')
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'No checkpoint at {checkpoint!r}; pass an `epoch_N.pth` or '
            '`iter_N.pth` that training wrote in its work dir.')
    training = read_training_checkpoint(checkpoint, 'CHECKPOINT')
    # Strict: the projectors drawn must be the trained ones.
    check_model_weights(model, training['state_dict'],
                        f'CHECKPOINT {checkpoint!r}',
                        training['meta'].get('model_architecture'))
    model.load_state_dict(training['state_dict'])
    return model.to(device).eval()


def load_image(cfg: Config, image: str) -> dict:
    """Run an image file through the config's test pipeline.

    Configs on in-memory datasets have no loading step; mmpretrain's
    ``LoadImageFromFile`` is then put first, as a file dataset would have it.
    """
    if osp.isfile(image) and osp.getsize(image) == 0:
        raise ValueError(
            f'IMAGE {image!r} is an empty file (0 bytes), e.g. a download or '
            'copy that did not finish; pass an image file (PNG, JPEG, ...).')
    from mmcv.transforms import Compose
    from mmpretrain.registry import TRANSFORMS
    pipeline = list(cfg.test_dataloader.dataset.pipeline)
    if not str(pipeline[0]['type']).endswith('LoadImageFromFile'):
        pipeline.insert(0, dict(type='LoadImageFromFile'))
    return Compose([TRANSFORMS.build(t) for t in pipeline])(
        dict(img_path=image))


def default_tokens(query_size: Tuple[int, int]) -> List[int]:
    """An evenly spaced grid of teacher tokens, row-major indices."""
    rows, cols = (
        sorted({round(x) for x in np.linspace(
            0, size - 1, min(size, DEFAULT_TOKENS_PER_SIDE))})
        for size in query_size)
    return [r * query_size[1] + c for r in rows for c in cols]


def get_projector(model, name: str):
    if name not in model.projectors:
        raise KeyError(f'--projector {name!r} is not a projector of this '
                       f'model; choose one of {list(model.projectors)}.')
    return model.projectors[name]


def attention_maps(model, inputs: torch.Tensor, projector: str,
                   tokens: Sequence[int]) -> torch.Tensor:
    """Attention of teacher tokens over the student grid, mean over heads.

    Args:
        model (ScaleKDDistiller): in eval mode.
        inputs (Tensor): a preprocessed batch (1, C, H, W).
        projector (str): a key of ``model.projectors``.
        tokens (list[int]): row-major indices into the projector's
            (Hq, Wq) query grid.

    Returns:
        Tensor: (len(tokens), Hs, Ws); each map sums to 1.
    """
    module = get_projector(model, projector)
    num_queries = module.query_size[0] * module.query_size[1]
    bad = [t for t in tokens if not 0 <= t < num_queries]
    if bad:
        raise ValueError(
            f'--queries {bad} are outside the {module.query_size[0]}x'
            f'{module.query_size[1]} teacher grid of {projector!r}; use '
            f'indices 0..{num_queries - 1}.')
    import torch
    # The student feature at the projector's tap and the queries it really
    # gets (learned, or the perception outputs), by the distiller's own path.
    with torch.no_grad():
        student, queries = model.projector_inputs(inputs)[projector]
        weights = module.attention_weights(student, queries)  # (1, h, Lq, Ls)
    maps = weights[0].mean(0)[list(tokens)]  # (len(tokens), Hs*Ws)
    return maps.reshape(len(tokens), *module.student_size)


def _display_image(packed_inputs: torch.Tensor) -> np.ndarray:
    """(C, H, W) pipeline output, BGR as mmcv loads it -> (H, W, 3) RGB."""
    image = packed_inputs.permute(1, 2, 0).cpu().numpy()
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[..., ::-1]


def draw(image: np.ndarray, maps: torch.Tensor, tokens: Sequence[int],
         query_size: Tuple[int, int], title: str, out: str) -> None:
    """Write a PNG: the image, then one heat map panel per teacher token.

    Each student-grid map (``maps``, (Q, Hs, Ws)) is upsampled (bilinear)
    onto the image; the white box marks the teacher token's own cell.
    """
    import torch.nn.functional as F
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    height, width = image.shape[:2]
    heat = F.interpolate(
        maps[:, None].float(), size=(height, width), mode='bilinear',
        align_corners=False)[:, 0].cpu().numpy()
    panels = 1 + len(tokens)
    cols = min(panels, 4)
    rows = math.ceil(panels / cols)
    figure = Figure(figsize=(3 * cols, 3.4 * rows + 0.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(image)
    axes[0].set_title('input')
    cell_h, cell_w = height / query_size[0], width / query_size[1]
    for ax, token, token_map, token_heat in zip(axes[1:], tokens, maps,
                                                heat):
        row, col = divmod(token, query_size[1])
        low, high = token_map.min().item(), token_map.max().item()
        ax.imshow(image)
        # Each panel spans its own map's range, given in the title: a
        # barely trained projector attends almost uniformly, and a shared
        # 0..max scale would paint every panel one colour.
        ax.imshow(token_heat, cmap='jet', alpha=0.5, vmin=low, vmax=high)
        ax.add_patch(
            Rectangle((col * cell_w - 0.5, row * cell_h - 0.5), cell_w,
                      cell_h, fill=False, edgecolor='white', linewidth=1.5))
        ax.set_title(f'teacher token ({row}, {col})\n'
                     f'weights {low:.3f} to {high:.3f}')
    figure.suptitle(title)
    figure.savefig(out, dpi=100)


def main(argv: Optional[list] = None) -> torch.Tensor:
    """Run the tool; returns the (student-grid) maps it drew."""
    args = parse_args(argv)
    from mmengine.logging import MMLogger

    from mmscalekd.utils.command_line import report_errors
    report_errors(verbose=args.verbose)
    # Building the distiller calls init_weights, which logs an INFO record
    # for every parameter (hundreds); keep warnings and errors, and give the
    # logger its level back for whoever called main().
    logger = MMLogger.get_current_instance()
    level = logger.level
    if not args.verbose:
        logger.setLevel(logging.WARNING)
    try:
        return _run(args)
    finally:
        logger.setLevel(level)


def _run(args: argparse.Namespace) -> torch.Tensor:
    from mmengine.config import Config
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # The image first: a bad file is refused before the (slow) model build.
    packed = load_image(cfg, args.image)
    model = build_model(cfg, args.checkpoint, args.device)
    data = model.data_preprocessor(
        dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]),
        False)
    inputs = data['inputs']
    input_size = cfg.model.get('input_size', 224)
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    if tuple(inputs.shape[-2:]) != tuple(input_size):
        raise ValueError(
            f'The test pipeline gives {tuple(inputs.shape[-2:])} images but '
            f'the projectors were built for {tuple(input_size)} '
            '(`model.input_size`); pass an image of that size or add a '
            'Resize/CenterCrop to `test_dataloader.dataset.pipeline`.')

    projector = get_projector(model, args.projector)
    query_size = projector.query_size
    tokens = args.queries or default_tokens(query_size)
    maps = attention_maps(model, inputs, args.projector, tokens)
    height, width = projector.student_size
    title = (f'{args.projector}: {query_size[0]}x{query_size[1]} teacher '
             f'tokens over the {height}x{width} student grid, mean of '
             f'{projector.num_heads} heads')
    draw(_display_image(packed['inputs']), maps, tokens, query_size, title,
         args.out)
    print(f'Wrote {args.out}')
    return maps


if __name__ == '__main__':
    main()
