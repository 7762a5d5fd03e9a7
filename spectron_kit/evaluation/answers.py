"""Spoken-QA answer matching: numbers spelt out and parsed back (digits, words, ordinals, scales), answer
normalisation, and whether a prediction contains a gold answer."""
import re
import unicodedata

from spectron_kit.evaluation.stats import bootstrap_ci
from spectron_kit.text import _is_punct_or_symbol

__all__ = ["spell_out_numbers", "normalize_answer", "answer_is_correct", "qa_accuracy"]

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
        # Long on purpose: one state machine over the words of a number (total, current, the kind of the last
        # word, whether a value started); every case reads and updates all four, so helpers would only pass
        # that state back and forth. Each case is one word kind; tests/unit/test_metrics.py covers each.
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
