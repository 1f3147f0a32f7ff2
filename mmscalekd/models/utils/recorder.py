"""Read intermediate outputs of a network while (and only while) asked to."""
import contextlib
import functools
from typing import Dict, Iterator

from torch import nn

from .config_values import check_module_name

__all__ = ['ModuleOutputsRecorder']


class ModuleOutputsRecorder:
    """Record the outputs of named submodules inside a ``with`` block.

    As MMRazor's recorders do: forward hooks exist only while
    :meth:`record` is active, so calling the network anywhere else (the
    student alone in validation, an exported model) records and keeps
    nothing. Only module *names* are held, so a deep copy of the owner (e.g.
    mmengine's EMA model) records its own network.

    Args:
        taps (dict): key -> name of a submodule (e.g. ``'backbone.layer3'``).
    """

    def __init__(self, taps: Dict[str, str]) -> None:
        self.taps = dict(taps)

    def check(self, network: nn.Module, where: str = 'model.{key}') -> None:
        """Raise ``KeyError`` naming ``where`` for a tap that is no module
        (``TypeError`` / ``ValueError`` for one that is no module name).

        Args:
            network: the network the taps are names in.
            where (str): how the config names a tap; ``{key}`` is replaced
                by the tap's key.
        """
        modules = dict(network.named_modules())
        for key, name in self.taps.items():
            check_module_name(name, where.format(key=key))
            if name not in modules:
                children = [n for n in modules if n.count('.') <= 1 and n]
                raise KeyError(
                    f'`{where.format(key=key)}={name!r}` is not a module of '
                    f'the student; modules near the top are '
                    f'{children[:20]}.')

    @contextlib.contextmanager
    def record(self, network: nn.Module) -> Iterator[Dict[str, object]]:
        """Yield a dict that fills with ``key -> output`` as ``network``
        runs inside the block."""
        outputs: Dict[str, object] = {}
        modules = dict(network.named_modules())
        handles = [
            modules[name].register_forward_hook(
                functools.partial(self._store, outputs, key))
            for key, name in self.taps.items()
        ]
        try:
            yield outputs
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _store(outputs: dict, key: str, module, args, output) -> None:
        outputs[key] = output
