"""Evaluation metrics: word error rate, perplexity, cosine similarity; the intervals
(:mod:`spectron_kit.evaluation.stats`) and spoken-QA answer matching
(:mod:`spectron_kit.evaluation.answers`) are re-exported here.

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

import numpy as np

from spectron_kit.evaluation.answers import (answer_is_correct, normalize_answer, qa_accuracy,  # noqa: F401
                                             spell_out_numbers)
from spectron_kit.evaluation.stats import bootstrap_ci, bootstrap_ratio_ci, t_interval  # noqa: F401
from spectron_kit.text import normalize_text  # noqa: F401 (re-exported)

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
# the corpus WER's interval

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
