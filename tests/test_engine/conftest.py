"""Most tests here train, resume or kill a run of the smoke config (40-60 s
each on a loaded 2-core CPU machine): the whole folder is `slow`, left out
by `make test-fast`."""
import os.path as osp

import pytest

HERE = osp.dirname(osp.abspath(__file__))


def pytest_collection_modifyitems(items):
    for item in items:
        if str(item.path).startswith(HERE + osp.sep):
            item.add_marker(pytest.mark.slow)
