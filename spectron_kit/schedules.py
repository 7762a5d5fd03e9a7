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
