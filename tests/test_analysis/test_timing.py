"""Timing helpers: call order, counts and summaries (never speeds)."""
import statistics

import pytest

from mmscalekd.analysis.timing import (summarize_times, time_calls,
                                       time_interleaved)


def test_time_calls_warms_up_then_times_each_call():
    calls = []
    times = time_calls(lambda: calls.append(1), warmup=2, iters=3,
                       device='cpu')
    assert len(calls) == 5 and len(times) == 3
    assert all(t >= 0 for t in times)


def test_interleaved_order_alternates_after_one_untimed_round():
    calls = []
    times = time_interleaved({'A': lambda: calls.append('A'),
                              'B': lambda: calls.append('B')},
                             rounds=3, device='cpu')
    assert calls == ['A', 'B', 'A', 'B', 'B', 'A', 'A', 'B']
    assert [len(t) for t in times.values()] == [3, 3]


def test_summary_quartiles_and_extremes():
    times = [0.5, 0.1, 0.4, 0.2, 0.3]
    summary = summarize_times(times)
    assert summary['median'] == 0.3
    assert (summary['q1'], summary['q3']) == pytest.approx((0.2, 0.4))
    assert (summary['min'], summary['max']) == (0.1, 0.5)
    assert summary['all'] == times  # in the order measured
    one = summarize_times([0.7])
    assert one['q1'] == one['q3'] == one['median'] == 0.7
    assert statistics.median(times) == summary['median']
