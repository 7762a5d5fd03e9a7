"""Where each spectrogram frame sits in the transcript: targets for the guided-attention loss.

Spectron's decoder reads the transcript and then writes frames; to speak, its
frame positions must attend to the token being spoken. The guided-attention
loss (``spectron_kit.losses.guided_attention_loss``) pulls chosen attention heads
towards a *centre* per decoder frame step: the index (into the transcript
tokens y_1..y_n, 0-based) of the token spoken during that step.

Two sources of centres:

- word timings (``word_times`` manifest column, e.g. the espeak-ng mini
  corpus): the step's time falls in a word, whose tokens split its span
  evenly; in a pause the next word is the target. Exact, so ``sigma`` can be
  small (in tokens).
- no timings (pseudo-labelled Libri-Light): the DC-TTS diagonal prior. The
  step's time as a fraction of the utterance gives the same fraction of the
  tokens (constant speaking rate), with ``sigma = g * n_tokens``.

Example:
    >>> spans = [(0, 1), (1, 3)]          # word 0 is token 0, word 1 tokens 1-2
    >>> step_times(3, r=2, hop_seconds=0.1, start=1.0)
    [1.05, 1.25, 1.45]
    >>> token_centres([(0.0, 1.1), (1.2, 1.6)], spans, [1.05, 1.15, 1.3, 1.5, 1.7])
    [0.0, 1.0, 1.0, 2.0, 2.0]
    >>> diagonal_centres(10, 4.0, [1.0, 2.0, 3.9])
    [2.0, 4.5, 9.0]
"""
import bisect

__all__ = ["token_spans", "step_times", "token_centres", "diagonal_centres"]


def token_spans(tokenizer, words):
    """Token span ``(start, end)`` of every word of a transcript, as the tokenizer splits it.

    The transcript ``" ".join(words)`` is tokenized once per word prefix, so
    this works for any tokenizer whose pieces do not cross word boundaries
    (sentencepiece, GPT-2 BPE): word i owns the tokens added when it is appended.

    Arguments:
        tokenizer: object with ``encode(text) -> list of ids``.
        words: the transcript's words.

    Returns:
        list of ``(start, end)`` token indices (end exclusive), one per word;
        a word that adds no token gets an empty span at the current position.
    """
    spans, previous = [], 0
    for i in range(len(words)):
        count = len(tokenizer.encode(" ".join(words[: i + 1])))
        count = max(count, previous)
        spans.append((previous, count))
        previous = count
    return spans


def step_times(n_steps, r, hop_seconds, start):
    """Time (seconds from the utterance start) at the middle of each decoder step of r frames.

    Frame t of the continuation is centred ``t * hop_seconds`` after its start
    (centred STFT); step j covers frames ``j*r .. j*r + r - 1``.

    Arguments:
        n_steps: number of decoder frame steps.
        r: reduction factor.
        hop_seconds: frame hop.
        start: where the continuation starts in the utterance (the prompt length).

    Returns:
        list of floats.
    """
    return [round(start + (j * r + (r - 1) / 2) * hop_seconds, 9) for j in range(n_steps)]


def token_centres(word_times, spans, times):
    """The token spoken at each time, from word timings.

    Arguments:
        word_times: ``(start, end)`` seconds per word.
        spans: token span per word (:func:`token_spans`).
        times: query times (:func:`step_times`).

    Returns:
        list of float token indices: inside word w at fraction f of its
        span, ``start_w + floor(f * n_tokens_w)``; in a pause or before the
        first word, the next word's first token; after the last word, the last token.
    """
    starts = [a for a, _ in word_times]
    last_token = max((end for _, end in spans), default=1) - 1
    out = []
    for t in times:
        w = bisect.bisect_right(starts, t) - 1      # last word starting at or before t
        if w >= 0 and t < word_times[w][1]:
            a, b = word_times[w]
            first, end = spans[w]
            n = max(end - first, 1)
            offset = min(int((t - a) / max(b - a, 1e-9) * n), n - 1)
            out.append(float(min(first + offset, last_token)))
        elif w + 1 < len(word_times):                # pause before word w + 1
            out.append(float(min(spans[w + 1][0], last_token)))
        else:                                        # after the last word
            out.append(float(max(last_token, 0)))
    return out


def diagonal_centres(n_tokens, duration, times):
    """The token at each time under a constant speaking rate (DC-TTS diagonal prior).

    Arguments:
        n_tokens: transcript length in tokens.
        duration: utterance length in seconds.
        times: query times.

    Returns:
        list of float token indices in ``[0, n_tokens - 1]``.
    """
    top = max(n_tokens - 1, 0)
    return [min(max(n_tokens * t / max(duration, 1e-9) - 0.5, 0.0), float(top)) for t in times]
