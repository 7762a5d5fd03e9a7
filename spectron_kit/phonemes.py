"""Phoneme units for the speech section: a vocabulary and the per-utterance phoneme events.

With ``interleave_phonemes`` (an addition to the paper, off in ``spectron.yaml``)
the decoder writes, after the words, the speech of the continuation as
phoneme tokens each followed by that phoneme's frame groups::

    speech inputs : [ go ][ ph_1 ][ g_1 ][ g_2 ][ ph_2 ][ g_3 ] ...
    targets       : [ ph_1][ g_1 ][ g_2 ][ ph_2][ g_3 ][ ... ]

so each frame step sees the phoneme it is speaking a few positions back, and
a gate decides at every step whether a frame group or the next phoneme comes
next (the phoneme's duration). The phonemes and their timings come from
espeak-ng (the mini corpus writes them: the ``phone_times`` manifest column).

This module holds the one rule that turns an utterance's phoneme timings into
the events of its continuation window (:func:`phone_events`), used by the
recipe's data pipeline and by ``SpectronModel.teacher_forced_frames`` alike.

Example:
    >>> vocab = PhonemeVocabulary(["h", "@", "l"])
    >>> vocab.ids(["h", "@", "x"])
    [2, 3, 1]
    >>> timings = [("h", 2.9, 3.05), ("@", 3.05, 3.1), ("l", 3.1, 3.3)]
    >>> phone_events(timings, vocab, start=3.0, n_groups=10, step_seconds=0.025)
    ([2, 3, 4], [2, 2, 6], False)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["END", "UNKNOWN", "PhonemeVocabulary", "phone_events", "split_heard", "vocabulary_from_rows"]

END, UNKNOWN = "<end>", "<unk>"  # ids 0 and 1: the end of speech, a phoneme not seen in training


class PhonemeVocabulary:
    """The phoneme inventory of a model: ``<end>`` (0), ``<unk>`` (1), then the phonemes in a fixed order.

    Arguments:
        phonemes: the phoneme names (espeak-ng mnemonics with stress marks).
    """

    def __init__(self, phonemes):
        names = [str(p) for p in phonemes if str(p) not in (END, UNKNOWN)]
        if len(set(names)) != len(names):
            raise ValueError("phoneme names must be unique; got duplicates in the vocabulary")
        self.symbols = [END, UNKNOWN] + names
        self._index = {name: i for i, name in enumerate(self.symbols)}

    def __len__(self):
        return len(self.symbols)

    def ids(self, names):
        """Phoneme names -> ids (unknown names get the ``<unk>`` id)."""
        return [self._index.get(str(n), 1) for n in names]

    def names(self, ids):
        return [self.symbols[int(i)] if 0 <= int(i) < len(self.symbols) else UNKNOWN for i in ids]

    def save(self, path):
        Path(path).write_text(json.dumps({"phonemes": self.symbols[2:]}, indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, path):
        try:
            return cls(json.loads(Path(path).read_text())["phonemes"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is not a phoneme vocabulary ({err}); it must hold "
                             '{"phonemes": [...]}') from None


def vocabulary_from_rows(rows):
    """The vocabulary of every phoneme in the ``phone_times`` of manifest rows (sorted, for stable ids).

    Raises ValueError when no row has phoneme timings.
    """
    from spectron_kit.data.manifest import parse_phone_times

    seen = set()
    for row in rows:
        for name, _, _ in parse_phone_times(row.get("phone_times", "")) or ():
            seen.add(name)
    if not seen:
        raise ValueError("no manifest row has phoneme timings (the phone_times column); interleave_phonemes needs "
                         "them: the mini corpus writes them (generator version 3), other data needs a phoneme aligner")
    return PhonemeVocabulary(sorted(seen))


def phone_events(timings, vocab, start, n_groups, step_seconds):
    """The phonemes of a continuation window and the frame groups each one owns.

    The window starts at ``start`` seconds and holds ``n_groups`` decoder
    steps of ``step_seconds`` (r frames). Phoneme k owns the groups from
    ``round((start_k - start) / step)`` to the next phoneme's start (clamped to
    the window): the phoneme being spoken at ``start`` comes first, a
    phoneme shorter than half a step may own none, and the groups of all
    phonemes add up to ``n_groups``.

    Arguments:
        timings: ``[(phoneme, start_s, end_s), ...]`` of the whole utterance
            (``spectron_kit.data.manifest.parse_phone_times``).
        vocab: :class:`PhonemeVocabulary`.
        start: the window's start (the prompt length), seconds.
        n_groups: decoder steps in the window.
        step_seconds: seconds per decoder step (r * hop).

    Returns:
        ``(ids, groups, ends)``: phoneme ids, groups per phoneme, and whether
        the speech ends inside the window (the last phoneme's end is within
        it: then ``<end>`` follows).
    """
    if not timings or n_groups <= 0:
        return [], [], False
    window_end = start + n_groups * step_seconds
    first = 0
    for k, (_, a, b) in enumerate(timings):
        if b > start or k == len(timings) - 1:
            first = k
            break
    ids, groups = [], []
    boundary = 0
    for k in range(first, len(timings)):
        name, a, _ = timings[k]
        if k > first and a >= window_end:
            break
        nxt = timings[k + 1][1] if k + 1 < len(timings) else None
        end_group = n_groups if nxt is None else min(n_groups, max(boundary, round((nxt - start) / step_seconds)))
        ids.append(vocab.ids([name])[0])
        groups.append(end_group - boundary)
        boundary = end_group
    if boundary < n_groups and groups:  # the window runs past the last phoneme: it owns the rest
        groups[-1] += n_groups - boundary
    ends = timings[-1][2] <= window_end + 1e-9
    return ids, groups, ends


def continuation_events(timings, vocab, spec, reduction_factor, start, cont_samples):
    """:func:`phone_events` of a continuation of ``cont_samples`` audio samples starting at ``start`` seconds.

    The one place that turns a continuation's length into decoder steps for
    the phoneme events (``ceil(frames / r)`` groups of ``r * hop`` seconds), so
    training, teacher forcing and the tools align phonemes to the same groups.

    Arguments:
        timings: ``[(phoneme, start_s, end_s), ...]`` of the whole utterance (or None: no events).
        vocab: :class:`PhonemeVocabulary`.
        spec: the model's ``FeatureSpec``.
        reduction_factor: frames per decoder step (r).
        start: the continuation's start (the prompt length), seconds.
        cont_samples: the continuation's length in samples.
    """
    n_groups = math.ceil(spec.num_frames(max(int(cont_samples), 0)) / reduction_factor)
    return phone_events(timings or [], vocab, start, n_groups, reduction_factor * spec.hop_seconds)


def pad_events(events, device=None):
    """Per-item ``phone_events`` results -> the batch keys ``SpectronModel.forward`` reads.

    Returns:
        dict: ``phones`` [B, K] and ``phone_groups`` [B, K] (zero-padded),
        ``phone_lens`` [B], ``phone_ends`` [B] (bool).

    Example:
        >>> b = pad_events([([2, 3], [1, 4], False), ([5], [3], True)])
        >>> b["phones"].tolist(), b["phone_lens"].tolist(), b["phone_ends"].tolist()
        ([[2, 3], [5, 0]], [2, 1], [False, True])
    """
    import torch

    width = max([len(ids) for ids, _, _ in events] + [1])
    phones = torch.zeros(len(events), width, dtype=torch.long)
    groups = torch.zeros(len(events), width, dtype=torch.long)
    for i, (ids, counts, _) in enumerate(events):
        phones[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        groups[i, : len(counts)] = torch.tensor(counts, dtype=torch.long)
    out = {"phones": phones, "phone_groups": groups,
           "phone_lens": torch.tensor([len(ids) for ids, _, _ in events], dtype=torch.long),
           "phone_ends": torch.tensor([bool(e) for _, _, e in events])}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def _edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def split_heard(text, listed, phonemes_of=None):
    """Split a model's text into what it heard (its prompt transcript) and what it continues.

    A model with ``phoneme_list`` writes, after its text, the phonemes of the speech it continues with:
    they start where the prompt ends. The split is the word boundary after which the words' own phonemes
    (espeak-ng's, the mnemonics the list uses) best match the list's beginning.

    Arguments:
        text: the model's text (transcript then continuation).
        listed: the phoneme list it wrote (``SpectronOutput.listed[i]``); empty: no split is known.
        phonemes_of: word -> phoneme names (default: espeak-ng's, en-us).

    Returns:
        ``(heard, continuation)`` strings, or ``(None, None)`` without a phoneme list.

    Example:
        >>> names = {"one": ["w", "'V", "n"], "two": ["t", "'u:"], "three": ["T", "r", "'i:"]}
        >>> split_heard("one two three", ["t", "'u:", "T", "r"], names.get)
        ('one', 'two three')
    """
    words = str(text).split()
    listed = [p for p in listed or [] if p not in (END, UNKNOWN)]
    if not listed or not words:
        return (None, None) if not listed else ("", "")
    phonemes_of = phonemes_of or _espeak_phonemes
    spoken = [list(phonemes_of(w.lower()) or []) for w in words]
    sequence = [p for ph in spoken for p in ph]
    bounds = [0]                                       # phoneme index where each word starts, and the end
    for ph in spoken:
        bounds.append(bounds[-1] + len(ph))
    # where in the words' phonemes the list begins (the prompt may end inside a word) ...
    start = min(range(len(sequence) + 1), key=lambda i: (_edit_distance(listed, sequence[i:i + len(listed)]), i))
    # ... and the word boundary nearest to it
    best = min(range(len(words) + 1), key=lambda k: (abs(bounds[k] - start), k))
    return " ".join(words[:best]), " ".join(words[best:])


def _espeak_phonemes(word):
    from spectron_kit.data.espeak import phoneme_names

    return phoneme_names(word)
