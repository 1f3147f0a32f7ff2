"""Gradient accumulation over 2 batches in one process makes the update of
2 processes on those batches (``--accumulate 2`` on half the GPUs).

mmengine's OptimWrapper divides each batch's loss by the accumulation and
steps once every 2 batches; DDP averages the 2 processes' gradients. Every
ScaleKD loss term is a mean over the batch, so with no batch statistics
(a LayerNorm student: the quick start's MLP-Mixer, GroupNorm projectors, a
frozen teacher in eval mode) both are the mean of the same two batch-mean
gradients, and the same optimizer step. The one process is fed the
processes' batches in rank order, so both runs see the same samples.

Tolerance: the runs are in float64 (see test_distributed.py for why float32
round-off is amplified by the frequency view past any fixed tolerance) and
the gradients are summed in a different order (two scaled backward passes
into one ``.grad`` against an all-reduce), so they agree to round-off:
``rtol=1e-10, atol=1e-12`` after one step and after three.

BatchNorm: each forward pass normalises by the statistics of its own batch
of b images, in both runs; the trainable weights then agree as closely as
without BatchNorm. What differs is the running statistics: one process
updates them once per batch (twice per step), while each DDP process
updates its own from its half only (``broadcast_buffers=False``), and the
checkpoint holds rank 0's. A run with SyncBatchNorm (``sync_bn='torch'``,
as the ResNet-50 and Mixer-B/16 configs set) normalises over all 2b images
of a step, which accumulation cannot reproduce: the test measures that
difference as one process on the whole 2b batch.
"""
import os.path as osp

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from tests.conftest import REPO_ROOT, build_distiller, make_batch

BATCH = 4  # per process, and per accumulated batch
STEPS = 3
GN = dict(type='GN', num_groups=4)
TIGHT = dict(rtol=1e-10, atol=1e-12)


def layer_norm_distiller():
    """The quick start's distiller (ViT teacher, MLP-Mixer student) with
    GroupNorm projectors, in float64."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'quickstart',
                                   'mixer-tiny_digits_scalekd.py'))
    model = cfg.model.to_dict()
    for stage in ('perception_stage', 'final_stage'):
        model[stage]['projector']['norm_cfg'] = GN
    model['data_preprocessor'] = dict(
        num_classes=10, mean=[127.5] * 3, std=[64.0] * 3, to_rgb=False)
    torch.manual_seed(0)
    return MODELS.build(model).double()


def batch_norm_distiller():
    """The smoke config's distiller: a BatchNorm ResNet student and
    BatchNorm projectors, in float64."""
    return build_distiller().double()


def digits_batch(seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (BATCH, 3, 16, 16), generator=generator,
                           dtype=torch.uint8)
    return dict(inputs=list(images), data_samples=[
        DataSample().set_gt_label(int(label))
        for label in torch.randint(0, 10, (BATCH, ), generator=generator)])


BUILDERS = dict(layer_norm=(layer_norm_distiller, digits_batch),
                batch_norm=(batch_norm_distiller,
                            lambda seed: make_batch(BATCH, seed=seed)))


def rank_batches(kind, rank):
    """The batches of process ``rank`` (of 2), one per step."""
    return [BUILDERS[kind][1](2 * step + rank) for step in range(STEPS)]


def joined(*batches):
    return {key: sum((b[key] for b in batches), []) for key in batches[0]}


def train(model, batches, accumulate=1):
    """Weights after the first optimizer step and after the last."""
    module = model.module if hasattr(model, 'module') else model
    optim_wrapper = build_optim_wrapper(module, dict(
        optimizer=dict(type='SGD', lr=0.05, momentum=0.9),
        accumulative_counts=accumulate))
    optim_wrapper.initialize_count_status(module, 0, len(batches))
    snapshots = []
    for index, batch in enumerate(batches):
        model.train_step(batch, optim_wrapper)
        if (index + 1) % accumulate == 0 and len(snapshots) < 1:
            snapshots.append(
                {k: v.clone() for k, v in module.state_dict().items()})
    return snapshots + [{k: v.clone() for k, v in module.state_dict().items()}]


def worker(rank, world_size, init_file, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank,
        world_size=world_size)
    results = {}
    for kind, (build, _) in BUILDERS.items():
        # What tools/train.py wraps the model in on CPU.
        ddp = MMDistributedDataParallel(
            module=build(), device_ids=None, broadcast_buffers=False,
            find_unused_parameters=False)
        results[kind] = train(ddp, rank_batches(kind, rank))
    if rank == 0:
        torch.save(results, osp.join(out_dir, 'ddp.pth'))
    dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
    """Rank 0's weights after 1 and STEPS steps of 2 processes."""
    out = tmp_path_factory.mktemp('two_processes')
    mp.spawn(worker, args=(2, str(out / 'init'), str(out)), nprocs=2,
             join=True)
    return torch.load(out / 'ddp.pth', weights_only=True)


def accumulated(kind):
    """One process, the two ranks' batches in turn, accumulation 2."""
    torch.set_num_threads(1)
    batches = [b for step in zip(rank_batches(kind, 0), rank_batches(kind, 1))
               for b in step]
    return train(BUILDERS[kind][0](), batches, accumulate=2)


def largest_difference(a, b, keys):
    return max(float(((a[k] - b[k]).abs().max() / b[k].abs().max()))
               for k in keys)


def update_difference(initial, a, b, keys):
    """|a - b| over |b - initial|, of all the weights ``keys`` together:
    how far two updates of the same weights differ, relative to the
    update."""
    difference = sum(float(((a[k] - b[k])**2).sum()) for k in keys)
    update = sum(float(((b[k] - initial[k])**2).sum()) for k in keys)
    return (difference / update)**0.5


@pytest.mark.slow
def test_accumulation_equals_two_processes(two_processes):
    ours = accumulated('layer_norm')
    model = layer_norm_distiller()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(n.startswith('teacher.') for n in trainable)
    initial = model.state_dict()
    for step, (mine, theirs) in enumerate(zip(ours, two_processes[
            'layer_norm'])):
        assert mine.keys() == theirs.keys()
        # the steps trained the student and both stages' projectors
        changed = {n.split('.')[0] + '.' + n.split('.')[1] for n in trainable
                   if not torch.equal(mine[n], initial[n])}
        assert {'student.backbone', 'student.head',
                'perception_stage.projectors',
                'final_stage.projectors'} <= changed, changed
        for name, value in mine.items():
            assert value.dtype == torch.float64, name
            torch.testing.assert_close(theirs[name], value, **TIGHT,
                                       msg=f'step {step}: {name}')


@pytest.mark.slow
def test_batch_norm_weights_agree_and_running_statistics_differ(
        two_processes):
    ours = accumulated('batch_norm')
    theirs = two_processes['batch_norm']
    model = batch_norm_distiller()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    running = [k for k in model.state_dict()
               if k.endswith(('running_mean', 'running_var'))]
    assert running
    for mine, other in zip(ours, theirs):
        for name in trainable:
            torch.testing.assert_close(other[name], mine[name], **TIGHT,
                                       msg=name)
        # Rank 0's statistics saw half of the images: measured, a tensor
        # differing by 1.09 times its largest value after one step.
        assert largest_difference(mine, other, running) > 1e-2

    # SyncBatchNorm's statistics over the whole 2b images of a step: the
    # same samples, a different update.
    torch.set_num_threads(1)
    whole = [joined(a, b) for a, b in zip(rank_batches('batch_norm', 0),
                                          rank_batches('batch_norm', 1))]
    synchronised = train(batch_norm_distiller(), whole)
    initial = model.state_dict()
    # Measured: the two differ by 1.08 times the update after one step,
    # 1.23 times after three (statistics of 4 against 8 random images; real
    # batches of 32 and 256 differ far less).
    for mine, other in zip(ours, synchronised):
        assert update_difference(initial, mine, other, trainable) > 0.1
