"""Evaluation metrics against hand-computed cases."""
import math

import numpy as np
import pytest

from spectron_kit.evaluation import metrics as M


# -- text normalisation / WER ------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", "hello world"),
    ("  don't   STOP  ", "don't stop"),
    ("'quoted' words", "quoted words"),
    ("rock-and-roll", "rock and roll"),
    ("it\u2019s fine.", "it's fine"),
    ("", ""),
    ("...", ""),
])
def test_normalize_text(text, expected):
    assert M.normalize_text(text) == expected


@pytest.mark.parametrize("ref, hyp, edits, n", [
    ("a b c", "a b c", 0, 3),
    ("a b c", "a x c", 1, 3),          # 1 substitution
    ("a b c", "a c", 1, 3),            # 1 deletion
    ("a b c", "a b c d", 1, 3),        # 1 insertion
    ("a b c", "", 3, 3),
    ("", "a b", 2, 0),
    ("the cat sat on the mat", "cat sat on a mat", 2, 6),  # del "the", sub the->a
    ("kitten sitting", "sitting kitten", 2, 2),
    ("A, B. C!", "a b c", 0, 3),       # normalisation
])
def test_word_errors(ref, hyp, edits, n):
    assert M.word_errors(ref, hyp) == (edits, n)


def test_word_error_counts_split():
    c = M.word_error_counts("a b c d e", "a x c e")
    # a=a, b->x (S), c=c, d deleted (D), e=e
    assert (c["hits"], c["substitutions"], c["deletions"], c["insertions"]) == (3, 1, 1, 0)
    assert c["edits"] == 2 and c["n_ref"] == 5
    c = M.word_error_counts("a b", "a b c d")
    assert (c["hits"], c["substitutions"], c["deletions"], c["insertions"]) == (2, 0, 0, 2)
    # ties between alignments of equal cost: the split may vary, the total may not
    c = M.word_error_counts("a b c d e", "a x c e f g")
    assert c["edits"] == 4
    assert c["hits"] + c["substitutions"] + c["deletions"] == 5
    assert c["hits"] + c["substitutions"] + c["insertions"] == 6


def test_word_errors_accepts_word_lists():
    assert M.word_errors(["A", "b"], ["a", "b"], normalize=False) == (1, 2)


def test_wer_is_corpus_ratio():
    refs = ["a b c d", "e f"]
    hyps = ["a x c d", "e f g"]
    assert M.wer(refs, hyps) == pytest.approx(2 / 6)   # not mean(1/4, 1/2)
    assert M.wer("a b", "a b") == 0.0
    with pytest.raises(ValueError):
        M.wer(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        M.wer([""], ["x"])


def test_wer_matches_jiwer():
    jiwer = pytest.importorskip("jiwer")
    rng = np.random.default_rng(3)
    vocab = "a b c d e f".split()
    refs = [" ".join(rng.choice(vocab, rng.integers(1, 9))) for _ in range(40)]
    hyps = [" ".join(rng.choice(vocab, rng.integers(0, 9))) for _ in range(40)]
    hyps[0] = ""  # jiwer handles an empty hypothesis
    assert M.wer(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps))


# -- perplexity ---------------------------------------------------------------

def test_perplexity_of_uniform_distribution():
    V, n = 50, 7
    nll = n * math.log(V)                       # every token has p = 1/V
    assert M.log_perplexity(nll, n) == pytest.approx(math.log(V))
    assert M.perplexity(nll, n) == pytest.approx(V)


def test_perplexity_corpus_vs_utterance():
    nll, n = [math.log(2) * 1, math.log(8) * 3], [1, 3]
    # corpus: (log2 + 3 log8) / 4 = 10 log2 / 4
    assert M.log_perplexity(nll, n) == pytest.approx(2.5 * math.log(2))
    assert M.perplexity(nll, n) == pytest.approx(2 ** 2.5)
    # utterance: mean(log2, log8) and mean(2, 8)
    assert M.log_perplexity(nll, n, level="utterance") == pytest.approx(2 * math.log(2))
    assert M.perplexity(nll, n, level="utterance") == pytest.approx(5.0)
    s = M.summarize_lm_scores([{"nll": a, "n_tokens": b} for a, b in zip(nll, n)])
    assert s["perplexity"] == pytest.approx(2 ** 2.5)
    assert s["mean_perplexity"] == pytest.approx(5.0)
    assert s["n_tokens"] == 4 and s["n_texts"] == 2
    with pytest.raises(ValueError):
        M.perplexity([1.0], [0])
    with pytest.raises(ValueError):
        M.perplexity(1.0, 1, level="mean")


# -- cosine -------------------------------------------------------------------

def test_cosine_similarity_known_vectors():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0], [0.0, 0.0]])
    b = np.array([[0.0, 5.0], [2.0, 2.0], [-3.0, -4.0], [1.0, 0.0]])
    np.testing.assert_allclose(M.cosine_similarity(a, b), [0.0, 1.0, -1.0, 0.0], atol=1e-12)
    assert M.cosine_similarity([1, 2, 2], [2, 0, 0]) == pytest.approx(1 / 3)
    # one vector against many rows
    np.testing.assert_allclose(M.cosine_similarity(a[:3], [1.0, 0.0]), [1.0, 1 / math.sqrt(2), 0.6])


# -- bootstrap ----------------------------------------------------------------

def test_bootstrap_ci_contains_mean_and_shrinks():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 2000):
        x = rng.normal(3.0, 1.0, size=n)
        est, lo, hi = M.bootstrap_ci(x, n_resamples=500)
        assert est == pytest.approx(x.mean())
        assert lo < est < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 4      # width ~ 1/sqrt(n): ratio 10
    # the 95% interval of the mean is about +-1.96 sd/sqrt(n)
    assert widths[1] == pytest.approx(2 * 1.96 / math.sqrt(2000), rel=0.2)


def test_bootstrap_ci_reproducible_and_custom_stat():
    x = np.arange(30.0)
    assert M.bootstrap_ci(x, seed=1) == M.bootstrap_ci(x, seed=1)
    est, lo, hi = M.bootstrap_ci(x, stat=lambda v: np.percentile(v, 90), n_resamples=200)
    assert est == pytest.approx(np.percentile(x, 90)) and lo <= est <= hi
    est, lo, hi = M.bootstrap_ci(x, confidence=0.5)
    _, lo95, hi95 = M.bootstrap_ci(x, confidence=0.95)
    assert lo95 <= lo <= hi <= hi95
    with pytest.raises(ValueError):
        M.bootstrap_ci([])


def test_bootstrap_ratio_ci_is_ratio_of_sums():
    edits, words = [1, 0, 4, 1, 2, 0], [10, 3, 5, 8, 4, 6]
    est, lo, hi = M.bootstrap_ratio_ci(edits, words, n_resamples=500)
    assert est == pytest.approx(8 / 36)
    assert 0 <= lo < est < hi
    est2, lo2, hi2 = M.wer_ci(["a b c", "d e"], ["a b x", "d e"])
    assert est2 == pytest.approx(1 / 5) and lo2 <= est2 <= hi2
    with pytest.raises(ValueError):
        M.bootstrap_ratio_ci([1], [0])


# -- QA answer matching ----------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Twenty one", "21"),
    ("twenty-one", "21"),
    ("21", "21"),
    ("The Beatles!", "beatles"),
    ("one hundred and five", "105"),
    ("two thousand nine", "2009"),
    ("nineteen ninety-nine", "1999"),
    ("nineteen oh five", "1905"),
    ("1,000,000", "1000000"),
    ("one million", "1000000"),
    ("three point five", "3.5"),
    ("3.5", "3.5"),
    ("first", "1st"),
    ("the twenty first century", "21st century"),
    ("one two three", "1 2 3"),
    ("rock and roll", "rock and roll"),
    ("Beyoncé", "beyonce"),
    ("a", "a"),                            # articles only: kept
])
def test_normalize_answer(text, expected):
    assert M.normalize_answer(text) == expected


def test_normalize_answer_options():
    assert M.normalize_answer("the first one", ordinals=False) == "first 1"
    assert M.normalize_answer("The Who", remove_articles=False) == "the who"


@pytest.mark.parametrize("prediction, gold, correct", [
    ("I think the answer is twenty-one.", ["21"], True),
    ("It has 21 stories", "twenty one", True),
    ("The capital of France is Paris.", ["Paris"], True),
    ("Parisian food is great", ["Paris"], False),        # whole words only
    ("He played for the Lakers", ["Los Angeles Lakers", "Lakers"], True),
    ("He played for the Lakers", ["Los Angeles Lakers"], False),
    ("It was in nineteen sixty nine", ["1969"], True),
    ("She came first", ["1st"], True),
    ("two hundred and twelve", ["212"], True),
    ("one hundred", ["100", ""], True),
    ("no idea", ["", "   "], False),
    ("twenty", ["21"], False),
    ("Ireland's capital is Dublin", ["Ireland"], True),
    ("the answer is one", ["1"], True),
])
def test_answer_is_correct(prediction, gold, correct):
    assert M.answer_is_correct(prediction, gold) is correct


def test_qa_accuracy_with_interval():
    preds = ["paris", "it is 42", "no idea", "london"]
    golds = [["Paris"], ["forty-two"], ["7"], ["Rome"]]
    acc, lo, hi = M.qa_accuracy(preds, golds, n_resamples=300)
    assert acc == 0.5 and 0.0 <= lo <= acc <= hi <= 1.0
