"""Confidence intervals: Student-t over values, and seeded percentile bootstraps of a statistic or of a
ratio of sums (the corpus WER's interval resamples utterances and recomputes the ratio)."""
import math

import numpy as np

__all__ = ["t_interval", "bootstrap_ci", "bootstrap_ratio_ci"]


def _alpha(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    return (1.0 - confidence) / 2.0


def t_interval(values, confidence=0.95, bounds=None):
    """Mean and Student-t interval of the mean: ``(mean, low, high)``.

    For a few values each from its own run (seeds). None and NaN values are left
    out; no value gives ``(None, None, None)``, one gives ``(v, v, v)``.
    ``bounds=(lo, hi)`` clips the interval (accuracies: ``(0, 1)``).

    Example:
        >>> [round(x, 3) for x in t_interval([1.0, 2.0, 3.0])]
        [2.0, -0.484, 4.484]
        >>> t_interval([0.1, 0.0, 0.2], bounds=(0.0, 1.0))[1]
        0.0
    """
    from scipy import stats

    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return (None, None, None)
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return (mean, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return (mean, low, high)


def _bootstrap(data, statistic, n_resamples, confidence, seed, vectorized=True, paired=False):
    """``scipy.stats.bootstrap`` (percentile method, seeded) -> ``(low, high)``."""
    from scipy import stats

    res = stats.bootstrap(data, statistic, n_resamples=int(n_resamples), confidence_level=confidence,
                          method="percentile", vectorized=vectorized, paired=paired,
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_ci(values, stat=np.mean, n_resamples=1000, confidence=0.95, seed=0):
    """Percentile bootstrap confidence interval of a statistic (``scipy.stats.bootstrap``).

    The items of ``values`` (e.g. per-utterance scores, or 0/1 correctness)
    are resampled with replacement ``n_resamples`` times; the interval is
    given by the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    percentiles of the resampled statistic. One value, or values that are
    all equal, give the value itself as both bounds (scipy needs two
    different observations).

    Arguments:
        values: 1-D sequence of numbers.
        stat: function of a 1-D array returning a number (default mean);
            NumPy reductions taking ``axis`` are evaluated on all resamples at once.
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval.
        seed: seed of the NumPy random generator (results are reproducible).

    Returns:
        ``(estimate, low, high)``: ``stat(values)`` and the interval bounds.

    Example:
        >>> est, lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0])
        >>> est, lo <= est <= hi
        (3.0, True)
        >>> bootstrap_ci([7.0, 7.0])
        (7.0, 7.0, 7.0)
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci: no values")
    _alpha(confidence)
    estimate = float(stat(x))
    if x.size < 2 or np.all(x == x[0]):
        return estimate, estimate, estimate
    vectorized = stat in (np.mean, np.nanmean, np.median, np.sum)
    low, high = _bootstrap((x,), stat, n_resamples, confidence, seed, vectorized=vectorized)
    return estimate, low, high


def _ratio_of_sums(num, den, axis=-1):
    return np.sum(num, axis=axis) / np.sum(den, axis=axis)


def bootstrap_ratio_ci(numerators, denominators, n_resamples=1000, confidence=0.95, seed=0):
    """Percentile bootstrap interval of a corpus ratio ``sum(num) / sum(den)`` (``scipy.stats.bootstrap``, paired).

    Use it for WER (edits / reference words) or corpus log-perplexity
    (NLL / tokens): whole items (utterances) are resampled and the ratio of
    sums is recomputed, which respects the corpus-level definition. Items
    with a zero denominator must be left out by the caller (a resample of
    only such items has no ratio).

    Arguments:
        numerators: per-item numerators (e.g. word edits).
        denominators: per-item denominators (e.g. reference word counts), > 0.
        n_resamples: number of bootstrap resamples.
        confidence: coverage of the interval.
        seed: seed of the NumPy random generator.

    Returns:
        ``(estimate, low, high)`` with ``estimate = sum(num) / sum(den)``.

    Example:
        >>> est, lo, hi = bootstrap_ratio_ci([1, 0, 2, 1], [4, 5, 3, 4])
        >>> est, lo <= est <= hi
        (0.25, True)
    """
    num = np.asarray(numerators, dtype=np.float64).ravel()
    den = np.asarray(denominators, dtype=np.float64).ravel()
    if num.shape != den.shape:
        raise ValueError(f"{num.size} numerators but {den.size} denominators")
    if num.size == 0:
        raise ValueError("bootstrap_ratio_ci: no values")
    if (den <= 0).any():
        raise ValueError(f"bootstrap_ratio_ci: {int((den <= 0).sum())} denominators are not positive; "
                         "leave out the items with nothing to count (e.g. no reference words)")
    _alpha(confidence)
    estimate = float(num.sum() / den.sum())
    ratios = num / den
    if num.size < 2 or np.all(ratios == ratios[0]):
        return estimate, estimate, estimate
    low, high = _bootstrap((num, den), _ratio_of_sums, n_resamples, confidence, seed, paired=True)
    return estimate, low, high
