"""espeak-ng binding, sentence grammar and the synthetic mini corpus."""
import hashlib
import json
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")
sf = pytest.importorskip("soundfile")

from spectron_kit.data import espeak, grammar, minicorpus  # noqa: E402
from spectron_kit.data.minicorpus import SPEAKERS, ensure_mini_corpus, ensure_text_corpus  # noqa: E402
from spectron_kit.data.transcripts import prompt_words, read_trans_file, read_word_alignments  # noqa: E402

TEXT = "The little fox walked to the river. Then the fox drank the cold water."


# -- synthesis ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def spoken():
    return espeak.synthesize(TEXT, voice="en-us+f3", rate=170)


def test_synthesis_is_plausible_speech(spoken):
    assert spoken.sample_rate == 16000
    assert spoken.wav.dtype == np.float32 and spoken.wav.ndim == 1
    assert 2.5 < spoken.duration < 7.0  # 13 words at 170 words/min
    assert np.sqrt(np.mean(spoken.wav ** 2)) > 0.01
    assert np.abs(spoken.wav).max() <= 1.0


def test_word_timings_increase_and_stay_inside_audio(spoken):
    assert [w.word for w in spoken.words] == [w for w, _, _ in espeak.tokenize(TEXT)]
    starts = [w.start for w in spoken.words]
    assert starts == sorted(starts) and starts[0] < 0.3
    assert len(set(starts)) == len(starts)
    for w in spoken.words:
        assert 0.0 <= w.start < w.end <= spoken.duration + 1e-6
        assert TEXT[w.char_start:w.char_end] == w.word
    # espeak-ng pauses at the full stop: "Then" starts well after "river" stops
    river, then = spoken.words[6], spoken.words[7]
    assert (river.word, then.word) == ("river", "Then")
    assert then.start - river.end > 0.1


def test_synthesis_is_deterministic(spoken):
    again = espeak.synthesize(TEXT, voice="en-us+f3", rate=170)
    assert np.array_equal(again.wav, spoken.wav)
    other = espeak.synthesize(TEXT, voice="en-us+m3", rate=170)
    assert not np.array_equal(other.wav[:16000], spoken.wav[:16000])


def test_rate_changes_duration():
    slow = espeak.synthesize("One two three four five six.", rate=120)
    fast = espeak.synthesize("One two three four five six.", rate=260)
    assert slow.duration > 1.4 * fast.duration


@pytest.mark.parametrize("kwargs, match", [
    (dict(voice="en-us+nosuch"), "variant 'nosuch'"),
    (dict(voice="xx-yy"), "voice 'xx-yy'"),
    (dict(rate=10), "rate=10"),
    (dict(pitch=101), "pitch=101"),
])
def test_bad_settings_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        espeak.synthesize("hello", **kwargs)


def test_empty_text_is_refused():
    with pytest.raises(ValueError, match="at least one word"):
        espeak.synthesize(" ... ")


def test_voice_lists():
    assert {"en", "en-us", "en-gb-x-rp"} <= set(espeak.english_voices())
    assert {"m1", "f3", "klatt"} <= set(espeak.variants())
    assert espeak.check_voice("en-GB+M3") == "en+m3"


def test_broken_data_folder_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(espeak, "_ENGINE", None)
    monkeypatch.setenv(espeak.DATA_ENV, str(tmp_path))
    engine = espeak._Engine()
    with pytest.raises(espeak.EspeakError, match=re.escape(str(tmp_path))) as err:
        engine.open()
    assert engine.source in str(err.value)
    monkeypatch.setenv(espeak.LIBRARY_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(espeak.EspeakError, match="missing.so"):
        espeak._Engine()


def test_resample_keeps_a_tone_and_drops_aliases():
    from spectron_kit.audio import resample  # the package's one resampler (espeak-ng's 22.05 kHz -> 16 kHz)

    t = np.arange(22050) / 22050.0
    tone = resample(np.sin(2 * np.pi * 1000 * t), 22050, 16000).numpy()
    assert tone.shape == (16000,) and tone.dtype == np.float32
    ref = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000.0)
    assert np.abs(tone - ref)[100:-100].max() < 1e-3
    alias = resample(np.sin(2 * np.pi * 9500 * t), 22050, 16000).numpy()
    assert np.abs(alias[100:-100]).max() < 1e-3


# -- grammar ---------------------------------------------------------------------------
def test_sentences_are_deterministic_and_varied():
    a = [s.text for s in minicorpus.sentences(300, seed=3)]
    assert a == [s.text for s in minicorpus.sentences(300, seed=3)]
    assert a != [s.text for s in minicorpus.sentences(300, seed=4)]
    assert len(set(a)) > 250
    found = {s.template for s in minicorpus.sentences(300, seed=3)}
    assert found == set(minicorpus.template_names())
    vocab = {w for s in minicorpus.sentences(3000, seed=3) for w in s.words}
    assert len(vocab) > 300


def test_heldout_filter_and_coverage():
    train = minicorpus.sentences(600, seed=1, heldout=False)
    test = minicorpus.sentences(300, seed=1, heldout=True)
    assert not any(s.heldout for s in train) and all(s.heldout for s in test)
    assert {s.template for s in test} == set(minicorpus.template_names())


def test_continuations_follow_from_the_beginning():
    rng = random.Random(0)
    seen = set()
    for _ in range(400):
        s = minicorpus.generate_sentence(rng, heldout=None)
        words = s.transcript.lower().split()
        seen.add(s.template)
        if s.template == "story":  # the subject comes back and does the place's action
            animal, place = s.key.split(":")[1:]
            first, second = s.text.split(". ", 1)
            assert animal in first and f"the {animal} " in second
            assert any(a in second for a in grammar._PLACES[place])
        elif s.template == "counting":
            nums = [grammar._number(k) for k in range(0, 101)]
            seq = re.findall(r"[a-z ]+", s.text.split(". ", 1)[1].lower())
            values = [nums.index(x.strip()) for x in seq if x.strip() in nums]
            steps = {b - a for a, b in zip(values, values[1:])}
            assert len(values) >= 5 and len(steps) == 1
        elif s.template == "recipe":
            dish = s.key.split(":")[1]
            positions = [s.text.find(step) for step in grammar._DISHES[dish][:3]]
            assert -1 not in positions and positions == sorted(positions)
        assert 8 <= len(words) <= 40
    assert {"story", "counting", "recipe"} <= seen


# -- corpus ------------------------------------------------------------------------------
def _tree_hash(root):
    digest = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and path.name != minicorpus.MARKER:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini") / "seed7"
    ensure_mini_corpus(root, size="tiny", seed=7, progress=False)
    return root


def test_layout_and_transcripts(tiny):
    counts = minicorpus.SIZES["tiny"]
    for split in minicorpus.SPLITS:
        flacs = sorted((tiny / split).glob("*/*/*.flac"))
        assert len(flacs) == counts[split]
        trans_files = sorted((tiny / split).glob("*/*/*.trans.txt"))
        seen = []
        for trans in trans_files:
            spk, chapter = trans.parent.parent.name, trans.parent.name
            assert trans.name == f"{spk}-{chapter}.trans.txt"
            lines = trans.read_text().splitlines()
            for line in lines:
                assert re.fullmatch(rf"{spk}-{chapter}-\d{{4}} [A-Z']+( [A-Z']+)*", line), line
            table = read_trans_file(trans)
            align = read_word_alignments([trans.with_name(f"{spk}-{chapter}.words.json")])
            assert list(table) == list(align)
            for uid, text in table.items():
                words = align[uid]
                assert [w for w, _, _ in words] == text.split()
                info = sf.info(str(trans.with_name(f"{uid}.flac")))
                assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
                assert minicorpus.MIN_SECONDS <= info.duration <= minicorpus.MAX_SECONDS
                starts = [s for _, s, _ in words]
                assert starts == sorted(starts)
                assert all(0 <= s < e <= info.duration + 1e-3 for _, s, e in words)
                prompt = prompt_words(words, 3.0).split()  # the one prompt-word rule (ends within 3 s)
                assert len(prompt) >= 3 and len(prompt) < len(words)
            seen += list(table)
        assert sorted(seen) == sorted(f.stem for f in flacs)
    summary = minicorpus.corpus_summary(tiny)
    assert [r["utterances"] for r in summary] == [counts[s] for s in minicorpus.SPLITS]
    assert (tiny / "SPEAKERS.TXT").read_text().count("espeak-ng") == len(SPEAKERS)


def test_test_speakers_and_sentences_are_held_out(tiny):
    speakers = {split: {p.name for p in (tiny / split).iterdir()} for split in minicorpus.SPLITS}
    assert len(speakers["train"]) >= 8 and len(speakers["test"]) == 2
    assert not speakers["test"] & (speakers["train"] | speakers["valid"])
    variant = {str(s.id): s.voice.split("+")[1] for s in SPEAKERS}
    assert not {variant[s] for s in speakers["test"]} & {variant[s] for s in speakers["train"]}
    texts = {split: {t for f in (tiny / split).rglob("*.trans.txt")
                     for t in read_trans_file(f).values()} for split in minicorpus.SPLITS}
    assert not texts["test"] & texts["train"]
    # test_seen: held-out sentences in the training voices
    assert speakers["test_seen"] <= speakers["train"]
    assert not texts["test_seen"] & texts["train"]


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    twin = ensure_mini_corpus(tmp_path / "twin", size="tiny", seed=7, workers=2, progress=False)
    assert _tree_hash(twin) == _tree_hash(tiny)
    other = ensure_mini_corpus(tmp_path / "other", size="tiny", seed=8, progress=False)
    assert _tree_hash(other) != _tree_hash(tiny)


def test_cache_hit_is_fast_and_writes_nothing(tiny):
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    start = time.perf_counter()
    ensure_mini_corpus(tiny, size="tiny", seed=7, progress=False)
    assert time.perf_counter() - start < 0.5
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before


def test_other_config_on_same_root_is_refused(tiny):
    with pytest.raises(ValueError, match="seed=7"):
        ensure_mini_corpus(tiny, size="tiny", seed=8, progress=False)
    with pytest.raises(ValueError, match="unknown corpus size 'huge'"):
        ensure_mini_corpus(tiny, size="huge")


def _as_version_2(root):
    """What generator version 2 left: no test_seen split, no phoneme timings, its own marker."""
    shutil.rmtree(root / "test_seen")
    for path in root.rglob("*.phones.json"):
        path.unlink()
    record = json.loads((root / minicorpus.MARKER).read_text())
    record["config"]["version"] = 2
    record["config"]["counts"] = {k: v for k, v in record["config"]["counts"].items() if k != "test_seen"}
    record["config_hash"] = "from-version-2"
    (root / minicorpus.MARKER).write_text(json.dumps(record))


def test_a_version_2_corpus_is_upgraded_in_place_keeping_its_audio(tiny, tmp_path, caplog):
    old = tmp_path / "old"
    shutil.copytree(tiny, old)
    _as_version_2(old)
    kept = sorted(old.glob("train/*/*/*.flac"))[0]
    mtime = kept.stat().st_mtime_ns
    with caplog.at_level("WARNING"):
        assert ensure_mini_corpus(old, size="tiny", seed=7, progress=False) == old
    assert "generator version 2" in caplog.text and "upgrading it in place" in caplog.text
    assert kept.stat().st_mtime_ns == mtime  # the audio was kept, not rewritten
    assert _tree_hash(old) == _tree_hash(tiny)  # and the result is the current corpus, byte for byte


def test_a_corpus_of_other_audio_is_refused_with_the_fix(tiny, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(tiny, old)
    record = json.loads((old / minicorpus.MARKER).read_text())
    record["config"]["version"] = 1
    (old / minicorpus.MARKER).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="generator version 1 .*delete that folder"):
        ensure_mini_corpus(old, size="tiny", seed=7, progress=False)
    with pytest.raises(ValueError, match="seed=7"):  # another seed on the current corpus is still refused
        ensure_mini_corpus(tiny, size="tiny", seed=8, progress=False)


def test_phoneme_timings_cover_the_audio_in_order(tiny):
    for phones_file in sorted(tiny.glob("*/*/*/*.phones.json")):
        table = read_word_alignments([phones_file])
        words = read_word_alignments([phones_file.with_name(phones_file.name.replace(".phones.", ".words."))])
        assert list(table) == list(words)
        for uid, phones in table.items():
            duration = sf.info(str(phones_file.with_name(f"{uid}.flac"))).duration
            assert len(phones) > 2 * len(words[uid])  # several phonemes per word
            starts = [a for _, a, _ in phones]
            assert starts == sorted(starts) and starts[0] < 0.2
            assert all(b == pytest.approx(c, abs=2e-3) for (_, _, b), (_, c, _) in zip(phones, phones[1:]))
            assert phones[-1][2] == pytest.approx(duration, abs=2e-3)
            # the phonemes of a word are spoken while it is: espeak-ng's word event and its first phoneme
            # event come within a few 10 ms frames of each other (measured up to 52 ms)
            assert abs(words[uid][0][1] - starts[0]) < 0.08


def test_synthesis_reports_phonemes_in_the_voice_s_own_inventory():
    us = espeak.synthesize("The farmer walked home.", voice="en-us+m1")
    scots = espeak.synthesize("The farmer walked home.", voice="en-gb-scotland+m2")
    names = [p.phoneme for p in us.phonemes]
    assert names[:3] == ["D", "@2", "f"] and "'A@" in names  # stressed vowel of "farmer"
    assert [p.phoneme for p in scots.phonemes] != names  # another accent, other phonemes
    assert all(p.start <= p.end for p in us.phonemes) and us.phonemes[-1].end == pytest.approx(us.duration)


def test_interrupted_run_resumes(tiny, tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(tiny, copy)
    (copy / minicorpus.MARKER).unlink()
    trans = sorted(copy.glob("train/*/*/*.trans.txt"))[0]
    trans.unlink()  # chapter left unfinished
    next(trans.parent.glob("*.flac")).unlink()  # one audio file not written yet
    kept = sorted(copy.glob("valid/*/*/*.flac"))[0]
    mtime = kept.stat().st_mtime_ns
    ensure_mini_corpus(copy, size="tiny", seed=7, progress=False)
    assert kept.stat().st_mtime_ns == mtime
    assert _tree_hash(copy) == _tree_hash(tiny)


def test_text_corpus(tiny, tmp_path):
    path = ensure_text_corpus(tmp_path / "lm.txt", n_sentences=3000, seed=7, progress=False)
    lines = path.read_text().splitlines()
    assert len(lines) == 3000 and all(re.fullmatch(r"[A-Z' ]+", line) for line in lines)
    test_texts = {t for f in (tiny / "test").rglob("*.trans.txt") for t in read_trans_file(f).values()}
    assert not test_texts & set(lines)
    mtime = path.stat().st_mtime_ns
    assert ensure_text_corpus(path, n_sentences=3000, seed=7, progress=False) == path
    assert path.stat().st_mtime_ns == mtime
    written = ensure_text_corpus(tmp_path / "w.txt", n_sentences=10, seed=7, style="written",
                                 progress=False).read_text().splitlines()
    assert written[0][0].isupper() and written[0].endswith((".", "!", "?"))


def test_one_prompt_word_rule():
    # a word is in the prompt when it ends within it: B (2.6-3.6 s) is cut by a 3 s prompt and is not
    words = [("A", 0.0, 1.0), ("B", 2.6, 3.6), ("C", 3.6, 4.0)]
    assert prompt_words(words, 3.0) == "a" and prompt_words(words, 10.0) == "a b c"
    assert prompt_words([("A", 0.0, 3.0)], 3.0) == "a"  # ending exactly at the cut counts


# -- tts component -------------------------------------------------------------------------
def test_espeak_tts_component():
    from spectron_kit.evaluation import tts

    engine = tts.EspeakTTS(voice="en-gb+m3", rate=180)
    assert "en-us" in engine.voices and "en-us+f3" in engine.voices
    wav, sr = engine.synthesize("What color is the sky?")
    assert sr == 16000 and wav.dtype == np.float32 and len(wav) > sr // 2
    wav2, _ = engine.synthesize("What color is the sky?", voice="en-us+f2")
    assert not np.array_equal(wav[:4000], wav2[:4000])
    with pytest.raises(ValueError, match="rate=5"):
        tts.EspeakTTS(rate=5)
    registered = {}
    tts.register_tts(register=lambda name, factory, description="": registered.update({name: factory}))
    assert registered == {"espeak": tts.EspeakTTS}


def test_marker_records_stats(tiny):
    record = json.loads((tiny / minicorpus.MARKER).read_text())
    assert record["config"]["seed"] == 7
    assert set(record["splits"]) == set(minicorpus.SPLITS)


def test_the_mini_corpus_manifest_uses_the_same_prompt_word_rule(tiny, tmp_path):
    import importlib.util

    from spectron_kit.data.manifest import read_manifest

    path = Path(__file__).resolve().parents[2] / "recipes" / "LibriLight" / "librilight_prepare.py"
    spec = importlib.util.spec_from_file_location("librilight_prepare_mini", path)
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    out = prep.prepare_librispeech(tiny, tmp_path / "save", splits=["valid"], progress=False)
    rows = read_manifest(out["valid"])
    align = read_word_alignments(sorted((tiny / "valid").rglob("*.words.json")))
    assert rows and all(r["prompt_text"] == prompt_words(align[r["id"]], 3.0) for r in rows)
    assert all(0 < len(r["prompt_text"].split()) < len(r["text"].split()) for r in rows)
