"""Checks of config values, shared by every registered component.

A value of the wrong type fails deep inside torch with a raw traceback
(``num_heads='2'``) or passes unnoticed: ``True`` is an ``int`` in Python,
so ``num_heads=True`` would be one head, and ``int(1.5)`` a split point of
1. Each check raises naming the config key, with the value as ``repr``
shows it, so that ``'0.08'`` reads as the string it is. Wrong types raise
``TypeError``, values out of range ``ValueError``.
"""
import math
import numbers
from typing import Optional, Sequence, Tuple

from torch import nn

from mmpretrain.registry import MODELS

__all__ = [
    'build_at', 'check_choice', 'check_flag', 'check_integer',
    'check_module_name', 'check_number', 'check_numbers', 'check_size'
]


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _not(value) -> str:
    """How a wrongly typed value is named, and how to write it instead."""
    if isinstance(value, str):
        return 'not a string; write it without quotes'
    if isinstance(value, bool) or value is None:
        return f'not {value}'
    name = type(value).__name__
    return f'not {"an" if name[0] in "aeiou" else "a"} {name}'


def _note(note: str) -> str:
    return f' ({note})' if note else ''


def check_integer(value, key: str, minimum: Optional[int] = None,
                  note: str = '') -> int:
    """``value`` if it is an integer (not a bool, float or string) of at
    least ``minimum``; raise naming ``key`` otherwise."""
    at_least = '' if minimum is None else f' >= {minimum}'
    if not _is_integer(value):
        raise TypeError(f'`{key}={value!r}` must be an integer{at_least}, '
                        f'{_not(value)}{_note(note)}.')
    if minimum is not None and value < minimum:
        raise ValueError(
            f'`{key}={value!r}` must be an integer{at_least}{_note(note)}.')
    return int(value)


def _bounds_text(greater_than, at_least, at_most) -> str:
    if at_least is not None and at_most is not None:
        return f' in [{at_least}, {at_most}]'
    if greater_than is not None:
        return f' > {greater_than}'
    if at_least is not None:
        return f' >= {at_least}'
    return ''


def _number_problem(value, greater_than, at_least, at_most):
    """(exception type, what it must be) for a bad number, else None."""
    bounds = _bounds_text(greater_than, at_least, at_most)
    if not _is_number(value):
        return TypeError, f'a number{bounds}, {_not(value)}'
    if not (math.isfinite(value)
            and (greater_than is None or value > greater_than)
            and (at_least is None or value >= at_least)
            and (at_most is None or value <= at_most)):
        return ValueError, f'a finite number{bounds}'
    return None


def check_number(value, key: str, greater_than=None, at_least=None,
                 at_most=None, note: str = '') -> float:
    """``value`` as a float if it is a finite number (not a bool or
    string) within the bounds; raise naming ``key`` otherwise."""
    problem = _number_problem(value, greater_than, at_least, at_most)
    if problem:
        error, expected = problem
        raise error(f'`{key}={value!r}` must be {expected}{_note(note)}.')
    return float(value)


def check_numbers(values, key: str, greater_than=None) -> list:
    """``values`` as a list of floats if it is a non-empty list or tuple
    of finite numbers, each above ``greater_than``: one per image
    channel."""
    expected = ('a list of finite numbers' +
                _bounds_text(greater_than, None, None) +
                ', one per image channel')
    if not isinstance(values, (list, tuple)) or not values:
        raise TypeError(f'`{key}={values!r}` must be {expected}.')
    for value in values:
        problem = _number_problem(value, greater_than, None, None)
        if problem:
            raise problem[0](f'`{key}={values!r}` must be {expected}; '
                             f'{value!r} is not.')
    return [float(value) for value in values]


def check_size(value, key: str, example: str = '224 or (224, 224)',
               note: str = '') -> Tuple[int, int]:
    """``value`` as ``(H, W)``: a positive integer (both sides) or a
    pair of them."""
    pair = (value, value) if _is_integer(value) else value
    what = f'a positive integer or an (H, W) pair of them, e.g. {example}'
    if not isinstance(pair, (list, tuple)) or not all(
            _is_integer(v) for v in pair):
        raise TypeError(f'`{key}={value!r}` must be {what}{_note(note)}.')
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f'`{key}={value!r}` must be {what}{_note(note)}.')
    return int(pair[0]), int(pair[1])


def check_flag(value, key: str) -> bool:
    """``value`` if it is ``True`` or ``False``: ``'False'`` or ``0``
    would read as a switch but be taken by its truth value."""
    if not isinstance(value, bool):
        raise TypeError(f'`{key}={value!r}` must be True or False, '
                        f'{_not(value)}.')
    return value


def check_choice(value, key: str, choices: Sequence, note: str = ''):
    """``value`` if it is one of ``choices``."""
    if not (isinstance(value, str) and value in choices):
        raise ValueError(f'`{key}={value!r}`: use one of '
                         f'{list(choices)}{_note(note)}.')
    return value


def check_module_name(value, key: str) -> str:
    """``value`` if it is a non-empty string: the dotted name of a
    submodule (``''`` names the whole network)."""
    if not isinstance(value, str):
        raise TypeError(
            f'`{key}={value!r}` must be the name of a student module, a '
            "string such as 'backbone.layer3', " + _not(value) + '.')
    if not value:
        raise ValueError(
            f"`{key}=''` names the whole student, not a feature inside it; "
            "give a stage or block, e.g. 'backbone.layer3'.")
    return value


def build_at(cfg: dict, where: str, interface: Optional[type] = None,
             example: str = '') -> nn.Module:
    """``MODELS.build(cfg)``, with the config key ``where`` in front of its
    errors; refused unless it has the members of ``interface`` (a runtime
    checkable protocol of :mod:`mmscalekd.models.interfaces`), when given,
    naming ``example``, a module that has them."""
    try:
        module = MODELS.build(cfg)
    except (TypeError, ValueError, KeyError) as error:
        raise type(error)(f'`{where}`: {error}') from None
    if interface is not None and not isinstance(module, interface):
        members = [*interface.__annotations__, '__call__']
        raise TypeError(
            f'`{where}.type={cfg.get("type")!r}` builds a '
            f'{type(module).__name__}, which is not a {interface.__name__}: '
            f'that needs {members} (see mmscalekd.models.interfaces). Use '
            f"e.g. type='{example}', or give yours those members.")
    return module
