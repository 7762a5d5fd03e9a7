"""Evaluation metrics: word error rate, perplexity, cosine similarity,
bootstrap confidence intervals and spoken-QA answer matching.

Pure Python and NumPy; nothing here loads a model. The components that turn
audio into text, embeddings or scores live in
:mod:`spectron_kit.evaluation.components`.

Aggregation conventions (see ``docs/SPECTRON.md`` section 5):

* WER is a *corpus* ratio: the summed word edits of all utterances divided by
  the summed number of reference words (:func:`wer`). Its confidence interval
  resamples utterances and recomputes that ratio (:func:`bootstrap_ratio_ci`).
* Perplexity comes in two flavours. The *corpus* value pools all tokens,
  ``exp(sum nll / sum tokens)``; the *utterance* value averages per-utterance
  values, ``mean_i exp(nll_i / n_i)``. Both are returned by
  :func:`summarize_lm_scores`; pass ``level=`` to :func:`perplexity` and
  :func:`log_perplexity` to pick one.
"""
import math
import re
import unicodedata

import numpy as np

from spectron_kit.text import _is_punct_or_symbol, normalize_text  # noqa: F401 (re-exported)

__all__ = [
    "normalize_text",
    "spell_out_numbers",
    "word_errors",
    "word_error_counts",
    "wer",
    "log_perplexity",
    "perplexity",
    "summarize_lm_scores",
    "cosine_similarity",
    "t_interval",
    "bootstrap_ci",
    "bootstrap_ratio_ci",
    "wer_ci",
    "normalize_answer",
    "answer_is_correct",
    "qa_accuracy",
]

# ---------------------------------------------------------------------------
# text normalisation: one normaliser for manifests, scoring and answers (spectron_kit.text)


def _words(x, normalize):
    if isinstance(x, str):
        return (normalize_text(x) if normalize else x).split()
    return [str(w) for w in x]


# ---------------------------------------------------------------------------
# word error rate


def word_error_counts(ref, hyp, normalize=True):
    """Align two word sequences and count edits (Levenshtein over words, SpeechBrain's edit distance).

    Substitutions, deletions and insertions each cost one
    (``speechbrain.utils.edit_distance.op_table`` / ``count_ops``; jiwer is the
    independent reference in the tests).

    Arguments:
        ref: reference, a string or a list of words.
        hyp: hypothesis, a string or a list of words.
        normalize: apply :func:`normalize_text` to string inputs first.

    Returns:
        dict with ``substitutions``, ``deletions``, ``insertions``, ``hits``,
        ``edits`` (the sum of the three error types) and ``n_ref`` (reference
        word count).

    Example:
        >>> c = word_error_counts("the cat sat", "the bat sat down")
        >>> c["substitutions"], c["deletions"], c["insertions"], c["edits"]
        (1, 0, 1, 2)
    """
    from speechbrain.utils.edit_distance import count_ops, op_table

    r, h = _words(ref, normalize), _words(hyp, normalize)
    ops = count_ops(op_table(r, h))
    subs, dels, ins = ops["substitutions"], ops["deletions"], ops["insertions"]
    return {"substitutions": subs, "deletions": dels, "insertions": ins, "hits": len(r) - subs - dels,
            "edits": subs + dels + ins, "n_ref": len(r)}


def word_errors(ref, hyp, normalize=True):
    """Word-level edit distance between ``ref`` and ``hyp``.

    Arguments:
        ref: reference, a string or a list of words.
        hyp: hypothesis, a string or a list of words.
        normalize: apply :func:`normalize_text` to string inputs first.

    Returns:
        ``(edits, n_ref_words)``: the minimum number of word substitutions,
        deletions and insertions turning ``ref`` into ``hyp``, and the
        number of reference words.

    Example:
        >>> word_errors("The cat sat on the mat.", "the cat sit on mat")
        (2, 6)
        >>> word_errors("", "uh")
        (1, 0)
    """
    c = word_error_counts(ref, hyp, normalize=normalize)
    return c["edits"], c["n_ref"]


def wer(refs, hyps, normalize=True):
    """Corpus word error rate: summed edits over summed reference words.

    Arguments:
        refs: reference strings (or one string).
        hyps: hypothesis strings, same count as ``refs`` (or one string).
        normalize: apply :func:`normalize_text` to both sides first.

    Returns:
        float WER (may exceed 1 when there are many insertions).

    Raises:
        ValueError: different numbers of references and hypotheses, or no
            reference words at all.

    Example:
        >>> wer(["a b c d", "e f"], ["a x c d", "e f g"])
        0.3333333333333333
    """
    if isinstance(refs, str):
        refs = [refs]
    if isinstance(hyps, str):
        hyps = [hyps]
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"wer: {len(refs)} references but {len(hyps)} hypotheses")
    edits = n_ref = 0
    for r, h in zip(refs, hyps):
        e, n = word_errors(r, h, normalize=normalize)
        edits += e
        n_ref += n
    if n_ref == 0:
        raise ValueError("wer: the references contain no words")
    return edits / n_ref


# ---------------------------------------------------------------------------
# perplexity


def _nll_arrays(nll_sum, n_tokens):
    nll = np.atleast_1d(np.asarray(nll_sum, dtype=np.float64))
    n = np.atleast_1d(np.asarray(n_tokens, dtype=np.float64))
    if nll.shape != n.shape:
        raise ValueError(f"nll_sum has shape {nll.shape} but n_tokens has shape {n.shape}")
    if nll.size == 0:
        raise ValueError("no scores given")
    if np.any(n <= 0):
        raise ValueError("every text must have at least one scored token (n_tokens > 0)")
    return nll, n


def log_perplexity(nll_sum, n_tokens, level="corpus"):
    """Mean negative log-likelihood per token (natural log).

    Arguments:
        nll_sum: summed NLL of one text, or a sequence of per-text sums.
        n_tokens: number of scored tokens, matching ``nll_sum``.
        level: ``"corpus"`` pools all tokens, ``sum(nll) / sum(n)``;
            ``"utterance"`` averages per-text values, ``mean(nll_i / n_i)``.
            They agree for a single text.

    Returns:
        float log-perplexity (nats per token).

    Example:
        >>> log_perplexity([2.0, 6.0], [1, 3])
        2.0
        >>> log_perplexity([1.0, 6.0], [1, 3], level="utterance")
        1.5
    """
    nll, n = _nll_arrays(nll_sum, n_tokens)
    if level == "corpus":
        return float(nll.sum() / n.sum())
    if level == "utterance":
        return float(np.mean(nll / n))
    raise ValueError(f"level must be 'corpus' or 'utterance', not {level!r}")


def perplexity(nll_sum, n_tokens, level="corpus"):
    """Perplexity, ``exp`` of the per-token NLL.

    Arguments:
        nll_sum: summed NLL of one text, or a sequence of per-text sums.
        n_tokens: number of scored tokens, matching ``nll_sum``.
        level: ``"corpus"``: ``exp(sum(nll) / sum(n))``; ``"utterance"``:
            ``mean_i exp(nll_i / n_i)`` (the mean of per-text perplexities,
            which is never below the corpus value for equal lengths and is
            dominated by the worst texts).

    Returns:
        float perplexity.

    Example:
        >>> round(perplexity(3 * math.log(10), 3), 6)  # uniform over 10 words
        10.0
        >>> round(perplexity([math.log(2), math.log(8)], [1, 1], level="utterance"), 6)
        5.0
    """
    nll, n = _nll_arrays(nll_sum, n_tokens)
    if level == "corpus":
        return float(math.exp(nll.sum() / n.sum()))
    if level == "utterance":
        return float(np.mean(np.exp(nll / n)))
    raise ValueError(f"level must be 'corpus' or 'utterance', not {level!r}")


def summarize_lm_scores(scores):
    """Summarise the output of an ``lm_scorer`` (``[{"nll", "n_tokens"}]``).

    Arguments:
        scores: list of dicts with ``nll`` (summed, natural log) and
            ``n_tokens``.

    Returns:
        dict with ``log_perplexity`` and ``perplexity`` (corpus level),
        ``mean_log_perplexity`` and ``mean_perplexity`` (utterance level),
        ``n_texts`` and ``n_tokens``.

    Example:
        >>> s = summarize_lm_scores([{"nll": 2.0, "n_tokens": 1}, {"nll": 6.0, "n_tokens": 3}])
        >>> s["log_perplexity"], s["mean_log_perplexity"], s["n_tokens"]
        (2.0, 2.0, 4)
    """
    nll = [float(s["nll"]) for s in scores]
    n = [int(s["n_tokens"]) for s in scores]
    return {
        "log_perplexity": log_perplexity(nll, n),
        "perplexity": perplexity(nll, n),
        "mean_log_perplexity": log_perplexity(nll, n, level="utterance"),
        "mean_perplexity": perplexity(nll, n, level="utterance"),
        "n_texts": len(n),
        "n_tokens": int(sum(n)),
    }


# ---------------------------------------------------------------------------
# cosine similarity


def cosine_similarity(a, b, eps=1e-12):
    """Row-wise cosine similarity.

    Arguments:
        a: array ``[N, D]`` or a single vector ``[D]``.
        b: array of the same shape as ``a`` (or broadcastable to it, e.g. one
            vector ``[D]`` compared with every row of ``a``).
        eps: a zero vector gets similarity 0 instead of NaN.

    Returns:
        ``np.ndarray [N]`` of similarities in [-1, 1], or a float when both
        inputs are single vectors.

    Example:
        >>> round(cosine_similarity([1.0, 0.0], [1.0, 1.0]), 4)
        0.7071
        >>> cosine_similarity([[1, 0], [0, 2]], [[3, 0], [0, -1]])
        array([ 1., -1.])
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dot = np.sum(a * b, axis=-1)
    norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    out = np.where(norm > eps, dot / np.maximum(norm, eps), 0.0)
    out = np.clip(out, -1.0, 1.0)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------
# bootstrap


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


def wer_ci(refs, hyps, normalize=True, **kwargs):
    """Corpus WER with a bootstrap interval over utterances.

    Arguments:
        refs: reference strings.
        hyps: hypothesis strings.
        normalize: apply :func:`normalize_text` first.
        **kwargs: ``n_resamples``, ``confidence``, ``seed`` of
            :func:`bootstrap_ratio_ci`.

    Returns:
        ``(wer, low, high)`` over the utterances with reference words (an empty
        reference has no WER: it is left out, as everywhere in the toolkit).

    Example:
        >>> wer_ci(["a b", "c d"], ["a b", "c x"])[0]
        0.25
    """
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"wer_ci: {len(refs)} references but {len(hyps)} hypotheses")
    counts = [c for c in (word_errors(r, h, normalize=normalize) for r, h in zip(refs, hyps)) if c[1] > 0]
    if not counts:
        raise ValueError("wer_ci: every reference is empty; a WER needs reference words")
    return bootstrap_ratio_ci([c[0] for c in counts], [c[1] for c in counts], **kwargs)


# ---------------------------------------------------------------------------
# spoken QA answer matching

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"thousand": 10 ** 3, "million": 10 ** 6, "billion": 10 ** 9, "trillion": 10 ** 12}
_ORD_UNITS = {w: i for i, w in enumerate(
    "zeroth first second third fourth fifth sixth seventh eighth ninth tenth eleventh "
    "twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
    "nineteenth".split())}
_ORD_TENS = {w: 10 * i for i, w in enumerate(
    "twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth".split(),
    start=2)}
_ORD_SCALES = {"hundredth": 100, "thousandth": 10 ** 3, "millionth": 10 ** 6,
               "billionth": 10 ** 9}
_ARTICLES = {"a", "an", "the"}


def _number_words(n):
    """English words of a non-negative integer (``21`` -> ``twenty one``)."""
    units = list(_UNITS)
    tens = {v: w for w, v in _TENS.items()}
    if n < 20:
        return units[n]
    if n < 100:
        return tens[n - n % 10] + ("" if n % 10 == 0 else " " + units[n % 10])
    if n < 1000:
        rest = n % 100
        return units[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))
    for word, scale in sorted(_SCALES.items(), key=lambda kv: -kv[1]):
        if n >= scale:
            rest = n % scale
            return _number_words(n // scale) + " " + word + ("" if rest == 0 else " " + _number_words(rest))
    raise AssertionError(n)


_DIGITS = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(st|nd|rd|th)?(?![\w.]\w)")


def spell_out_numbers(text):
    """Write integers and ordinals given as digits in words, as LibriSpeech transcripts do.

    ASR systems such as Whisper write "4" or "21st" where the reference
    transcript has "four" or "twenty first"; WER should not count that as an
    error. Integers up to 10^15 with optional thousands separators are
    spelled out; other digit strings (decimals, codes) are left alone.

    Arguments:
        text: any string.

    Returns:
        the string with those numbers in words.

    Example:
        >>> spell_out_numbers("Count 3, 4 and 1,205 on the 21st.")
        'Count three, four and one thousand two hundred five on the twenty first.'
    """
    ordinal_of = {w: o for w, o in zip(list(_UNITS) + list(_TENS), list(_ORD_UNITS) + list(_ORD_TENS))}

    def words(match):
        n = int(match.group(1).replace(",", ""))
        if n >= 10 ** 15:
            return match.group(0)
        spelled = _number_words(n)
        if match.group(2):
            head, _, last = spelled.rpartition(" ")
            last = ordinal_of.get(last, last + "th")
            spelled = (head + " " + last).strip()
        return spelled

    return _DIGITS.sub(words, str(text))


def _ordinal_suffix(n):
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


class _NumberParser:
    """Turns a run of English number words into digit strings.

    A run follows the usual grammar (``three hundred and twenty one``,
    ``two thousand nine``). Where the grammar breaks, a new number starts
    (``one two`` -> ``1 2``), except for years read in pairs: a two-digit
    number followed by a two-digit number, or by ``oh`` and a digit, is
    joined (``nineteen ninety nine`` -> ``1999``, ``nineteen oh five`` ->
    ``1905``).
    """

    def __init__(self, ordinals):
        self.ordinals = ordinals

    def kind(self, w):
        if w in _UNITS:
            return "unit" if _UNITS[w] < 10 else "teen"
        if w in _TENS:
            return "tens"
        if w == "hundred":
            return "hundred"
        if w in _SCALES:
            return "scale"
        if self.ordinals and (w in _ORD_UNITS or w in _ORD_TENS or w in _ORD_SCALES):
            return "ordinal"
        return None

    def convert(self, tokens):
        out = []
        i, n = 0, len(tokens)
        while i < n:
            if self.kind(tokens[i]) is None:
                out.append(tokens[i])
                i += 1
                continue
            numbers, i = self._run(tokens, i)
            out.extend(self._join_years(numbers))
        return out

    def _run(self, tokens, i):
        """Parse number words from ``tokens[i]``; returns ([(value, kind, ordinal)], next i)."""
        numbers = []
        total = current = 0
        last = None  # kind of the previous word in the current number
        has_value = False

        def flush():
            nonlocal total, current, last, has_value
            if has_value:
                numbers.append([total + current, last, False])
            total = current = 0
            last = None
            has_value = False

        n = len(tokens)
        while i < n:
            w = tokens[i]
            k = self.kind(w)
            if k is None:
                # "and" inside a number: "one hundred and five"
                if (w == "and" and last in ("hundred", "scale") and i + 1 < n
                        and self.kind(tokens[i + 1]) in ("unit", "teen", "tens", "ordinal")):
                    i += 1
                    continue
                # "oh" between a two-digit number and a digit: "nineteen oh five"
                if (w == "oh" and has_value and last in ("teen", "tens", "tens_unit")
                        and i + 1 < n and self.kind(tokens[i + 1]) == "unit"):
                    flush()
                    numbers.append([0, "oh", False])
                    i += 1
                    continue
                break
            if k == "ordinal":
                if w in _ORD_UNITS:
                    v = _ORD_UNITS[w]
                    fits = (None, "tens", "hundred", "scale") if v < 10 else (None, "hundred", "scale")
                    if last not in fits:
                        flush()
                    current += v
                elif w in _ORD_TENS:
                    if last not in (None, "hundred", "scale"):
                        flush()
                    current += _ORD_TENS[w]
                else:  # hundredth, thousandth, ...
                    scale = _ORD_SCALES[w]
                    if not has_value:
                        current = 1
                    if scale == 100:
                        current *= 100
                    else:
                        total, current = total + current * scale, 0
                has_value = True
                last = "ordinal"
                numbers.append([total + current, last, True])
                total = current = 0
                last = None
                has_value = False
                i += 1
                break
            if k == "unit":
                if last not in (None, "tens", "hundred", "scale"):
                    flush()
                current += _UNITS[w]
                last = "tens_unit" if last == "tens" else "unit"
            elif k == "teen":
                if last not in (None, "hundred", "scale"):
                    flush()
                current += _UNITS[w]
                last = "teen"
            elif k == "tens":
                if last not in (None, "hundred", "scale"):
                    flush()
                current += _TENS[w]
                last = "tens"
            elif k == "hundred":
                if last == "hundred" or (last == "scale" and current == 0 and has_value):
                    flush()
                current = (current or 1) * 100
                last = "hundred"
            else:  # thousand, million, ...
                scale = _SCALES[w]
                if last == "scale" and current == 0 and has_value:
                    flush()
                total += (current or 1) * scale
                current = 0
                last = "scale"
            has_value = True
            i += 1
        flush()
        return numbers, i

    @staticmethod
    def _join_years(numbers):
        out = []
        j = 0
        while j < len(numbers):
            value, kind, ordinal = numbers[j]
            nxt = numbers[j + 1] if j + 1 < len(numbers) else None
            two_digit = 10 <= value <= 99 and not ordinal
            if two_digit and nxt is not None and nxt[1] == "oh" and j + 2 < len(numbers):
                unit = numbers[j + 2]
                if unit[0] < 10:
                    joined = value * 100 + unit[0]
                    out.append(f"{joined}{_ordinal_suffix(joined) if unit[2] else ''}")
                    j += 3
                    continue
            if two_digit and nxt is not None and 10 <= nxt[0] <= 99 and nxt[1] != "oh":
                joined = value * 100 + nxt[0]
                out.append(f"{joined}{_ordinal_suffix(joined) if nxt[2] else ''}")
                j += 2
                continue
            if kind == "oh":
                out.append("oh")
            else:
                out.append(f"{value}{_ordinal_suffix(value) if ordinal else ''}")
            j += 1
        return out


_DIGIT_SCALE = re.compile(r"\b(\d+(?:\.\d+)?) (hundred|thousand|million|billion|trillion)\b")


def _scale_digits(match):
    """``3.5 million`` -> ``3500000`` (digits followed by a scale word)."""
    scale = 100 if match.group(2) == "hundred" else _SCALES[match.group(2)]
    value = float(match.group(1)) * scale
    return str(int(round(value))) if abs(value - round(value)) < 1e-6 else repr(value)


def _join_decimals(tokens):
    """``3 point 1 4`` -> ``3.14`` (a number, ``point``, then single digits)."""
    out = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if (t.isdigit() and i + 2 < len(tokens) and tokens[i + 1] == "point"
                and len(tokens[i + 2]) == 1 and tokens[i + 2].isdigit()):
            j = i + 2
            digits = []
            while j < len(tokens) and len(tokens[j]) == 1 and tokens[j].isdigit():
                digits.append(tokens[j])
                j += 1
            out.append(f"{t}.{''.join(digits)}")
            i = j
        else:
            out.append(t)
            i += 1
    return out


def normalize_answer(s, remove_articles=True, ordinals=True):
    """Normalise a QA answer or model output for matching.

    Steps: Unicode NFKD with accents dropped (``Beyoncé`` -> ``beyonce``),
    lower case; thousands separators removed (``1,000`` -> ``1000``) and
    decimal points between digits kept; every other punctuation mark,
    symbol and apostrophe becomes a space (so ``Ireland's`` gives the
    words ``ireland s``, ``twenty-one`` gives ``twenty one``); number words
    become digits (``twenty one`` -> ``21``, ``one hundred and five`` ->
    ``105``, ``nineteen ninety nine`` -> ``1999``, ``three point five`` ->
    ``3.5``, ``2 million`` -> ``2000000``); with ``ordinals``,
    ordinal words become digit ordinals (``twenty first`` -> ``21st``,
    matching a written ``21st``); finally the articles *a*, *an*, *the*
    are removed (decision: ``the Beatles`` should match ``Beatles``), unless
    the text consists of articles only.

    Arguments:
        s: the string to normalise.
        remove_articles: drop ``a``, ``an``, ``the``.
        ordinals: convert ordinal words (``first`` -> ``1st``).

    Returns:
        The normalised string (space-separated tokens).

    Example:
        >>> normalize_answer("The Twenty-One Pilots")
        '21 pilots'
        >>> normalize_answer("It was in nineteen ninety-nine, on the first of May.")
        'it was in 1999 on 1st of may'
        >>> normalize_answer("1,000 dollars") == normalize_answer("one thousand dollars")
        True
    """
    s = unicodedata.normalize("NFKD", str(s))
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = re.sub(r"(?<=\d)\.(?=\d)", "\u0000", s)  # protect decimal points
    s = "".join(" " if (_is_punct_or_symbol(ch) or ch == "'") else ch for ch in s)
    s = s.replace("\u0000", ".")
    s = _DIGIT_SCALE.sub(_scale_digits, s)
    tokens = _join_decimals(_NumberParser(ordinals).convert(s.split()))
    if remove_articles:
        kept = [t for t in tokens if t not in _ARTICLES]
        tokens = kept or tokens
    return " ".join(tokens)


def _contains_words(haystack, needle):
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def answer_is_correct(prediction, gold_answers, remove_articles=True, ordinals=True):
    """Whether a gold answer occurs in the prediction (SPECTRON.md section 5).

    Both sides are normalised with :func:`normalize_answer`; the answer is
    correct when the words of any gold answer occur as a contiguous run of
    whole words in the prediction (``"paris"`` is found in ``"it is in
    paris"`` but not in ``"parisian"``).

    Arguments:
        prediction: the model's answer (text output or ASR transcript).
        gold_answers: one gold answer string or a list of them; answers that
            normalise to nothing are ignored.
        remove_articles: passed to :func:`normalize_answer`.
        ordinals: passed to :func:`normalize_answer`.

    Returns:
        bool.

    Example:
        >>> answer_is_correct("I think it is twenty-one years.", ["21"])
        True
        >>> answer_is_correct("The capital is Parisian.", ["Paris"])
        False
        >>> answer_is_correct("He played for The Lakers", ["Los Angeles Lakers", "Lakers"])
        True
    """
    if isinstance(gold_answers, str):
        gold_answers = [gold_answers]
    pred = normalize_answer(prediction, remove_articles, ordinals).split()
    for gold in gold_answers:
        g = normalize_answer(gold, remove_articles, ordinals).split()
        if g and _contains_words(pred, g):
            return True
    return False


def qa_accuracy(predictions, gold_answers, **kwargs):
    """Spoken-QA accuracy with a bootstrap interval over questions.

    Arguments:
        predictions: one answer string per question.
        gold_answers: per question, a gold string or a list of gold strings.
        **kwargs: ``n_resamples``, ``confidence``, ``seed`` of
            :func:`bootstrap_ci`.

    Returns:
        ``(accuracy, low, high)`` as fractions in [0, 1].

    Example:
        >>> qa_accuracy(["paris", "no idea"], [["Paris"], ["42"]])[0]
        0.5
    """
    predictions, gold_answers = list(predictions), list(gold_answers)
    if len(predictions) != len(gold_answers):
        raise ValueError(f"{len(predictions)} predictions but {len(gold_answers)} gold entries")
    correct = [float(answer_is_correct(p, g)) for p, g in zip(predictions, gold_answers)]
    return bootstrap_ci(correct, **kwargs)
