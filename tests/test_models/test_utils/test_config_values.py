"""The shared checks of config values: what passes, what is refused (the
error's type and the key with its value as ``repr`` shows it)."""
import re

import pytest

from mmscalekd.models.utils import (check_choice, check_flag, check_integer,
                                    check_module_name, check_number,
                                    check_numbers, check_size)


def test_accepted_values_come_back_in_their_canonical_type():
    assert check_integer(3, 'k', minimum=1) == 3
    assert check_number(2, 'k', greater_than=0) == 2.0
    assert type(check_number(2, 'k')) is float
    assert check_numbers((1, 2.5), 'k') == [1.0, 2.5]
    assert check_size(7, 'k') == (7, 7)
    assert check_size([4, 6], 'k') == (4, 6)
    assert check_flag(False, 'k') is False
    assert check_choice('gemm', 'k', ('auto', 'gemm')) == 'gemm'
    assert check_module_name('backbone.layer3', 'k') == 'backbone.layer3'


@pytest.mark.parametrize('value,error,message', [
    ('2', TypeError, r"`k='2'`"),
    (2.0, TypeError, r'`k=2\.0`'),
    (True, TypeError, r'`k=True`'),
    (None, TypeError, r'`k=None`'),
    (0, ValueError, r'`k=0`'),
])
def test_integers(value, error, message):
    with pytest.raises(error, match=message):
        check_integer(value, 'k', minimum=1)


@pytest.mark.parametrize('value,bounds,error,message', [
    # a string is shown as the string it is, not as the number it reads as
    ('0.08', dict(at_least=0), TypeError, r"`k='0\.08'`"),
    (True, dict(at_least=0), TypeError, r'`k=True`'),
    (None, dict(at_least=0, at_most=1), TypeError, r'`k=None`'),
    (float('nan'), dict(at_least=0), ValueError, r'`k=nan`'),
    (float('inf'), dict(greater_than=0), ValueError, r'`k=inf`'),
    (0, dict(greater_than=0), ValueError, r'`k=0`'),
    (1.5, dict(at_least=0, at_most=1), ValueError, r'`k=1\.5`'),
])
def test_numbers(value, bounds, error, message):
    with pytest.raises(error, match=message):
        check_number(value, 'k', **bounds)


@pytest.mark.parametrize('values,error,message', [
    ('abc', TypeError, r"`k='abc'`"),
    ([], TypeError, r'`k=\[\]`'),
    ([1, '2'], TypeError, r"`k=\[1, '2'\]` .*'2'"),
    ([1, 0], ValueError, r'`k=\[1, 0\]` .*0'),
])
def test_lists_of_numbers(values, error, message):
    with pytest.raises(error, match=message):
        check_numbers(values, 'k', greater_than=0)


@pytest.mark.parametrize('value,error', [
    ('224', TypeError), (224.0, TypeError), ((224, 224.0), TypeError),
    (True, TypeError), (None, TypeError), (0, ValueError), (-1, ValueError),
    ((224, ), ValueError), ((224, 224, 3), ValueError), ((0, 4), ValueError),
])
def test_sizes(value, error):
    with pytest.raises(error, match=rf'`k={re.escape(repr(value))}`'):
        check_size(value, 'k')


@pytest.mark.parametrize('value', ['False', 0, 1, None])
def test_flags(value):
    with pytest.raises(TypeError, match=rf'`k={value!r}`'):
        check_flag(value, 'k')


def test_choices_and_module_names():
    with pytest.raises(ValueError, match=r"`k='cudnn'`"):
        check_choice('cudnn', 'k', ('auto', 'gemm'))
    with pytest.raises(ValueError, match=r"`k=None`"):
        check_choice(None, 'k', ('auto', 'gemm'))
    with pytest.raises(ValueError, match=r"`k=''`"):
        check_module_name('', 'k')
    with pytest.raises(TypeError, match=r"`k=\['backbone'\]`"):
        check_module_name(['backbone'], 'k')
