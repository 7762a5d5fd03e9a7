"""Real people counting: prompts made of the Free Spoken Digit Dataset's recorded digits.

FSDD (Jakobovski et al., CC BY-SA 4.0) holds single English digits spoken by six real speakers at 8 kHz.
:func:`write_counting_prompts` joins one speaker's digits into a count of about 3 s, up ("four five six
seven eight") or down ("nine eight seven six five"), resampled to 16 kHz, with short pauses of faint noise
between the words (a recording never holds digital silence). The mini corpus counts in the same words, so
such a prompt tests hearing (a real voice, a narrow 8 kHz band) and not vocabulary; its next number tests
whether the text continuation counts on.

The dataset is not part of the package: pass its folder (``recordings/`` and ``transcripts.tsv``).
"""
import csv
import random
from pathlib import Path

import numpy as np

from spectron_kit.audio import load_audio, save_audio

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")
COUNTING_FILE = "counting.tsv"
COLUMNS = ("id", "path", "speaker", "direction", "text", "next_words", "seconds")


def _takes(fsdd_root):
    """{(speaker, digit): [wav paths]} from the dataset's ``transcripts.tsv``."""
    table = Path(fsdd_root) / "transcripts.tsv"
    if not table.is_file():
        raise FileNotFoundError(f"{fsdd_root} has no transcripts.tsv; pass the Free Spoken Digit Dataset folder "
                                "(recordings/ and transcripts.tsv)")
    takes = {}
    with open(table, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            takes.setdefault((row["speaker"], int(row["digit"])), []).append(Path(fsdd_root) / row["file"])
    return takes


def counting_plan(speakers, per_direction=3, length=5, seed=0):
    """Which counts to make: per speaker, ``per_direction`` counts up and as many down, ``length`` numbers each,
    within one..nine (the words of the mini corpus's counts). Returns ``[(speaker, direction, [digits])]``.

    Example:
        >>> plan = counting_plan(["ann"], per_direction=1, length=5, seed=0)
        >>> [(d, len(n), n[1] - n[0]) for _, d, n in plan]
        [('up', 5, 1), ('down', 5, -1)]
    """
    rng = random.Random(seed)
    plan = []
    for speaker in speakers:
        for direction in ("up", "down"):
            firsts = list(range(1, 11 - length)) if direction == "up" else list(range(length, 10))
            for first in rng.sample(firsts, min(per_direction, len(firsts))):
                step = 1 if direction == "up" else -1
                plan.append((speaker, direction, [first + step * k for k in range(length)]))
    return plan


def write_counting_prompts(fsdd_root, out_dir, per_direction=3, max_seconds=3.0, sample_rate=16000, seed=0):
    """Write counting prompts (16 kHz WAV) and ``counting.tsv`` describing them; returns its rows.

    Each count starts with 0.1 s of faint noise, and its words follow each other after a pause of 0.10 to
    0.25 s; a count keeps as many words (at most five) as fit in ``max_seconds``, so a 3 s prompt holds
    every word it names.

    Arguments:
        fsdd_root: the FSDD folder (``recordings/``, ``transcripts.tsv``).
        out_dir: where the WAVs and ``counting.tsv`` go (created).
        per_direction: counts up (and down) per speaker.
        max_seconds: the longest prompt.
        sample_rate: rate of the written audio.
        seed: chooses the counts, the takes and the pauses.

    Returns:
        list of dicts with ``id``, ``path``, ``speaker``, ``direction`` ("up"/"down"), ``text`` (the words
        spoken), ``next_words`` (the numbers that come next: two, fewer below one, e.g. "two one", "one") and ``seconds``.
    """
    takes = _takes(fsdd_root)
    speakers = sorted({speaker for speaker, _ in takes})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for speaker, direction, digits in counting_plan(speakers, per_direction, 5, seed):
        noise = lambda n: (1e-3 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731 - about -60 dBFS
        pieces, said, total = [noise(int(0.1 * sample_rate))], [], 0.1
        for digit in digits:
            options = takes[(speaker, digit)]
            word = load_audio(options[int(rng.integers(len(options)))], sample_rate).numpy()
            word = 0.5 * word / max(float(np.abs(word).max()), 1e-4)    # the takes differ in level: one level
            pause = noise(int(rng.uniform(0.10, 0.25) * sample_rate))
            if total + len(word) / sample_rate > max_seconds:
                break
            pieces += [word + noise(len(word)), pause]
            said.append(digit)
            total += (len(word) + len(pause)) / sample_rate
        wav = np.concatenate(pieces)[: int(max_seconds * sample_rate)]
        step = 1 if direction == "up" else -1
        following = [d for d in (said[-1] + step, said[-1] + 2 * step) if 0 < d < len(NUMBER_WORDS)]
        name = f"{speaker}_{direction}_{'-'.join(map(str, said))}"
        path = out_dir / f"{name}.wav"
        save_audio(path, wav, sample_rate)
        rows.append({"id": name, "path": str(path), "speaker": speaker, "direction": direction,
                     "text": " ".join(NUMBER_WORDS[d] for d in said),
                     "next_words": " ".join(NUMBER_WORDS[d] for d in following),
                     "seconds": round(len(wav) / sample_rate, 3)})
    with open(out_dir / COUNTING_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def counts_on(continuation_words, next_words):
    """Whether a text continuation starts with the count's next numbers.

    Example:
        >>> counts_on(["nine", "ten", "lift"], "nine ten"), counts_on(["five"], "nine ten")
        (True, False)
    """
    expected = next_words.split()
    return bool(expected) and list(continuation_words[: len(expected)]) == expected
