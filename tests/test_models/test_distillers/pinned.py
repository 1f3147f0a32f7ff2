"""The function ScaleKD computes, pinned for a refactor.

For the smoke config and for Swin-L -> ResNet-50 (batch 2), in float64, this
records every loss term and a fingerprint of every gradient (sum, sum of
squares and four entries), with weights set by *name* rather than by
construction order: a refactor that builds the parts in another order (or
moves them, given a map of the old names) still gets the same weights, so
the same numbers must come out.

    python -m tests.test_models.test_distillers.pinned   # writes the file

Only regenerate the file when the function is meant to change.
"""
import os.path as osp
import re
import zlib
from typing import Dict

import torch
from mmengine.config import Config

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
PINNED_FILE = osp.join(REPO_ROOT, 'tests', 'data', 'pinned_function.pth')
CASES = {
    'smoke': ('configs/smoke/scalekd_smoke_synthetic.py', 4),
    'swin-l_resnet50': ('configs/scalekd/scalekd_swin-l_resnet50_8xb32_in1k.py',
                        2),
}


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def fill_by_name(named_tensors) -> None:
    """Deterministic values for every floating tensor, from its name.

    Norm-like 1-D weights near 1, biases near 0, everything else scaled by
    1/sqrt(fan-in); running variances positive.
    """
    for name, tensor in named_tensors:
        if not tensor.is_floating_point():
            continue
        g = _generator(name)
        noise = torch.randn(tensor.shape, generator=g, dtype=torch.float64)
        if name.endswith('running_var'):
            value = 1.0 + 0.1 * noise.abs()
        elif name.endswith('running_mean') or tensor.dim() == 1 and \
                name.endswith('bias'):
            value = 0.02 * noise
        elif tensor.dim() == 1:
            value = 1.0 + 0.1 * noise
        else:
            fan_in = max(1, tensor.numel() // tensor.shape[0])
            value = noise / fan_in**0.5
        with torch.no_grad():
            tensor.copy_(value.to(tensor.dtype))


def pinned_name(name: str) -> str:
    """The name a parameter had when the function was pinned (the flat
    distiller: ``projectors.<stage>_<view>.*``, teacher ``teacher.*``)."""
    match = re.match(r'(perception|final)_stage\.projectors\.(\w+)\.(.*)',
                     name)
    if match:
        stage, view, rest = match.groups()
        return f'projectors.{stage}_{view}.{rest}'
    return name


def build(config: str):
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    model_cfg = cfg.model.to_dict()
    model_cfg['teacher']['checkpoint'] = None
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg).double()
    network = model.teacher.network
    for named in (model.named_parameters(), model.named_buffers()):
        fill_by_name((pinned_name(n), t) for n, t in named)
    for named in (network.named_parameters(), network.named_buffers()):
        fill_by_name((f'teacher.{n}', t) for n, t in named)
    model.train()
    return model


def fingerprint(tensor: torch.Tensor, name: str) -> torch.Tensor:
    flat = tensor.detach().double().reshape(-1)
    index = torch.randint(0, flat.numel(), (4, ), generator=_generator(name))
    return torch.cat([flat.sum().reshape(1), flat.pow(2).sum().reshape(1),
                      flat[index]])


def compute(case: str) -> Dict[str, Dict[str, torch.Tensor]]:
    """Loss terms and gradient fingerprints of one case (and each
    parameter's number of elements)."""
    config, batch_size = CASES[case]
    model = build(config)
    size = model.input_size
    inputs = torch.randn(batch_size, 3, *size, generator=_generator('inputs'),
                         dtype=torch.float64)
    samples = [DataSample().set_gt_label(i % 4) for i in range(batch_size)]
    losses = model.loss(inputs, samples)
    terms = {k: v.detach().reshape(()) for k, v in losses.items()
             if 'loss' in k}
    sum(terms_v for terms_v in (losses[k] for k in terms)).backward()
    grads = {
        pinned_name(n): fingerprint(p.grad, pinned_name(n))
        for n, p in model.named_parameters() if p.grad is not None
    }
    numel = {pinned_name(n): p.numel() for n, p in model.named_parameters()}
    return dict(terms=terms, grads=grads, numel=numel)


if __name__ == '__main__':
    import mmscalekd  # noqa: F401
    torch.set_num_threads(2)
    pinned = {case: compute(case) for case in CASES}
    torch.save(pinned, PINNED_FILE)
    for case, result in pinned.items():
        print(case, {k: float(v) for k, v in result['terms'].items()},
              len(result['grads']), 'gradient fingerprints')
