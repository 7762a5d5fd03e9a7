"""A small synthetic multi-speaker English corpus in LibriSpeech layout.

Sentences come from a hand-written grammar (:mod:`spectron_kit.data.grammar`) whose second half follows from
the first (a story keeps its subject and its place, a count goes on, a
recipe follows its steps, a list is repeated), so a 3 s prompt says a lot
about the continuation. Speech comes from espeak-ng (:mod:`spectron_kit.data.espeak`)
with one fixed voice setting per speaker. Everything is a function of the
seed: the same seed gives the same files, byte for byte.

Layout under ``root``::

    <split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac   16 kHz, 16 bit
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt     <utt-id> UPPER CASE TEXT
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.words.json    utt-id -> [[WORD, start_s, end_s], ...]
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.phones.json   utt-id -> [[phoneme, start_s, end_s], ...]
    SPEAKERS.TXT                                                  LibriSpeech-style speaker table
    minicorpus.json                                               completion marker, config and stats

Splits: ``train`` and ``valid`` share the training speakers; ``test`` has
its own speakers (voice variants never used in training) and only sentences
whose slot combination (see :func:`is_heldout`) never occurs in ``train``,
``valid`` or the text corpus of :func:`ensure_text_corpus`; ``test_seen``
has held-out sentences of the same kind spoken by the training speakers
(unseen sentences in seen voices: it measures the model apart from voice cloning).

Example:
    >>> root = ensure_mini_corpus("data/mini", size="tiny")  # doctest: +SKIP
    >>> [row["utterances"] for row in corpus_summary(root)]  # doctest: +SKIP
    [24, 8, 8, 8]
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from spectron_kit.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "Sentence", "Speaker", "SPEAKERS", "SIZES", "SPLITS", "SAMPLE_RATE",
    "generate_sentence", "sentences", "is_heldout", "template_names",
    "ensure_mini_corpus", "corpus_summary", "ensure_text_corpus",
]

# bump whenever the grammar, speakers, splits or audio processing change
# (2: torchaudio resampling; 3: test_seen split and phoneme timings, audio unchanged)
GENERATOR_VERSION = 3
#: older versions whose audio equals this version's: upgraded in place (missing files are written)
SAME_AUDIO_VERSIONS = (2,)
SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test_seen", "test")
#: splits of held-out sentences (slot combinations never in train, valid or the text corpus)
HELDOUT_SPLITS = ("test_seen", "test")
MIN_SECONDS, MAX_SECONDS = 4.5, 9.0  # prompt (3 s) + at least 1.5 s of continuation
MARKER = "minicorpus.json"
PARTIAL_MARKER = "minicorpus.partial.json"

#: utterances per split, and utterances per chapter
SIZES = {
    "tiny": {"train": 24, "valid": 8, "test_seen": 8, "test": 8, "chapter": 8},
    "default": {"train": 2400, "valid": 120, "test_seen": 120, "test": 120, "chapter": 50},
}


# The sentence grammar lives in spectron_kit.data.grammar (re-exported here).
from spectron_kit.data.grammar import (Sentence, fact_questions, generate_sentence, is_heldout,  # noqa: E402,F401
                                       sentences, template_names)


# =============================================================================
# Speakers
# =============================================================================
@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a fixed espeak-ng voice setting.

    Arguments:
        id: LibriSpeech-style numeric speaker id.
        group: ``"train"`` (train and valid splits) or ``"test"``.
        voice: espeak-ng ``base+variant`` voice.
        pitch, pitch_range, rate: espeak-ng settings (0-100, 0-100, words per minute).
        gain_db: peak level of the written audio in dBFS.
        sex: ``"M"`` or ``"F"`` for SPEAKERS.TXT.
    """

    id: int
    group: str
    voice: str
    pitch: int
    pitch_range: int
    rate: int
    gain_db: float
    sex: str


#: 12 training speakers and 2 test speakers (test variants m7/f4 appear nowhere in training)
SPEAKERS = (
    Speaker(101, "train", "en-us+m1", 40, 50, 165, -2.0, "M"),
    Speaker(102, "train", "en-us+f2", 62, 60, 170, -3.0, "F"),
    Speaker(103, "train", "en+m3", 45, 40, 155, -1.5, "M"),
    Speaker(104, "train", "en+f1", 58, 55, 160, -4.0, "F"),
    Speaker(105, "train", "en-gb-scotland+m2", 35, 45, 150, -2.5, "M"),
    Speaker(106, "train", "en-gb-x-rp+f3", 66, 70, 175, -3.5, "F"),
    Speaker(107, "train", "en-029+m4", 48, 55, 170, -2.0, "M"),
    Speaker(108, "train", "en-gb-x-gbclan+f5", 55, 45, 160, -5.0, "F"),
    Speaker(109, "train", "en-us+klatt3", 50, 50, 180, -3.0, "M"),
    Speaker(110, "train", "en-gb-x-gbcwmd+m6", 38, 60, 165, -1.0, "M"),
    Speaker(111, "train", "en-us+Annie", 60, 65, 155, -4.5, "F"),
    Speaker(112, "train", "en+klatt6", 45, 35, 175, -2.5, "M"),
    Speaker(901, "test", "en-us-nyc+m7", 42, 55, 160, -2.0, "M"),
    Speaker(902, "test", "en-gb-x-rp+f4", 64, 60, 165, -3.0, "F"),
)


def _split_speakers(split):
    group = "test" if split == "test" else "train"  # test_seen: the training speakers
    return [s for s in SPEAKERS if s.group == group]


# =============================================================================
# Corpus generation
# =============================================================================
def spoken_facts_templates(spoken_facts):
    """``generate_sentence(extra_templates=...)`` of a corpus config's ``spoken_facts`` (None: the grammar alone).

    ``spoken_facts = {"seed": 1234, "weight": 2.0, "split": "person"}``:
    utterances that ask and answer the spoken half of the fact world's facts
    (:func:`spectron_kit.data.factworld.split_facts` by ``split``, person or
    fact; :func:`spectron_kit.data.factworld.spoken_fact_sentence`), drawn with
    ``weight`` beside the grammar's templates (their weights sum to 15.5);
    weight 0 is the plain corpus.
    """
    if not spoken_facts or spoken_facts.get("weight") == 0:
        return None
    import functools

    from spectron_kit.data.factworld import SPLITS, spoken_fact_sentence

    unknown = sorted(set(spoken_facts) - {"seed", "weight", "split"})
    if unknown or "weight" not in spoken_facts:
        raise ValueError(f"spoken_facts={spoken_facts!r}: give seed, weight and split "
                         "(e.g. {seed: 1234, weight: 2.0, split: person})")
    weight = spoken_facts["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
        raise ValueError(f"spoken_facts weight={weight!r} must be a positive number")
    split = spoken_facts.get("split", "person")
    if split not in SPLITS:
        raise ValueError(f"spoken_facts split={split!r}: use one of {', '.join(SPLITS)}")
    template = functools.partial(spoken_fact_sentence, seed=int(spoken_facts.get("seed", 1234)), by=split)
    return {"spoken_facts": (template, float(weight))}


def _config(size, seed, spoken_facts=None):
    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; use one of: {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    config = {"version": GENERATOR_VERSION, "size": size, "counts": SIZES[size], "seed": seed,
              "sample_rate": SAMPLE_RATE, "seconds": [MIN_SECONDS, MAX_SECONDS],
              "speakers": [dataclasses.asdict(s) for s in SPEAKERS]}
    if spoken_facts_templates(spoken_facts):  # only recorded when used: the plain corpus keeps its hash
        config["spoken_facts"] = dict(spoken_facts)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return config, digest


def _upgradable(found, config):
    """True when ``found`` (a stored corpus config) is this corpus made by an older generator with the same audio."""
    if found.get("version") not in SAME_AUDIO_VERSIONS:
        return False
    same = ("size", "seed", "sample_rate", "seconds", "speakers", "spoken_facts")
    return all(found.get(key) == config.get(key) for key in same)


def _chapter_jobs(size):
    """Chapters to write: (split, speaker, chapter id, [(index in split, nnnn)])."""
    counts = SIZES[size]
    per_chapter = counts["chapter"]
    jobs = []
    for split in SPLITS:
        speakers = _split_speakers(split)
        chapters = {}
        for i in range(counts[split]):
            spk = speakers[i % len(speakers)]
            j = i // len(speakers)
            chapter = spk.id * 100 + CHAPTER_OFFSET.get(split, 0) + j // per_chapter
            chapters.setdefault((spk.id, chapter), []).append((i, j % per_chapter))
        for (spk_id, chapter), utts in chapters.items():
            jobs.append((split, spk_id, chapter, utts))
    return jobs


#: chapter numbers of a speaker's splits: <speaker>00 train, <speaker>50 valid, <speaker>70 test_seen
CHAPTER_OFFSET = {"valid": 50, "test_seen": 70}


def _pick_utterance(seed, split, index, speaker, spoken_facts=None):
    """Synthesise sentences for one utterance until one lasts 4.5-9 s (deterministic)."""
    from spectron_kit.data.espeak import synthesize

    rng = random.Random(f"minicorpus/{seed}/{split}/{index}")
    extra = spoken_facts_templates(spoken_facts)
    best = None
    for attempt in range(50):
        sentence = generate_sentence(rng, heldout=(split in HELDOUT_SPLITS), extra_templates=extra)
        out = synthesize(sentence.text, voice=speaker.voice, rate=speaker.rate, pitch=speaker.pitch,
                         pitch_range=speaker.pitch_range, volume=70, sample_rate=SAMPLE_RATE,
                         seed=rng.randrange(2 ** 31))
        miss = max(MIN_SECONDS - out.duration, out.duration - MAX_SECONDS, 0.0)
        if best is None or miss < best[0]:
            best = (miss, sentence, out)
        if miss == 0.0:
            break
    _, sentence, out = best
    peak = float(np.max(np.abs(out.wav))) or 1.0
    wav = out.wav * (10.0 ** (speaker.gain_db / 20.0) / peak)
    pcm = np.clip(np.round(wav * 32767.0), -32768, 32767).astype(np.int16)
    words = [[w.word.upper(), round(w.start, 3), round(w.end, 3)] for w in out.words]
    phones = [[p.phoneme, round(p.start, 3), round(p.end, 3)] for p in out.phonemes]
    return sentence, pcm, words, phones


def _write_atomic(path, data: str):
    tmp = f"{path}.{os.getpid()}.tmp"  # private name: concurrent builders never share it
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


def _alignment_json(table):
    lines = [f"  {json.dumps(uid)}: {json.dumps(words)}" for uid, words in table.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _one_thread_per_worker():
    """Initializer of the corpus worker processes: one torch thread each (the resampler), so that
    ``workers`` processes use ``workers`` cores instead of oversubscribing them."""
    import torch

    torch.set_num_threads(1)


def _single_thread_blas():
    """Keep numpy's BLAS on one thread: threaded BLAS crawls on a busy machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


def _make_chapter(root, seed, job, spoken_facts=None):
    """Write one chapter (skips finished chapters and finished audio files)."""
    with _single_thread_blas():
        return _write_chapter(root, seed, job, spoken_facts)


def _write_chapter(root, seed, job, spoken_facts=None):
    import soundfile as sf

    split, spk_id, chapter, utts = job
    speaker = next(s for s in SPEAKERS if s.id == spk_id)
    folder = Path(root) / split / str(spk_id) / str(chapter)
    trans_path = folder / f"{spk_id}-{chapter}.trans.txt"
    words_path = folder / f"{spk_id}-{chapter}.words.json"
    phones_path = folder / f"{spk_id}-{chapter}.phones.json"
    if trans_path.exists() and words_path.exists() and phones_path.exists():
        samples = sum(sf.info(str(folder / f"{spk_id}-{chapter}-{n:04d}.flac")).frames
                      for _, n in utts)
        return len(utts), samples, True
    folder.mkdir(parents=True, exist_ok=True)
    trans, align, phone_align, samples = [], {}, {}, 0
    for index, n in utts:
        uid = f"{spk_id}-{chapter}-{n:04d}"
        sentence, pcm, words, phones = _pick_utterance(seed, split, index, speaker, spoken_facts)
        flac = folder / f"{uid}.flac"
        if not flac.exists():
            tmp = folder / f"{uid}.{os.getpid()}.tmp.flac"
            sf.write(str(tmp), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            os.replace(tmp, flac)
        trans.append(f"{uid} {sentence.transcript}")
        align[uid] = words
        phone_align[uid] = phones
        samples += len(pcm)
    _write_atomic(words_path, _alignment_json(align))
    _write_atomic(phones_path, _alignment_json(phone_align))
    _write_atomic(trans_path, "\n".join(trans) + "\n")  # written last: marks the chapter done
    return len(utts), samples, False


def _speakers_txt(seconds):
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for s in SPEAKERS:
        subset = "train, valid, test_seen" if s.group == "train" else "test"
        minutes = seconds.get(s.id, 0.0) / 60.0
        lines.append(f"{s.id:<5}| {s.sex} | {subset:<16} | {minutes:5.2f} | espeak-ng {s.voice} "
                     f"pitch={s.pitch} range={s.pitch_range} rate={s.rate}")
    return "\n".join(lines) + "\n"


def _already_built(root, config, digest):
    """True when ``root`` holds this finished corpus. An older generator's corpus with the same audio is
    upgraded in place (its markers go; the build adds what is new); another corpus is a ValueError."""
    marker, partial = root / MARKER, root / PARTIAL_MARKER
    for path in (marker, partial):
        if path.exists():
            found = json.loads(path.read_text())
            if _upgradable(found.get("config", {}), config):
                # same corpus from an older generator with the same audio: its files are kept and
                # what this version adds (test_seen, phoneme timings) is written beside them
                logger.warning("%s was built by mini-corpus generator version %s; upgrading it in place to "
                               "version %s (adds the test_seen split and phoneme timings; the audio is the same)",
                               root, found["config"].get("version"), GENERATOR_VERSION)
                path.unlink()
                continue
            version = found.get("config", {}).get("version")
            if version != GENERATOR_VERSION:
                raise ValueError(f"{root} holds a mini corpus of generator version {version} (now "
                                 f"{GENERATOR_VERSION}, whose audio differs); delete that folder to rebuild it, "
                                 "or pick another data_folder")
            if found.get("config_hash") != digest:
                raise ValueError(
                    f"{root} already holds a mini corpus built with size={found['config']['size']!r}, "
                    f"seed={found['config']['seed']!r}, spoken_facts={found['config'].get('spoken_facts')!r} "
                    f"(config {found.get('config_hash')}); "
                    f"pick another root or delete that folder")
            if path == marker:
                return True
    return False


def ensure_mini_corpus(root, size: str = "default", seed: int = 1234, workers: int = 1,
                       progress: bool = True, spoken_facts=None) -> Path:
    """Generate the mini corpus under ``root`` unless it is already complete.

    A finished corpus holds ``minicorpus.json`` with its config hash: a second
    call returns at once. An interrupted run resumes: finished chapters and
    audio files are kept.

    Arguments:
        root: output folder (created).
        size: ``"tiny"`` (40 utterances, for tests) or ``"default"`` (2640).
        seed: corpus seed; the same seed gives identical files.
        workers: processes to use (each loads its own espeak-ng).
        progress: show a rich progress bar.
        spoken_facts: None, or ``{"seed", "weight", "split"}``: the corpus also asks
            and answers half of the fact world's facts (the
            knowledge-retention experiment, :func:`spoken_facts_templates`).
    Returns:
        ``Path(root)``.

    Example:
        >>> ensure_mini_corpus("data/mini", size="tiny", seed=1)  # doctest: +SKIP
        PosixPath('data/mini')
    """
    config, digest = _config(size, seed, spoken_facts)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be an integer >= 1")
    root = Path(root)
    marker, partial = root / MARKER, root / PARTIAL_MARKER
    if _already_built(root, config, digest):
        return root
    root.mkdir(parents=True, exist_ok=True)
    _write_atomic(partial, json.dumps({"config_hash": digest, "config": config}, indent=1) + "\n")
    jobs = _chapter_jobs(size)
    stats = {split: {"speakers": len({j[1] for j in jobs if j[0] == split}),
                     "utterances": 0, "samples": 0} for split in SPLITS}
    speaker_samples = {}
    started = time.perf_counter()
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task(f"mini corpus ({size})", total=sum(len(j[3]) for j in jobs))

        def done(job, result):
            n, samples, _ = result
            stats[job[0]]["utterances"] += n
            stats[job[0]]["samples"] += samples
            speaker_samples[job[1]] = speaker_samples.get(job[1], 0) + samples
            bar.advance(task, n)

        if workers == 1:
            for job in jobs:
                done(job, _make_chapter(str(root), seed, job, spoken_facts))
        else:
            import multiprocessing
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread_per_worker) as pool:
                futures = {pool.submit(_make_chapter, str(root), seed, job, spoken_facts): job for job in jobs}
                for future in as_completed(futures):
                    done(futures[future], future.result())
    for row in stats.values():
        row["seconds"] = row.pop("samples") / SAMPLE_RATE
    speaker_seconds = {k: v / SAMPLE_RATE for k, v in speaker_samples.items()}
    _write_atomic(root / "SPEAKERS.TXT", _speakers_txt(speaker_seconds))
    record = {"config_hash": digest, "config": config, "splits": stats,
              "build_seconds": round(time.perf_counter() - started, 1)}
    _write_atomic(marker, json.dumps(record, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    return root


def corpus_summary(root) -> list:
    """Per-split statistics of a finished mini corpus.

    Arguments:
        root: a folder made by :func:`ensure_mini_corpus`.
    Returns:
        One dict per split: ``split``, ``speakers``, ``utterances``, ``hours``.
    """
    marker = Path(root) / MARKER
    if not marker.exists():
        raise FileNotFoundError(f"{marker} not found; build the corpus first with "
                                f"ensure_mini_corpus({str(root)!r})")
    record = json.loads(marker.read_text())
    return [{"split": split, "speakers": row["speakers"], "utterances": row["utterances"],
             "hours": row["seconds"] / 3600.0} for split, row in record["splits"].items()]


# =============================================================================
# Text-only corpus for language-model pre-training
# =============================================================================
def ensure_text_corpus(path, n_sentences: int = 50000, seed: int = 1234,
                       style: str = "transcript", progress: bool = True, extra=None) -> Path:
    """Write ``n_sentences`` grammar sentences, one a line, unless already written.

    Held-out slot combinations (every test utterance) are left out.
    ``extra`` (``{"name": ..., "config": {...}, "lines": [...]}``) mixes more
    written lines in, e.g. a synthetic fact world
    (:func:`spectron_kit.data.factworld.fact_world_text`, for the
    knowledge-retention experiment); its name and config key the cache.

    Arguments:
        path: output text file.
        n_sentences: number of lines.
        seed: stream seed.
        style: ``"transcript"`` (UPPER CASE, no punctuation, like trans.txt) or
            ``"written"`` (capitals and punctuation).
        progress: show a rich progress bar.
    Returns:
        ``Path(path)``; a ``<path>.json`` sidecar records the config.
    """
    if style not in ("transcript", "written"):
        raise ValueError(f"style={style!r}; use 'transcript' or 'written'")
    if isinstance(n_sentences, bool) or not isinstance(n_sentences, int) or n_sentences < 1:
        raise ValueError(f"n_sentences={n_sentences!r} must be a positive integer")
    path = Path(path)
    config = {"version": GENERATOR_VERSION, "n_sentences": n_sentences, "seed": seed, "style": style}
    if extra:
        missing = sorted({"name", "config", "lines"} - set(extra))
        if missing:
            raise ValueError(f"extra lacks {missing}: give name, config and lines")
        config[extra["name"]] = extra["config"]
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    sidecar = path.with_name(path.name + ".json")
    if path.exists() and sidecar.exists():
        if json.loads(sidecar.read_text()).get("config_hash") == digest:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"text-corpus/{seed}")
    lines = []
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("text corpus", total=n_sentences)
        for i in range(n_sentences):
            s = generate_sentence(rng, heldout=False)
            lines.append(s.transcript if style == "transcript" else s.text)
            if (i + 1) % 1000 == 0 or i + 1 == n_sentences:
                bar.advance(task, 1000 if (i + 1) % 1000 == 0 else (i + 1) % 1000)
    if extra:
        from spectron_kit.data.espeak import tokenize

        more = list(extra["lines"])
        if style == "transcript":
            more = [" ".join(w.upper() for w, _, _ in tokenize(line)) for line in more]
        lines += more
        random.Random(f"text-corpus-mix/{seed}").shuffle(lines)
    _write_atomic(path, "\n".join(lines) + "\n")
    _write_atomic(sidecar, json.dumps({"config_hash": digest, "config": config}, indent=1) + "\n")
    return path
