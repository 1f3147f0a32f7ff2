"""Two processes (gloo, CPU) compute exactly what one process computes.

DDP averages gradients over processes, and every ScaleKD loss term is a
mean over the batch (the feature terms are sums divided by the batch size),
so with no batch statistics anywhere (GroupNorm in the student and in the
projectors; the teacher is frozen in eval mode) two processes on half
batches must give the gradients and the weights of one process on the
whole batch. BatchNorm would make them differ by design; on GPUs the
`sync_bn='torch'` config key converts it to SyncBatchNorm.

The check runs in float64. The sums themselves differ in their order (two
half-batch sums and an all-reduce against one sum), and in float32 the
frequency view amplifies that round-off past any fixed tolerance: it
L2-normalises mean-removed 2x2 and 4x4 maps of a random teacher, whose
channel norms can be tiny, so a 1e-7 difference in the weights after one
step became a 3e-4 difference in the gradients of the next. In float64 the
two runs agree to 1e-13 after three steps, which is what "the same function"
means here.
"""
import os.path as osp

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import build_optim_wrapper

from tests.conftest import build_distiller, make_batch, tiny_resnet_student

GLOBAL_BATCH = 8
STEPS = 3
GN = dict(type='GN', num_groups=4)


def build_without_batch_statistics():
    """The distiller in float64 (images become float64 when the data
    preprocessor normalises them with its float64 mean and std)."""
    student = tiny_resnet_student()
    student['backbone']['norm_cfg'] = GN
    return build_distiller(
        student=student,
        perception_stage=dict(projector=dict(
            type='CrossAttentionProjector', num_heads=2, norm_cfg=GN)),
        final_stage=dict(projector=dict(
            type='CrossAttentionProjector', num_heads=4, self_query=False,
            norm_cfg=GN))).double()


def optimizer(model):
    return build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)))


def first_gradients_and_trained_weights(model, batches, step):
    """Gradients of the first batch, then weights after STEPS updates."""
    module = model.module if hasattr(model, 'module') else model
    data = module.data_preprocessor(batches[0], training=True)
    # through the DDP wrapper when there is one: it averages the gradients
    loss, _ = module.parse_losses(model(**data, mode='loss'))
    loss.backward()
    gradients = {
        name: p.grad.clone()
        for name, p in module.named_parameters() if p.grad is not None
    }
    module.zero_grad()
    optim_wrapper = optimizer(module)
    for batch in batches:
        step(model, batch, optim_wrapper)
    return gradients, {k: v.clone() for k, v in module.state_dict().items()}


def global_batches():
    return [make_batch(GLOBAL_BATCH, seed=s) for s in range(STEPS)]


def shard(batch, rank, world_size):
    size = len(batch['inputs']) // world_size
    part = slice(rank * size, (rank + 1) * size)
    return dict(
        inputs=batch['inputs'][part], data_samples=batch['data_samples'][part])


def worker(rank, world_size, init_file, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank,
        world_size=world_size)
    model = build_without_batch_statistics()
    # What tools/train.py wraps the model in on CPU; no unused parameters.
    ddp = MMDistributedDataParallel(
        module=model, device_ids=None, broadcast_buffers=False,
        find_unused_parameters=False)
    batches = [shard(b, rank, world_size) for b in global_batches()]
    gradients, weights = first_gradients_and_trained_weights(
        ddp, batches, lambda m, b, o: m.train_step(b, o))
    if rank == 0:
        torch.save(dict(gradients=gradients, weights=weights),
                   osp.join(out_dir, 'ddp.pth'))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / 'init'), str(tmp_path)),
             nprocs=2, join=True)
    torch.set_num_threads(1)
    model = build_without_batch_statistics()
    gradients, weights = first_gradients_and_trained_weights(
        model, global_batches(), lambda m, b, o: m.train_step(b, o))
    ddp = torch.load(tmp_path / 'ddp.pth', weights_only=True)

    assert ddp['gradients'].keys() == gradients.keys()
    # every trainable parameter got a gradient; no teacher parameter did
    assert not any(k.startswith('teacher.') for k in gradients)
    assert {n for n, p in model.named_parameters() if p.requires_grad
            } == set(gradients)
    for name, grad in gradients.items():
        assert grad.dtype == torch.float64, name
        torch.testing.assert_close(
            ddp['gradients'][name], grad, rtol=1e-10, atol=1e-12, msg=name)
    for name, value in weights.items():
        torch.testing.assert_close(
            ddp['weights'][name], value, rtol=1e-10, atol=1e-12, msg=name)
