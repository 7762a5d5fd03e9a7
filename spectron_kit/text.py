"""Text normalisation: the one normaliser of transcripts, model text and answers.

Manifests (``recipes/LibriLight/librilight_prepare.py``), WER and answer
scoring (:mod:`spectron_kit.evaluation.metrics`) all use :func:`normalize_text`,
so a transcript compares equal wherever it was read.
"""
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def _is_punct_or_symbol(ch):
    return unicodedata.category(ch)[0] in "PS"


def _strip_punctuation(s, keep_inner_apostrophes):
    out = []
    n = len(s)
    for i, ch in enumerate(s):
        if ch == "'" and keep_inner_apostrophes:
            inner = 0 < i < n - 1 and s[i - 1].isalnum() and s[i + 1].isalnum()
            out.append("'" if inner else " ")
        elif _is_punct_or_symbol(ch):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def normalize_text(s):
    """Lower-case ``s``, replace punctuation by spaces and collapse whitespace.

    Apostrophes inside words are kept (``don't``, ``o'clock``); every other
    punctuation mark or symbol, including hyphens and apostrophes at word
    edges, becomes a space. Curly apostrophes count as ``'``.

    Arguments:
        s: any string.

    Returns:
        The normalised string: lower-case words separated by single spaces.

    Example:
        >>> normalize_text("  Hello, World!  It's a 'test' -- twenty-one. ")
        "hello world it's a test twenty one"
    """
    s = unicodedata.normalize("NFKC", str(s)).translate(_APOSTROPHES).lower()
    return " ".join(_strip_punctuation(s, keep_inner_apostrophes=True).split())
