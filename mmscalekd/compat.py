"""Where mmscalekd relies on what a library does not promise.

Everything here is the internals of another package that a public API does
not offer; nothing else in mmscalekd reaches into them. Each entry names
the versions it was tested on (``make test-matrix`` runs the suite on the
first and last releases of each supported range).
"""
import numpy as np
import torch

__all__ = [
    'HISTORY_BUFFER_FIELDS', 'numpy_pickle_globals', 'torch_tensor_rebuild'
]

#: The fields of a pickled ``mmengine.logging.HistoryBuffer`` (besides its
#: statistics functions), which training checkpoints hold in the message
#: hub. Tested: mmengine 0.10.x.
HISTORY_BUFFER_FIELDS = frozenset(
    {'max_length', '_log_history', '_count_history'})


def numpy_pickle_globals() -> list:
    """The numpy callables and types that pickled arrays and scalars name
    (``numpy._core.multiarray._reconstruct`` / ``scalar`` under numpy 2,
    ``numpy.core`` under numpy 1), for torch's ``weights_only`` allow-list.
    Tested: numpy 1.26, 2.x."""
    multiarray = np._core.multiarray if hasattr(np, '_core') \
        else np.core.multiarray
    dtype_types = [type(np.dtype(name)) for name in (
        'bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16',
        'uint32', 'uint64', 'float16', 'float32', 'float64')]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray,
            np.dtype] + dtype_types


def torch_tensor_rebuild():
    """The function a pickled tensor names (``torch._utils.
    _rebuild_tensor_v2``), for reading prediction files as data. Tested:
    torch 2.14."""
    return torch._utils._rebuild_tensor_v2
