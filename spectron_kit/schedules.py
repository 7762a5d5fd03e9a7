"""Learning-rate schedules (one module: the recipes' and the pre-training's).

Example:
    >>> [round(warmup_cosine(s, warmup=2, total=10), 3) for s in (0, 1, 2, 10)]
    [0.5, 1.0, 1.0, 0.1]
    >>> schedule = WarmupCosine(warmup=2)
    >>> round(schedule.for_total(10)(10), 3)
    0.1
"""
import math


def warmup_cosine(step, warmup, total):
    """LR multiplier: linear warm-up for ``warmup`` steps, then cosine decay to 10% at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine:
    """:func:`warmup_cosine` as a YAML object: ``!new:spectron_kit.schedules.WarmupCosine {warmup: 100}``.

    The recipe knows the run's total steps only once the data are loaded; it
    asks :meth:`for_total` for the multiplier function of ``LambdaLR``.
    """

    def __init__(self, warmup=100):
        self.warmup = int(warmup)

    def for_total(self, total):
        warmup = self.warmup
        return lambda step: warmup_cosine(step, warmup, max(1, int(total)))

    def for_minutes(self, limit, minutes):
        """The multiplier when the run's budget is time: warm-up by steps, then the cosine follows the
        training minutes (``minutes()``, e.g. ``TrainingClock.minutes``) and reaches 10% at ``limit``.

        Example:
            >>> clock = iter([0.0, 30.0, 60.0])
            >>> schedule = WarmupCosine(warmup=1).for_minutes(60, lambda: next(clock))
            >>> [round(schedule(s), 3) for s in (5, 6, 7)]
            [1.0, 0.55, 0.1]
        """
        warmup, limit = self.warmup, float(limit)
        if limit <= 0:
            raise ValueError(f"a time schedule needs max_training_minutes > 0, got {limit:g}")

        def multiplier(step):
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, minutes() / limit)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
        return multiplier
