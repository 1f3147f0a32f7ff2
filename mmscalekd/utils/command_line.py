"""What the tools under ``tools/`` share once their arguments are parsed.

- A console that shows what a user reads: mmengine's Runner logs the
  environment, the whole config and the hook order at start-up (about 300
  lines on a small config); :func:`build_runner` keeps them in the log file
  and off the console unless ``--verbose``.
- The package's errors for bad input as one message: :func:`report_errors`
  prints the message that names the key or file and the fix, not a
  traceback of 50 lines around it, and leaves the traceback of anything
  else (a bug) as it is.

Tools parse their arguments before they import torch, mmengine or this
package, so that ``--help`` answers at once (``mim train`` runs ``train.py
-h`` before every run); :func:`dict_options` then gives ``--cfg-options``
the value mmengine's ``DictAction`` would have.
"""
import argparse
import linecache
import logging
import os.path as osp
import sys
from typing import Optional

__all__ = [
    'STARTUP_DETAILS', 'StartupDetailsFilter', 'build_runner',
    'dict_options', 'is_user_error', 'report_errors'
]

# What mmengine's Runner logs at INFO before the first iteration. They stay
# in the log file; the console shows them with --verbose.
STARTUP_DETAILS = (
    '\n' + '-' * 60 + '\nSystem environment:',
    'Config:\n',
    'Hooks will be executed in the following order:',
)


class StartupDetailsFilter(logging.Filter):
    """Drops the environment, config and hook-order records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(STARTUP_DETAILS)


class _QuietConsole:
    """Runner mix-in: the console handler of the runner's logger skips the
    start-up details (the log file handler keeps everything)."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        for handler in logger.handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.addFilter(StartupDetailsFilter())
        return logger


def build_runner(cfg, verbose: bool = False, training: bool = True):
    """The config's runner (``runner_type`` or mmengine's Runner), with the
    config prepared for it by :func:`mmscalekd.engine.prepare_run`; without
    ``verbose`` its console leaves out the start-up details (a console
    filter over whichever runner class the config names)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmscalekd.engine import prepare_run
    runner_cls = RUNNERS.get(cfg.runner_type) if 'runner_type' in cfg \
        else Runner
    if runner_cls is None:
        raise KeyError(f'`runner_type={cfg.runner_type!r}` is not a '
                       'registered runner; check `custom_imports`.')
    cfg = prepare_run(cfg, training)
    if verbose:
        return runner_cls.from_cfg(cfg)
    quiet = type(runner_cls.__name__, (_QuietConsole, runner_cls), {})
    runner = quiet.from_cfg(cfg)
    log_files = [h.baseFilename for h in runner.logger.handlers
                 if isinstance(h, logging.FileHandler)]
    where = f'in {log_files[0]}' if log_files else 'in the log file'
    runner.logger.info(f'Environment, config and hook order: {where} '
                       '(--verbose prints them here).')
    return runner


def dict_options(args: argparse.Namespace, *names: str):
    """Options parsed as lists of ``KEY=VALUE`` strings (argparse's
    ``nargs='+', action='extend'``), turned into the dicts of mmengine's
    ``DictAction``, in place. Returns ``args``."""
    from mmengine.config import DictAction
    for name in names:
        values = getattr(args, name)
        if values is not None:
            setattr(args, name, None)
            DictAction([], name)(None, args, values)
    return args


# The types of the package's checks of configs, files and installed
# packages; raised by a `raise` of the package (or of a tool), they are a
# message to the user.
_CHECK_TYPES = (KeyError, ValueError, TypeError, FileNotFoundError,
                FloatingPointError, ImportError)


def _our_folders() -> tuple:
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    # A checkout's tools/ (an installed package has them in .mim/tools).
    tools = osp.join(osp.dirname(package), 'tools')
    return package + osp.sep, tools + osp.sep


def _raised_on_purpose(error: BaseException) -> bool:
    """Whether a `raise` statement of the package or a tool raised it."""
    traceback = error.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    filename = osp.abspath(traceback.tb_frame.f_code.co_filename)
    line = linecache.getline(filename, traceback.tb_lineno)
    return filename.startswith(_our_folders()) and line.lstrip().startswith(
        'raise')


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the package's message about bad input.

    It is when its type is one that mmscalekd defines (``CheckpointError``,
    ``DataError``, ``WorkDirLockedError``, ``PredictionFileError``), or one
    of the types of its config checks raised by a ``raise`` of the package
    or a tool. Anything else (an ``AttributeError``, an error inside torch,
    a ``KeyError`` of a dict lookup) is a bug or a problem the package does
    not know, and keeps its traceback.
    """
    if type(error).__module__.split('.')[0] == 'mmscalekd':
        return True
    return isinstance(error, _CHECK_TYPES) and _raised_on_purpose(error)


def _message(error: BaseException) -> str:
    # str() of a KeyError is the repr of its message
    if len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


def _log_traceback(error: BaseException) -> Optional[str]:
    """Write the traceback to the log file of the latest run, if one is
    open; returns that file."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    record = logging.LogRecord(
        logger.name, logging.ERROR, __file__, 0, 'The run stopped:', None,
        (type(error), error, error.__traceback__))
    handlers = [h for h in logger.handlers
                if isinstance(h, logging.FileHandler)]
    for handler in handlers:
        handler.handle(record)
    return handlers[0].baseFilename if handlers else None


def report_errors(verbose: bool = False, tool: Optional[str] = None):
    """From here on, an uncaught error of the package about bad input
    (:func:`is_user_error`) ends the program with its message alone on
    stderr, exit status 1, and its traceback in the run's log file. Other
    errors, and all with ``verbose``, print their traceback as Python does.

    Args:
        verbose (bool): leave every traceback on the console.
        tool (str, optional): how the message names the program; default:
            the script's file name.
    """
    if verbose:
        return
    tool = tool or osp.basename(sys.argv[0])
    previous = sys.excepthook

    def report(kind, error, traceback):
        if not (isinstance(error, Exception) and is_user_error(error)):
            previous(kind, error, traceback)
            return
        log_file = _log_traceback(error)
        where = f'in {log_file}' if log_file else 'not shown'
        print(f'{tool}: error: {_message(error)}\n'
              f'{tool}: the traceback is {where} (--verbose prints it '
              'here).', file=sys.stderr, flush=True)

    sys.excepthook = report
