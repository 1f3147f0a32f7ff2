"""Private APIs of other libraries are used in mmscalekd/compat.py only."""
import ast
import os.path as osp
from pathlib import Path

import mmscalekd
from mmscalekd import compat

PACKAGE = Path(osp.dirname(mmscalekd.__file__))


def private_uses(path: Path):
    """``obj._name`` and ``getattr(obj, '_name')`` on anything but the
    object itself (``self``, ``cls``, ``super()``), as (line, name)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        owner, name = None, None
        if isinstance(node, ast.Attribute):
            owner, name = node.value, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ('getattr', 'hasattr', 'setattr')
              and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            owner, name = node.args[0], node.args[1].value
        if name is None or not name.startswith('_') or \
                name.startswith('__'):
            continue
        if isinstance(owner, ast.Name) and owner.id in ('self', 'cls'):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) \
                and owner.func.id == 'super':
            continue
        yield node.lineno, name


def test_the_package_uses_no_private_api_outside_compat():
    found = [f'{path.relative_to(PACKAGE)}:{line}: {name}'
             for path in sorted(PACKAGE.rglob('*.py'))
             if path.name != 'compat.py' and '.mim' not in path.parts
             for line, name in private_uses(path)]
    assert found == []


def test_each_compat_entry_names_the_versions_it_was_tested_on():
    for name in compat.__all__:
        doc = getattr(compat, name).__doc__
        assert any(library in doc
                   for library in ('mmengine 0.10', 'mmpretrain 1.', 'timm 1.',
                                   'torch 2.', 'numpy 2.')), \
            name
