"""The frozen teacher costs nothing it need not: no DDP broadcast or
registration, no EMA copy or update, one download per node."""
import http.server
import os
import os.path as osp
import threading

import pytest
import torch
import torch.multiprocessing as mp
from mmengine.model import MMDistributedDataParallel

from mmscalekd.utils import CheckpointError, load_state_dict_file
from tests.conftest import (build_distiller, build_runner, run_log,
                            smoke_config, tiny_swin_teacher)


def test_teacher_is_held_outside_the_module_tree(distiller):
    from mmpretrain.registry import MODELS
    network = distiller.teacher.network
    assert isinstance(network, type(MODELS.build(tiny_swin_teacher())))
    teacher_params = {id(p) for p in network.parameters()}
    assert teacher_params
    assert not teacher_params & {id(p) for p in distiller.parameters()}
    assert not any(k.startswith('teacher.') for k in distiller.state_dict())
    assert all(m is not network for m in distiller.modules())
    # ... yet it moves with the distiller, and stays in eval mode.
    distiller.double().train()
    images = torch.zeros(1, 3, 64, 64, dtype=torch.float64)
    assert distiller.teacher.logits(images).dtype == torch.float64
    assert not network.training


def test_copies_share_the_teacher(distiller):
    import copy
    duplicate = copy.deepcopy(distiller)
    assert duplicate.teacher.network is distiller.teacher.network
    assert duplicate.student is not distiller.student


def test_ema_averages_student_and_projectors_only(tmp_path):
    ema = [dict(type='EMAHook', momentum=0.5, priority='ABOVE_NORMAL')]
    runner = build_runner(smoke_config(tmp_path, max_epochs=1,
                                       custom_hooks=ema))
    model = runner.model
    teacher = model.teacher.network
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    runner.train()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    averaged = hook.ema_model.avg_parameters
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(averaged) == set(trained)  # student and projectors, no more
    assert sum(p.numel() for p in averaged.values()) == sum(
        p.numel() for p in trained.values())
    # shared, no copy
    assert hook.ema_model.module.teacher.network is teacher
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    # The EMA weights differ from the trained ones (they were averaged),
    # and the checkpoint's EMA state has no teacher.
    assert any(not torch.equal(averaged[k], trained[k]) for k in averaged)
    saved = torch.load(tmp_path / 'epoch_1.pth', weights_only=False)
    assert not any('teacher.' in k for k in saved['ema_state_dict'])
    # Resuming with EMA works on these checkpoints.
    resumed = build_runner(smoke_config(tmp_path, max_epochs=2,
                                        custom_hooks=ema, resume=True))
    resumed.train()
    assert 'resumed epoch: 1' in run_log(resumed)
    # mmengine loads the EMA state leniently; a partial one is refused.
    saved['ema_state_dict'] = {
        k: v for k, v in saved['ema_state_dict'].items()
        if not ('final' in k and 'projectors' in k and 'spatial' in k)}
    torch.save(saved, tmp_path / 'partial_ema.pth')
    with pytest.raises(CheckpointError, match=r'ema_state_dict.*missing'):
        build_runner(smoke_config(
            tmp_path / 'again', max_epochs=2, custom_hooks=ema, resume=True,
            load_from=str(tmp_path / 'partial_ema.pth'))).train()


# ------------------------------------------------------------------- DDP
def _ddp_worker(rank, world_size, init_file, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world_size)
    model = build_distiller()
    if rank == 1:  # a teacher that differs between the processes
        with torch.no_grad():
            for p in model.teacher.network.parameters():
                p.add_(1.0)
    teacher = model.teacher.network
    expected = {k: v.clone() for k, v in teacher.state_dict().items()}
    ddp = MMDistributedDataParallel(module=model, device_ids=None,
                                    broadcast_buffers=False)
    kept = all(torch.equal(v, expected[k])
               for k, v in teacher.state_dict().items())
    registered = any(id(p) in {id(q) for q in teacher.parameters()}
                     for p in ddp.parameters())
    torch.save(dict(kept=kept, registered=registered),
               osp.join(out_dir, f'rank{rank}.pth'))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_neither_registers_nor_broadcasts_the_teacher(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / 'init'), str(tmp_path)),
             nprocs=2, join=True)
    for rank in (0, 1):
        result = torch.load(tmp_path / f'rank{rank}.pth')
        assert result['kept'] and not result['registered'], rank


# ------------------------------------------------------- teacher by URL
class _Server:
    """A local HTTP server over a folder, counting the files it sends."""

    def __init__(self, root):
        self.gets = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):

            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.gets.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                     Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served_teacher(tmp_path, monkeypatch):
    """A teacher checkpoint on a local server with an OpenMMLab-style name
    (the first 8 hex digits of its SHA-256), and an empty hub cache."""
    import hashlib

    from mmpretrain.registry import MODELS
    root = tmp_path / 'www'
    root.mkdir()
    torch.manual_seed(3)
    state = MODELS.build(tiny_swin_teacher()).state_dict()
    plain = root / 'plain.pth'
    torch.save(dict(state_dict=state), plain)
    digest = hashlib.sha256(plain.read_bytes()).hexdigest()
    good = f'swin-tiny_20261125-{digest[:8]}.pth'
    os.rename(plain, root / good)
    (root / 'swin-tiny_20261125-0badc0de.pth').write_bytes(
        (root / good).read_bytes())
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    server = _Server(root)
    yield server, good, state
    server.close()


def _download_worker(rank, world_size, init_file, url, out_dir):
    import torch.distributed as dist
    os.environ['LOCAL_RANK'] = str(rank)
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world_size)
    try:
        result = load_state_dict_file(url, key='model.teacher.checkpoint')
    except CheckpointError as error:
        result = str(error)
    torch.save(result, osp.join(out_dir, f'rank{rank}.pth'))
    dist.destroy_process_group()


def _download_on_two_ranks(tmp_path, url):
    mp.spawn(_download_worker,
             args=(2, str(tmp_path / 'init'), url, str(tmp_path)), nprocs=2,
             join=True)
    return [torch.load(tmp_path / f'rank{r}.pth', weights_only=False)
            for r in (0, 1)]


@pytest.mark.slow
def test_url_teacher_is_downloaded_once_per_node(served_teacher, tmp_path):
    server, name, state = served_teacher
    results = _download_on_two_ranks(tmp_path, f'{server.url}/{name}')
    assert server.gets == [f'/{name}']
    for result in results:
        assert result.keys() == state.keys()
        assert all(torch.equal(result[k], state[k]) for k in state)


@pytest.mark.slow
def test_wrong_hash_stops_every_rank(served_teacher, tmp_path):
    server, _, _ = served_teacher
    url = f'{server.url}/swin-tiny_20261125-0badc0de.pth'
    local, other = _download_on_two_ranks(tmp_path, url)
    assert "SHA-256 does not start with '0badc0de'" in local
    assert 'failed in 1 other process' in other
    cache = osp.join(tmp_path, 'torch_home', 'hub', 'checkpoints')
    assert not osp.exists(cache) or not os.listdir(cache)


def test_url_teacher_in_a_distiller(served_teacher):
    server, name, state = served_teacher
    distiller = build_distiller(
        teacher=dict(checkpoint=f'{server.url}/{name}'))
    for key, value in state.items():
        assert torch.equal(distiller.teacher.network.state_dict()[key],
                           value)
    # Cached: a second build downloads nothing.
    build_distiller(teacher=dict(checkpoint=f'{server.url}/{name}'))
    assert server.gets == [f'/{name}']
