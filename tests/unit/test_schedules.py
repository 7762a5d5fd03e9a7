"""The learning-rate schedules: by steps, and by training minutes (a time budget)."""
import math

import pytest

from spectron_kit.schedules import WarmupCosine, warmup_cosine


def test_step_schedule_warms_up_then_decays_to_a_tenth():
    values = [warmup_cosine(s, warmup=10, total=110) for s in range(120)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half way: 0.55
    assert values[110] == pytest.approx(0.1) and values[119] == pytest.approx(0.1)  # stays at the floor
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # never rises after the warm-up


def test_minute_schedule_follows_the_clock_not_the_step_count():
    now = {"minutes": 0.0}
    schedule = WarmupCosine(warmup=5).for_minutes(80, lambda: now["minutes"])
    assert schedule(0) == pytest.approx(0.2)  # warm-up is counted in steps
    for minutes, expected in ((0.0, 1.0), (40.0, 0.55), (80.0, 0.1), (95.0, 0.1)):
        now["minutes"] = minutes
        assert schedule(1000) == pytest.approx(expected)  # whatever the step, the time decides
    now["minutes"] = 20.0
    assert schedule(10) == pytest.approx(schedule(10_000))


def test_minute_schedule_refuses_a_missing_budget():
    with pytest.raises(ValueError, match="max_training_minutes > 0, got 0"):
        WarmupCosine().for_minutes(0, lambda: 0.0)
