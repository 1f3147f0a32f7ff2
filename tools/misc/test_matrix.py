# Run a short suite on the first and last releases of each supported
# dependency range, one fresh venv per combination (`make test-matrix`).
# Only the standard library is imported here: the stacks under test live in
# the venvs this tool builds.
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from typing import List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_OUT = osp.join(REPO_ROOT, 'work_dirs', 'test_matrix')

# Every combination runs on this torch (served from the local wheel cache).
TORCH = {'torch': '2.14.1', 'torchvision': '0.29.1'}
# The first and the last release of each supported range that the package
# registry serves (mmscalekd/version.py); README.md ("Tested versions") says
# why older ones are left out.
COMBINATIONS = {
    'oldest': {'mmengine': '0.10.0', 'mmpretrain': '1.0.0',
               'timm': '1.0.10', 'mmcv-lite': '2.0.0'},
    'newest': {'mmengine': '0.10.7', 'mmpretrain': '1.2.0',
               'timm': '1.0.31', 'mmcv-lite': '2.2.0'},
}


def pinned_stack(names: Sequence[str]) -> List[str]:
    """The lines of requirements/runtime.txt that pin these packages."""
    with open(osp.join(REPO_ROOT, 'requirements', 'runtime.txt')) as f:
        lines = [line.strip() for line in f]
    return [line for line in lines
            if line.split('==')[0].split('<')[0].split('>')[0] in names]


# Installed beside them in every venv, as the pinned stack has them:
# mmengine's config loader needs pkg_resources (see setup.py), the error
# cases include the analysis tools', and pytest runs the suite.
COMMON = [*pinned_stack(('setuptools', 'scipy', 'statsmodels',
                         'scikit-learn')),
          '-r', osp.join(REPO_ROOT, 'requirements', 'tests.txt')]
# Reported in the summary, as `pip freeze` spells them.
REPORTED = ('torch', 'torchvision', 'mmengine', 'mmpretrain', 'timm',
            'mmcv-lite', 'mmcv', 'numpy', 'setuptools')

SMOKE_CONFIG = 'configs/smoke/scalekd_smoke_synthetic.py'
PINNED_FUNCTION = 'tests/test_models/test_distillers/test_pinned_function.py'
# Every shipped config, read from the installed package's copy (mmscalekd/
# .mim, what `mim train mmscalekd CONFIG` reads).
LOAD_CONFIGS = """
import glob, json, os.path as osp, traceback
from mmengine.config import Config
import mmscalekd
root = osp.join(osp.dirname(mmscalekd.__file__), '.mim', 'configs')
paths = sorted(p for p in glob.glob(osp.join(root, '**', '*.py'),
                                    recursive=True) if '_base_' not in p)
failed = []
for path in paths:
    try:
        Config.fromfile(path)
    except Exception:
        traceback.print_exc()
        failed.append(osp.relpath(path, root))
print(json.dumps(dict(passed=len(paths) - len(failed), failed=failed)))
"""

# The short suite: (name, kind, arguments). `pytest` steps count their
# tests (JUnit XML); `configs` counts configs; `train` steps count one, and
# pass when tools/train.py succeeds, writes the checkpoint named and logs
# the text given.
SUITE = [
    ('tests', 'pytest', [
        # float64 loss terms and gradients against the stored ones, of the
        # smoke config; the Swin-L -> ResNet-50 case takes 5 minutes on 2
        # cores at load 8 (`make test` runs it)
        PINNED_FUNCTION, '--deselect',
        f'{PINNED_FUNCTION}::test_loss_terms_and_gradients_are_the_pinned_'
        'ones[swin-l_resnet50]',
        # every teacher family's adapter on a tiny real network
        'tests/test_models/test_teachers',
        'tests/test_models/test_backbones/test_timm_student_backbone.py',
        # every shipped config: the baselines are their ScaleKD config less
        # the distillation parts (the training step of each is left out)
        'tests/test_configs/test_all_configs.py',
        '-k', 'not test_config_takes_a_training_step',
        # the hooks every config adds to mmengine's Runner: strict loading,
        # the teacher's validation, FlexibleRunner with two CPU processes;
        # private APIs in compat.py only
        'tests/test_engine/test_strict_loading.py',
        'tests/test_engine/test_val_loop.py',
        'tests/test_engine/test_flexible_runner.py',
        'tests/test_compat.py',
        # tests/test_errors.py is left out: 12 minutes there
    ]),
    ('configs', 'configs', None),
    # The smoke config through the installed package, one epoch of 2
    # iterations, then resumed to the second (a raised max_epochs is a
    # changed schedule, which resume allows: README, "Long runs").
    ('train', 'train', (['train_cfg.max_epochs=1'], 'epoch_1.pth',
                        'Saving checkpoint at 1 epochs')),
    ('resume', 'train', (['train_cfg.max_epochs=2', '--resume'],
                         'epoch_2.pth', 'resumed epoch: 1, iter: 2')),
]
SMOKE_OPTIONS = ['train_dataloader.dataset.num_samples=64']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Build a fresh venv for each combination of dependency '
        'versions (the first and last supported releases), install the '
        'package into it and run a short suite there; write and print a '
        'summary table. Exits with status 1 if any combination fails. '
        'Needs the package registry.')
    parser.add_argument('--only', nargs='+', choices=sorted(COMBINATIONS),
                        metavar='NAME',
                        help='run these combinations only (default: all: '
                        f'{", ".join(COMBINATIONS)})')
    parser.add_argument('--out', default=DEFAULT_OUT,
                        help='where the venvs, logs and summary.md go '
                        '(default: work_dirs/test_matrix)')
    parser.add_argument('--reuse-venvs', action='store_true',
                        help='keep a venv that already holds the pinned '
                        'versions (the package is reinstalled anyway)')
    return parser.parse_args(argv)


def run_logged(command: List[str], log_path: str, **kwargs) -> int:
    with open(log_path, 'a') as log:
        log.write(f'$ {" ".join(command)}\n')
        log.flush()
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                              **kwargs).returncode


def clean_environment() -> dict:
    """This process's environment, less what would let the venv see
    another stack."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME')}
    env['PYTHONNOUSERSITE'] = '1'
    return env


def install(name: str, pins: dict, out_dir: str, reuse: bool) -> Optional[str]:
    """Build the combination's venv; the failed command, or None."""
    venv = osp.join(out_dir, 'venv')
    python = osp.join(venv, 'bin', 'python')
    log_path = osp.join(out_dir, 'install.log')
    requirements = [f'{k}=={v}' for k, v in {**TORCH, **pins}.items()]
    stamp = osp.join(venv, 'matrix-pins.json')
    reused = False
    if reuse and osp.isfile(stamp):
        with open(stamp) as f:
            reused = json.load(f) == requirements + COMMON
    if not reused:
        shutil.rmtree(venv, ignore_errors=True)
        # pip's default cache is shared by all venvs: what it keeps (the
        # wheels it built) serves the next venv.
        steps = [[sys.executable, '-m', 'venv', venv],
                 [python, '-m', 'pip', 'install', *requirements, *COMMON]]
    else:
        steps = []
    # What a user gets from `pip install .` into that stack (the setuptools
    # of the venv builds it, as `make install` does).
    steps.append([python, '-m', 'pip', 'install', '--no-deps',
                  '--no-build-isolation', '--force-reinstall', '.'])
    env = clean_environment()
    for command in steps:
        if run_logged(command, log_path, cwd=REPO_ROOT, env=env) != 0:
            return ' '.join(command)
    with open(stamp, 'w') as f:
        json.dump(requirements + COMMON, f)
    return None


def installed_versions(python: str) -> List[str]:
    freeze = subprocess.run([python, '-m', 'pip', 'freeze', '--all'],
                            capture_output=True, text=True,
                            env=clean_environment()).stdout.split()
    by_name = {line.split('==')[0].lower(): line for line in freeze}
    return [by_name[n] for n in REPORTED if n in by_name]


def junit_counts(path: str):
    """(passed, failed test ids) of a pytest JUnit XML report."""
    if not osp.isfile(path):
        return 0, ['(no report: pytest did not run)']
    passed, failed = 0, []
    for case in ElementTree.parse(path).iter('testcase'):
        outcome = {child.tag for child in case}
        test_id = f'{case.get("classname")}::{case.get("name")}'
        if outcome & {'failure', 'error'}:
            failed.append(test_id)
        elif 'skipped' not in outcome:
            passed += 1
    return passed, failed


def run_step(step, python: str, out_dir: str):
    """(passed, failed items) of one step of the suite."""
    name, kind, arguments = step
    log_path = osp.join(out_dir, f'{name}.log')
    env = clean_environment()
    if kind == 'pytest':
        report = osp.join(out_dir, f'{name}.xml')
        if osp.exists(report):
            os.remove(report)
        run_logged([python, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                    f'--junitxml={report}', *arguments],
                   log_path, cwd=REPO_ROOT, env=env)
        return junit_counts(report)
    if kind == 'configs':
        result = subprocess.run([python, '-c', LOAD_CONFIGS], cwd=out_dir,
                                env=env, capture_output=True, text=True)
        with open(log_path, 'w') as log:
            log.write(result.stdout + result.stderr)
        try:
            counts = json.loads(result.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return 0, [f'{name} (see {log_path})']
        return counts['passed'], counts['failed']
    options, checkpoint, text = arguments
    resume = [a for a in options if a.startswith('--')]
    options = [a for a in options if not a.startswith('--')]
    work_dir = osp.join(out_dir, 'smoke')
    command = [python, 'tools/train.py', SMOKE_CONFIG, '--work-dir', work_dir,
               *resume, '--cfg-options', *SMOKE_OPTIONS, *options]
    status = run_logged(command, log_path, cwd=REPO_ROOT, env=env)
    with open(log_path) as f:
        logged = text in f.read()
    written = osp.isfile(osp.join(work_dir, checkpoint))
    if status != 0 or not written or not logged:
        return 0, [f'{name} (exit status {status}, {checkpoint} '
                   f'{"written" if written else "missing"}, {text!r} '
                   f'{"logged" if logged else "not logged"}; see {log_path})']
    return 1, []


def run_combination(name: str, pins: dict, out: str, reuse: bool) -> dict:
    out_dir = osp.join(out, name)
    os.makedirs(out_dir, exist_ok=True)
    for entry in os.listdir(out_dir):
        if entry != 'venv':  # logs and work dirs of an earlier run
            path = osp.join(out_dir, entry)
            shutil.rmtree(path) if osp.isdir(path) else os.remove(path)
    python = osp.join(out_dir, 'venv', 'bin', 'python')
    start = time.monotonic()
    failed_install = install(name, pins, out_dir, reuse)
    result = dict(name=name, install_s=time.monotonic() - start, passed=0,
                  failed=[], versions=[])
    if failed_install:
        result['failed'] = [f'install: {failed_install} (see '
                            f'{osp.join(out_dir, "install.log")})']
        result['suite_s'] = 0.0
        return result
    result['versions'] = installed_versions(python)
    start = time.monotonic()
    for step in SUITE:
        passed, failed = run_step(step, python, out_dir)
        print(f'  {name} / {step[0]}: {passed} passed, {len(failed)} failed',
              flush=True)
        result['passed'] += passed
        result['failed'] += [f'{step[0]}: {f}' for f in failed]
    result['suite_s'] = time.monotonic() - start
    return result


def summary(results: List[dict], load: str) -> str:
    lines = [
        '# Test matrix', '',
        f'{time.strftime("%Y-%m-%d %H:%M %Z")}, `make test-matrix` '
        f'(tools/misc/test_matrix.py); load average at the end: {load}.', '',
        '| combination | installed (pip freeze) | passed | failed | '
        'install | suite |',
        '|---|---|---|---|---|---|',
    ]
    for r in results:
        lines.append(
            f'| {r["name"]} | {", ".join(r["versions"]) or "-"} | '
            f'{r["passed"]} | {len(r["failed"])} | {r["install_s"]:.0f} s | '
            f'{r["suite_s"]:.0f} s |')
    for r in results:
        if r['failed']:
            lines += ['', f'Failed in {r["name"]}:', '']
            lines += [f'- {f}' for f in r['failed']]
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    args.out = osp.abspath(args.out)  # the steps run in other folders
    os.makedirs(args.out, exist_ok=True)
    results = []
    for name in args.only or COMBINATIONS:
        print(f'{name}: {COMBINATIONS[name]}', flush=True)
        results.append(run_combination(name, COMBINATIONS[name], args.out,
                                       args.reuse_venvs))
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    text = summary(results, load)
    with open(osp.join(args.out, 'summary.md'), 'w') as f:
        f.write(text)
    print(text, end='')
    return 1 if any(r['failed'] for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
