"""The pair builder's CPU check of a written ScaleKD config: the teacher's
split, one training step, the stages' shapes and the method's cost."""
import math
from typing import List

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmscalekd.analysis.cost import count_macs
from .sources import BuilderError

__all__ = ['REST_TOLERANCE', 'check_config']

#: How far the teacher's rest, run on its own split tokens, may be from its
#: own final feature: float32 round-off of the same operations.
REST_TOLERANCE = 1e-4

_MIB = 2**20
_FLAGS = ('--student-taps, --teacher-split, --num-heads, --input-size or '
          '--num-classes')


def _mib(count: int) -> str:
    return f'{count / _MIB:.1f} MiB'


def check_config(path: str, batch_size: int = 2, seed: int = 0
                 ) -> List[str]:
    """Build the distiller of the ScaleKD config ``path`` and check it on
    CPU at its input size with a batch of ``batch_size`` random images;
    returns the report's lines, raises :class:`BuilderError` naming the
    flag to change when a check fails."""
    cfg = Config.fromfile(path)
    torch.manual_seed(seed)
    model = cfg.model
    if cfg.get('data_preprocessor') is not None:
        # as mmengine's Runner passes it on
        model.setdefault('data_preprocessor', cfg.data_preprocessor)
    try:
        distiller = MODELS.build(model)
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        raise BuilderError(
            f'The written {path} does not build: {error} Change the '
            f'setting it names ({_FLAGS}).') from None
    size = distiller.input_size
    lines = [f'check at {size[0]}x{size[1]} px, batch {batch_size}, CPU, '
             'float32:']
    images = torch.randint(0, 256, (batch_size, 3, *size), dtype=torch.uint8)
    classes = distiller.student.head.num_classes
    samples = [DataSample().set_gt_label(i % classes)
               for i in range(batch_size)]
    data = distiller.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), training=False)
    lines += _check_rest(distiller, data['inputs'])
    lines += _shapes_and_cost(distiller, data['inputs'])
    lines += _training_step(distiller, images, samples)
    return lines


def _check_rest(distiller, inputs: torch.Tensor) -> List[str]:
    """The teacher's rest on its own split tokens gives its own final
    feature (teacher parameter perception runs exactly that on the
    projections)."""
    teacher = distiller.teacher(inputs)
    with torch.no_grad():
        rest = distiller.teacher.forward_rest(
            teacher.split_tokens, teacher.split_size,
            teacher.split_extra_tokens)
    scale = teacher.final_feature.abs().max().clamp_min(1e-12)
    error = ((rest - teacher.final_feature).abs().max() / scale).item()
    if not error <= REST_TOLERANCE:
        raise BuilderError(
            f'The teacher\'s rest after the split, run on its own split '
            f'tokens, is {error:.2e} (relative) from its own final feature '
            f'(tolerance {REST_TOLERANCE}): this teacher cannot be split '
            'there. Change `--teacher-split`.')
    return [f'  teacher rest on its own split tokens: max relative error '
            f'{error:.1e} (tolerance {REST_TOLERANCE})',
            f'  teacher tokens at the split: '
            f'{tuple(teacher.split_tokens.shape)} on a '
            f'{tuple(teacher.split_size)} grid; final feature '
            f'{tuple(teacher.final_feature.shape)}']


def _shapes_and_cost(distiller, inputs: torch.Tensor) -> List[str]:
    lines = []
    received = distiller.projector_inputs(inputs)
    for name, projector in distiller.projectors.items():
        feature, queries = received[name]
        macs = sum(count_macs(lambda: projector(feature, queries)).values())
        parameters = sum(p.numel() for p in projector.parameters())
        query = 'learned queries' if queries is None else \
            f'queries {tuple(queries.shape)}'
        lines.append(
            f'  {name}: student map {tuple(feature.shape)}, {query} -> '
            f'teacher tokens; {parameters / 1e6:.2f} M parameters, '
            f'{macs / inputs.shape[0] / 1e6:.1f} M multiply-adds per image '
            '(forward)')
    return lines


def _training_step(distiller, images: torch.Tensor,
                   samples: list) -> List[str]:
    """One optimizer step; the memory it holds, measured on the tensors
    autograd keeps for the backward pass."""
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    trainable = [p for p in distiller.parameters() if p.requires_grad]
    wrapper = OptimWrapper(torch.optim.SGD(trainable, lr=1e-3))
    distiller.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        log = distiller.train_step(
            dict(inputs=list(images), data_samples=samples), wrapper)
    loss = log['loss'].item()
    if not math.isfinite(loss):
        terms = {k: v.item() for k, v in log.items() if 'loss' in k}
        raise BuilderError(
            f'One training step gives a non-finite loss {terms}: lower '
            '`--softmax-scale` or the loss weights (`--spatial-weights`, '
            '`--frequency-weights`).')
    weights = sum(p.numel() * p.element_size() for p in trainable)
    teacher = sum(p.numel() * p.element_size()
                  for p in distiller.teacher.network.parameters())
    activations = sum(saved.values())
    return [
        f'  one training step: loss {loss:.4f} '
        f'({", ".join(f"{k} {v.item():.4f}" for k, v in log.items())})',
        f'  memory of one step at this batch: {_mib(activations)} of '
        'activations kept for the backward pass (measured: the tensors '
        f'autograd saves, each storage once), {_mib(2 * weights)} of '
        f'trainable weights and gradients, {_mib(teacher)} of frozen '
        f'teacher weights; AdamW adds {_mib(2 * weights)} of state '
        '(estimated)'
    ]
