"""Data preparation: manifests, Libri-Light cutting, LibriSpeech reading, pseudo-labels."""
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spectron_kit.data import manifest as mf

REPO = Path(__file__).resolve().parents[2]
SR = 16000


def _load(name, relpath):
    spec = importlib.util.spec_from_file_location(name, REPO / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prep = _load("librilight_prepare", "recipes/LibriLight/librilight_prepare.py")
pl = _load("pseudo_label", "tools/pseudo_label.py")


def write_audio(path, seconds, sr=SR, channels=1, seed=0):
    """Low-level noise (deterministic) as 16-bit FLAC/WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    data = np.random.default_rng(seed).uniform(-0.1, 0.1, size=(n, channels)).astype(np.float32)
    sf.write(str(path), data if channels > 1 else data[:, 0], sr, subtype="PCM_16")
    return path


def row_for(path, start=0.0, end=-1.0, utt_id="u"):
    return {"id": utt_id, "path": str(path), "start": start, "end": end,
            "duration": (end - start) if end >= 0 else 0.0}


def approx_spans(rows):
    return [(r["id"], round(r["start"], 6), round(r["end"], 6)) for r in rows]


# ---------------------------------------------------------------------------
# manifest I/O, segments, validation
# ---------------------------------------------------------------------------
def test_manifest_round_trip_keeps_types_quotes_and_header(tmp_path):
    rows = [{"id": "a", "path": str(tmp_path / "a.flac"), "start": 1.25, "end": 7.5,
             "duration": 6.25, "speaker": "100", "book": "2315", "prompt_seconds": 3.0,
             "text": 'hello, "world"', "prompt_text": "hello", "word_times": "0:0.5 0.6:1.2",
             "phone_times": "0:0.1:h 0.1:0.5:@U"},
            {"id": "b", "path": "rel/b.flac", "start": 0, "end": -1, "duration": 4.0}]
    assert mf.write_manifest(rows, tmp_path / "m.csv") == 2
    header = (tmp_path / "m.csv").read_text().splitlines()[0]
    assert header == "id,path,start,end,duration,speaker,book,prompt_seconds,text,prompt_text,word_times,phone_times"
    back = mf.read_manifest(tmp_path / "m.csv")
    assert back[0] == rows[0]
    assert back[1]["path"] == str((tmp_path / "rel" / "b.flac").resolve())  # relative to manifest
    assert back[1]["end"] == -1.0 and back[1]["text"] == "" and back[1]["prompt_seconds"] == 3.0
    assert mf.parse_word_times(back[0]["word_times"], n_words=2) == [(0.0, 0.5), (0.6, 1.2)]
    assert back[1]["word_times"] == "" and mf.parse_word_times(back[1]["word_times"]) is None
    data = mf.to_speechbrain_data(back)
    assert set(data) == {"a", "b"} and data["a"]["duration"] == 6.25


def test_manifest_errors_are_clear(tmp_path):
    with pytest.raises(mf.ManifestError, match="duplicate utterance id 'a'"):
        mf.write_manifest([row_for("x", 0, 1, "a"), row_for("y", 0, 1, "a")], tmp_path / "m.csv")
    with pytest.raises(mf.ManifestError, match="lacks column"):
        mf.write_manifest([{"id": "a", "path": "x"}], tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mf.read_manifest(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("id,path,start,end,duration\na,x.flac,zero,1,1\n")
    with pytest.raises(mf.ManifestError, match="line 2: column 'start' is 'zero'"):
        mf.read_manifest(tmp_path / "bad.csv")
    (tmp_path / "ph.csv").write_text("id,path,start,end,duration\na,$data_root/x.flac,0,1,1\n")
    assert mf.read_manifest(tmp_path / "ph.csv", {"data_root": "/d"})[0]["path"] == "/d/x.flac"


def test_load_segment_reads_exact_frames_mixes_and_resamples(tmp_path):
    ramp = (np.arange(2 * SR) / (4 * SR)).astype(np.float32)  # exact in float32 WAV
    sf.write(str(tmp_path / "ramp.wav"), ramp, SR, subtype="FLOAT")
    wav = mf.load_segment(row_for(tmp_path / "ramp.wav", 0.25, 0.5), target_sr=SR)
    assert wav.dtype == torch.float32 and wav.shape == (4000,)
    assert torch.equal(wav, torch.from_numpy(ramp[4000:8000]))
    assert mf.load_segment(row_for(tmp_path / "ramp.wav", 1.5, -1)).shape == (8000,)

    stereo = np.stack([np.full(22050 * 2, 0.2), np.full(22050 * 2, 0.4)], 1).astype(np.float32)
    sf.write(str(tmp_path / "st.wav"), stereo, 22050, subtype="FLOAT")
    wav = mf.load_segment(row_for(tmp_path / "st.wav", 0.5, 1.5), target_sr=SR)
    assert wav.shape == (SR,)
    assert torch.allclose(wav[100:-100], torch.full((SR - 200,), 0.3), atol=1e-3)  # mixed down

    with pytest.raises(ValueError, match="outside"):
        mf.load_segment(row_for(tmp_path / "ramp.wav", 1.0, 5.0))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mf.load_segment(row_for(tmp_path / "missing.wav", 0, 1))


def test_validate_manifest_counts_every_problem(tmp_path, caplog):
    good = write_audio(tmp_path / "good.flac", 2.0)
    stereo = write_audio(tmp_path / "stereo.flac", 2.0, channels=2)
    slow = write_audio(tmp_path / "slow.flac", 2.0, sr=22050)
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC this is not really flac" * 10)
    # a FLAC cut in half: its header (and soundfile.info) still says 2 s; only decoding finds the damage
    truncated = write_audio(tmp_path / "truncated.flac", 2.0)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    rows = [row_for(good, 0, 1.5, "good"), row_for(good, 0.5, -1, "good_to_end"),
            row_for(stereo, 0, 2, "stereo"), row_for(slow, 0.5, 1.5, "slow"),
            row_for(tmp_path / "gone.flac", 0, 1, "missing"), row_for(corrupt, 0, 1, "corrupt"),
            row_for(good, 1.0, 2.5, "past_end"), row_for(good, 3.0, 3.5, "after_end"),
            row_for(truncated, 0, 1, "truncated")]
    with caplog.at_level(logging.INFO, logger="spectron_kit.data.manifest"):
        kept, report = mf.validate_manifest(rows, target_sr=SR, progress=False)
    assert [r["id"] for r in kept] == ["good", "good_to_end", "stereo", "slow"]
    assert {k: report[k] for k in ("total", "kept", "missing", "unreadable", "undecodable", "out_of_bounds",
                                   "resampled", "mixed_down")} == {
        "total": 9, "kept": 4, "missing": 1, "unreadable": 1, "undecodable": 1, "out_of_bounds": 2,
        "resampled": 1, "mixed_down": 1}
    assert report["examples"]["out_of_bounds"] == [f"past_end ({good})", f"after_end ({good})"]
    log = caplog.text
    for phrase in ("missing: skipped: 1", "unreadable: skipped: 1", "outside the file: skipped: 2",
                   "will be resampled: 1", "mixed down to mono: 1",
                   f"audio data damaged (decoding failed): skipped: 1 (e.g. truncated ({truncated}))"):
        assert phrase in log
    # headers only (for very large corpora): the truncated file passes
    kept, _ = mf.validate_manifest(rows, target_sr=SR, progress=False, decode=False)
    assert "truncated" in [r["id"] for r in kept]


def test_split_prompt_and_filter_for_continuation(caplog):
    assert mf.split_prompt(7.5) == (True, 3.0, 4.5)
    assert mf.split_prompt(4.0, 3.0, 1.0).eligible          # exactly prompt + min
    assert not mf.split_prompt(3.9, 3.0, 1.0).eligible
    assert mf.split_prompt(2.0) == (False, 2.0, 0.0)
    with pytest.raises(ValueError, match="prompt_seconds=0"):
        mf.split_prompt(5.0, prompt_seconds=0)
    with pytest.raises(ValueError, match="duration='x'"):
        mf.split_prompt("x")
    rows = [{"id": str(d), "duration": d, "prompt_seconds": 3.0} for d in (2.0, 4.0, 3.5, 10.0)]
    with caplog.at_level(logging.INFO, logger="spectron_kit.data.manifest"):
        kept, skipped = mf.filter_for_continuation(rows, 3.0, 1.0)
    assert [r["id"] for r in kept] == ["4.0", "10.0"] and skipped == 2
    assert "skipped 2 of 4 utterances too short" in caplog.text
    kept, skipped = mf.filter_for_continuation(rows, prompt_seconds=1.0, min_continuation_seconds=0.5)
    assert skipped == 0


# ---------------------------------------------------------------------------
# Libri-Light
# ---------------------------------------------------------------------------
def test_cut_voice_activity_rules():
    # merge while the span (gaps included) stays <= max; long segment split equally
    spans, short = prep.cut_voice_activity(
        [(0.5, 3.0), (3.5, 6.0), (6.5, 9.5), (10.0, 12.0), (12.5, 24.5)], 4.0, 10.0)
    assert spans == [(0, 0.5, 9.5), (2, 12.5, 18.5), (3, 18.5, 24.5)] and short == 1
    spans, _ = prep.cut_voice_activity([(0.0, 25.0)], 1.0, 10.0)  # 3 pieces of 8.333 s
    assert [k for k, _, _ in spans] == [0, 1, 2]
    assert all(abs((e - s) - 25 / 3) < 1e-9 for _, s, e in spans) and spans[-1][2] == 25.0


def make_librilight(root):
    """Synthetic Libri-Light subset 'small' with one good, one partial and three broken files."""
    small = root / "small"
    a = write_audio(small / "100" / "sea_fairies" / "01_chapter.flac", 25.0, seed=1)
    a.with_suffix(".json").write_text(json.dumps({
        "speaker": "100", "book_meta": {"id": "2315", "title": "Sea Fairies"}, "snr": 9.3,
        "voice_activity": [[0.5, 3.0], [3.5, 6.0], [6.5, 9.5], [10.0, 12.0], [12.5, 24.5],
                           [20.0, 19.0], [24.8, 30.0]]}))
    b = write_audio(small / "200" / "book_b" / "part2.flac", 12.0, seed=2)
    b.with_suffix(".json").write_text(json.dumps({"voice_activity": [[1.0, 6.0], [6.2, 14.0]]}))
    write_audio(small / "300" / "book_c" / "no_json.flac", 5.0)
    corrupt = small / "400" / "book_d" / "corrupt.flac"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"not audio at all")
    corrupt.with_suffix(".json").write_text(json.dumps({"voice_activity": [[0, 5]]}))
    bad = write_audio(small / "500" / "book_e" / "bad_json.flac", 5.0)
    bad.with_suffix(".json").write_text("{voice_activity: oops")
    return root


EXPECTED_LIBRILIGHT = [
    ("100-sea_fairies-01_chapter-0000", 0.5, 9.5),
    ("100-sea_fairies-01_chapter-0002", 12.5, 18.5),
    ("100-sea_fairies-01_chapter-0003", 18.5, 24.5),
    ("200-book_b-part2-0000", 1.0, 6.0),
    ("200-book_b-part2-0001", 6.2, 12.0),   # VAD end 14.0 clipped to the 12 s file
]


def test_prepare_librilight_cuts_along_vad(tmp_path):
    root = make_librilight(tmp_path / "LibriLight")
    out = prep.prepare_librilight(root, tmp_path / "save", ("small",), min_seconds=4.0,
                                  max_seconds=10.0, progress=False)
    assert out == {"small": tmp_path / "save" / "small.csv"}
    rows = mf.read_manifest(out["small"])
    assert approx_spans(rows) == EXPECTED_LIBRILIGHT
    for r in rows:
        assert 4.0 <= r["duration"] <= 10.0
        assert r["duration"] == pytest.approx(r["end"] - r["start"])
        assert r["text"] == "" and r["prompt_seconds"] == 3.0
    assert [(r["speaker"], r["book"]) for r in rows] == [("100", "2315")] * 3 + [("200", "book_b")] * 2
    assert rows[0]["path"] == str((root / "small" / "100" / "sea_fairies" / "01_chapter.flac").resolve())
    record = json.loads((tmp_path / "save" / "small.prep.json").read_text())
    assert record["utterances"] == 5
    assert record["skipped"] == {"no_vad_json": 1, "unreadable_audio": 1, "bad_json": 1,
                                 "bad_vad_segment": 1, "too_short": 2}
    # the cut segments load with the right length
    assert mf.load_segment(rows[4]).shape == (int(round(5.8 * SR)),)


def test_prepare_librilight_transcripts_and_skip(tmp_path, caplog):
    root = make_librilight(tmp_path / "LibriLight")
    labels = tmp_path / "labels.tsv"
    labels.write_text("id\ttext\n100-sea_fairies-01_chapter-0000\tOnce upon  a time\n"
                      "200-book_b-part2-0001\tthe end\n")
    save = tmp_path / "save"
    csv_path = prep.prepare_librilight(root, save, "small", 4.0, 10.0, transcripts=labels,
                                       progress=False)["small"]
    rows = mf.read_manifest(csv_path)
    assert [(r["id"], r["text"]) for r in rows] == [
        ("100-sea_fairies-01_chapter-0000", "once upon a time"), ("200-book_b-part2-0001", "the end")]
    assert json.loads(csv_path.with_suffix(".prep.json").read_text())["skipped"]["no_transcript"] == 3

    # same options: skipped (the file is left as it is)
    stamp = csv_path.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        prep.prepare_librilight(root, save, "small", 4.0, 10.0, transcripts=labels, progress=False)
    assert csv_path.stat().st_mtime_ns == stamp and "skipping" in caplog.text

    # other options: rebuilt; untranscribed kept with empty text
    prep.prepare_librilight(root, save, "small", 4.0, 10.0, transcripts=labels,
                            require_text=False, progress=False)
    rows = mf.read_manifest(csv_path)
    assert len(rows) == 5 and [r["text"] for r in rows].count("") == 3

    # a folder of LibriSpeech-style *.trans.txt files works too
    (tmp_path / "trans" / "x").mkdir(parents=True)
    (tmp_path / "trans" / "x" / "a.trans.txt").write_text("200-book_b-part2-0000 HELLO THERE\n")
    rows = mf.read_manifest(prep.prepare_librilight(root, tmp_path / "save2", "small", 4.0, 10.0,
                                                    transcripts=tmp_path / "trans",
                                                    progress=False)["small"])
    assert [(r["id"], r["text"]) for r in rows] == [("200-book_b-part2-0000", "hello there")]


def test_prepare_librilight_bad_arguments(tmp_path):
    root = make_librilight(tmp_path / "LibriLight")
    with pytest.raises(FileNotFoundError, match="subset 'medium' not found.*found: small"):
        prep.prepare_librilight(root, tmp_path / "s", ("medium",), progress=False)
    with pytest.raises(ValueError, match="min_seconds=30"):
        prep.prepare_librilight(root, tmp_path / "s", min_seconds=30, max_seconds=20)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        prep.prepare_librilight(tmp_path / "nowhere", tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="transcripts"):
        prep.prepare_librilight(root, tmp_path / "s", transcripts=tmp_path / "none.tsv", progress=False)


# ---------------------------------------------------------------------------
# LibriSpeech
# ---------------------------------------------------------------------------
def test_prepare_librispeech_trans_txt_tree_and_alignments(tmp_path):
    split = tmp_path / "LibriSpeech" / "test-clean"
    write_audio(split / "11" / "22" / "11-22-0000.flac", 4.5)
    write_audio(split / "11" / "22" / "11-22-0001.flac", 2.0)
    write_audio(split / "33" / "44" / "33-44-0000.flac", 3.0)  # no transcript
    (split / "11" / "22" / "11-22.trans.txt").write_text(
        "11-22-0000 HELLO WORLD AGAIN\n11-22-0001 GOOD BYE\n")
    (split / "11" / "22" / "11-22.words.json").write_text(json.dumps({
        "11-22-0000": [["HELLO", 0.2, 1.0], ["WORLD", 1.1, 3.0], ["AGAIN", 3.1, 4.0]],
        "11-22-0001": "garbage"}))
    out = prep.prepare_librispeech(tmp_path / "LibriSpeech", tmp_path / "save", progress=False)
    rows = mf.read_manifest(out["test-clean"])
    assert [(r["id"], r["speaker"], r["book"], r["text"], r["prompt_text"]) for r in rows] == [
        ("11-22-0000", "11", "22", "hello world again", "hello world"),
        ("11-22-0001", "11", "22", "good bye", "")]
    assert [(r["start"], r["end"], r["duration"]) for r in rows] == [(0.0, 4.5, 4.5), (0.0, 2.0, 2.0)]
    assert [r["word_times"] for r in rows] == ["0.2:1 1.1:3 3.1:4", ""]
    record = json.loads((tmp_path / "save" / "test-clean.prep.json").read_text())
    assert record["skipped"] == {"no_transcript": 1, "bad_alignment": 1}

    out = prep.prepare_librispeech(tmp_path / "LibriSpeech", tmp_path / "save", alignments=False,
                                   require_text=False, progress=False)
    rows = mf.read_manifest(out["test-clean"])
    assert [r["id"] for r in rows] == ["11-22-0000", "11-22-0001", "33-44-0000"]
    assert all(r["prompt_text"] == "" for r in rows) and rows[2]["text"] == ""


def test_librispeech_layout_takes_wav_as_well_as_flac(tmp_path):
    split = tmp_path / "mine" / "test"
    write_audio(split / "5" / "6" / "5-6-0000.flac", 2.0)
    wav = split / "5" / "6" / "5-6-0001.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    sf.write(wav, np.zeros(SR * 3, dtype="float32"), SR)
    (split / "5" / "6" / "5-6.trans.txt").write_text("5-6-0000 ONE\n5-6-0001 TWO\n")
    out = prep.prepare_librispeech(tmp_path / "mine", tmp_path / "save", splits=["test"], progress=False)
    rows = mf.read_manifest(out["test"])
    assert [(r["id"], Path(r["path"]).suffix, r["duration"]) for r in rows] == [
        ("5-6-0000", ".flac", 2.0), ("5-6-0001", ".wav", 3.0)]
    write_audio(split / "5" / "6" / "5-6-0001.flac", 1.0)  # the same utterance twice
    with pytest.raises(ValueError, match="two audio files for utterance 5-6-0001"):
        prep.prepare_librispeech(tmp_path / "mine", tmp_path / "save2", splits=["test"], progress=False)


def test_old_manifest_without_word_times_reads_as_empty(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("id,path,start,end,duration,speaker,book,prompt_seconds,text,prompt_text\n"
                    "a,/x/a.flac,0.0,5.0,5.0,1,2,3.0,hi there,hi\n")
    row = mf.read_manifest(path)[0]
    assert row["word_times"] == "" and row["text"] == "hi there"


def test_word_times_must_match_the_transcript():
    assert prep.alignment_word_times([["HE", 0.1, 0.3], ["WENT", 0.4, 0.9]], "he went") == "0.1:0.3 0.4:0.9"
    assert prep.alignment_word_times([["HE", 0.1, 0.3]], "he went") == ""
    assert prep.alignment_word_times([["SHE", 0.1, 0.3], ["WENT", 0.4, 0.9]], "he went") == ""
    assert mf.parse_word_times("0:0.5 0.4:0.2") is None          # end before start
    assert mf.parse_word_times("0:0.5 x:1") is None


def test_prepare_librispeech_real_samples(tmp_path, shared_data):
    root = shared_data / "librispeech_samples"
    save = tmp_path / "save"
    from speechbrain.utils.distributed import run_on_main

    run_on_main(prep.prepare, kwargs={"save_folder": save, "librispeech_folder": root,
                                      "librispeech_splits": ("test-other",), "progress": False})
    rows = mf.read_manifest(save / "test-other.csv")
    assert len(rows) == 100
    expected = {}
    for line in (root / "test-other" / "transcripts.txt").read_text().splitlines():
        key, text = line.split(" ", 1)
        expected[key] = text
    assert {r["id"]: r["text"] for r in rows} == expected
    for r in rows:
        info = sf.info(r["path"])
        assert r["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-6)
        assert r["end"] == r["duration"] and r["start"] == 0.0
        assert r["speaker"] == Path(r["path"]).parent.name and r["book"] == r["id"].split("-")[1]
    assert 2.0 <= min(r["duration"] for r in rows) and max(r["duration"] for r in rows) <= 23.0
    assert sum(r["duration"] for r in rows) / 60 == pytest.approx(12.8, abs=0.1)
    kept, report = mf.validate_manifest(rows, progress=False)
    assert len(kept) == 100 and report["resampled"] == report["mixed_down"] == 0


# ---------------------------------------------------------------------------
# pseudo-labels
# ---------------------------------------------------------------------------
class FakeTranscriber:
    """Says how many samples it got; can crash on a chosen call."""

    def __init__(self, crash_on_call=None):
        self.calls = []
        self.crash_on_call = crash_on_call

    def transcribe(self, wavs, sample_rate):
        self.calls.append((len(wavs), sample_rate))
        if self.crash_on_call == len(self.calls):
            raise RuntimeError("simulated crash")
        assert all(isinstance(w, np.ndarray) and w.dtype == np.float32 and w.ndim == 1 for w in wavs)
        return [f"got {len(w)}\tsamples\n" for w in wavs]


def test_pseudo_label_resumes(tmp_path):
    audio = write_audio(tmp_path / "long.flac", 6.0)
    rows = [{"id": f"u{i}", "path": str(audio), "start": float(i), "end": float(i) + 0.5,
             "duration": 0.5} for i in range(5)]
    rows.append({"id": "broken", "path": str(tmp_path / "gone.flac"), "start": 0.0, "end": 1.0,
                 "duration": 1.0})
    mf.write_manifest(rows, tmp_path / "m.csv")
    out = tmp_path / "labels" / "out.tsv"

    crashing = FakeTranscriber(crash_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pl.pseudo_label(tmp_path / "m.csv", out, crashing, batch_size=2, progress=False)
    assert out.read_text() == "u0\tgot 8000 samples\nu1\tgot 8000 samples\n"  # first batch kept

    with open(out, "a") as f:
        f.write("u2\tpartial line from a kill")  # no newline: must be redone
    fake = FakeTranscriber()
    summary = pl.pseudo_label(tmp_path / "m.csv", out, fake, batch_size=2, progress=False)
    assert fake.calls == [(2, SR), (1, SR)]  # u2,u3 then u4 (broken skipped)
    assert {k: summary[k] for k in ("total", "already_done", "transcribed", "failed")} == {
        "total": 6, "already_done": 2, "transcribed": 3, "failed": 1}
    lines = out.read_text().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ["u0", "u1", "u2", "u3", "u4"]
    assert all(ln.endswith("\tgot 8000 samples") for ln in lines)

    again = FakeTranscriber()
    summary = pl.pseudo_label(rows, out, again, batch_size=2, progress=False)
    assert again.calls == [] and summary["transcribed"] == 0 and summary["failed"] == 1

    # the labels feed straight back into preparation
    assert prep.read_transcripts(out)["u3"] == "got 8000 samples"


def test_librilight_pseudo_label_cycle(tmp_path):
    """prepare (no text) -> pseudo_label -> prepare with the labels: ids line up."""
    root = make_librilight(tmp_path / "LibriLight")
    unlabelled = prep.prepare_librilight(root, tmp_path / "save", "small", 4.0, 10.0,
                                         progress=False)["small"]
    labels = tmp_path / "save" / "small_labels.tsv"
    pl.pseudo_label(unlabelled, labels, FakeTranscriber(), batch_size=4, progress=False)
    rows = mf.read_manifest(prep.prepare_librilight(root, tmp_path / "save", "small", 4.0, 10.0,
                                                    transcripts=labels, progress=False)["small"])
    assert approx_spans(rows) == EXPECTED_LIBRILIGHT
    assert [r["text"] for r in rows] == [f"got {round(r['duration'] * SR)} samples" for r in rows]


def test_pseudo_label_checks_its_inputs(tmp_path):
    audio = write_audio(tmp_path / "a.flac", 1.0)
    rows = [row_for(audio, 0, 1, "a")]

    class Wrong:
        def transcribe(self, wavs, sample_rate):
            return []

    with pytest.raises(RuntimeError, match="returned 0 texts for 1 waveforms"):
        pl.pseudo_label(rows, tmp_path / "o.tsv", Wrong(), progress=False)
    with pytest.raises(TypeError, match="no transcribe"):
        pl.pseudo_label(rows, tmp_path / "o.tsv", object(), progress=False)
    with pytest.raises(ValueError, match="batch_size=0"):
        pl.pseudo_label(rows, tmp_path / "o.tsv", FakeTranscriber(), batch_size=0)
    assert pl.parse_kwargs(["model=tiny", "beam=5", "x=1.5"]) == {"model": "tiny", "beam": 5, "x": 1.5}
    with pytest.raises(ValueError, match="not key=value"):
        pl.parse_kwargs(["oops"])


def test_librilight_files_named_like_librispeech_keep_their_id(tmp_path):
    audio = write_audio(tmp_path / "small" / "103" / "1240" / "103-1240-0000.flac", 9.0, seed=3)
    audio.with_suffix(".json").write_text(json.dumps({"voice_activity": [[0.2, 8.8]]}))
    out = prep.prepare_librilight(tmp_path, tmp_path / "out", ["small"], progress=False)
    rows = mf.read_manifest(out["small"])
    assert [r["id"] for r in rows] == ["103-1240-0000-0000"]  # not 103-1240-103-1240-0000-0000


def test_a_row_started_at_a_later_word_keeps_its_audio_words_and_phonemes_together(tmp_path):
    audio = write_audio(tmp_path / "u.wav", 6.0)
    row = {"id": "u", "path": str(audio), "start": 0.5, "end": 5.5, "duration": 5.0, "prompt_seconds": 3.0,
           "text": "anna counted the stars four five six", "prompt_text": "anna counted the stars",
           "word_times": "0:0.4 0.5:1.0 1.1:1.2 1.3:1.8 2.2:2.6 2.9:3.4 3.8:4.3",
           "phone_times": "0:0.4:a 0.5:1.0:k 1.1:1.2:D 1.3:1.8:s 2.2:2.6:f 2.9:3.4:f 3.8:4.3:s"}
    new = mf.start_at_word(row, 4)  # "four": its pause starts at 1.8, the word at 2.2
    assert new["id"] == "u@4" and new["start"] == pytest.approx(0.5 + 2.1) and new["duration"] == pytest.approx(2.9)
    assert new["text"] == "four five six" and new["prompt_text"] == "four five six"
    assert mf.parse_word_times(new["word_times"], n_words=3)[0] == pytest.approx((0.1, 0.5))
    assert [p for p, _, _ in mf.parse_phone_times(new["phone_times"])] == ["f", "f", "s"]
    assert len(mf.load_segment(new)) == round(2.9 * SR)  # the same audio, from the new start
    assert mf.start_at_word(row, 0) == row
    with pytest.raises(ValueError, match="word index 7 is outside row 'u'"):
        mf.start_at_word(row, 7)
    with pytest.raises(ValueError, match="has no word_times"):
        mf.start_at_word(dict(row, word_times=""), 2)


def test_shifted_prompts_replace_a_share_of_the_rows_by_later_starts(tmp_path):
    pipelines = _load("data_pipelines", "recipes/LibriLight/data_pipelines.py")
    audio = write_audio(tmp_path / "u.wav", 6.0)
    aligned = [{"id": f"a{k}", "path": str(audio), "start": 0.0, "end": 6.0, "duration": 6.0, "prompt_seconds": 3.0,
                "text": "one two three four five six", "word_times": "0:0.5 1:1.5 2:2.5 3:3.5 4:4.5 5:5.5"}
               for k in range(40)]
    plain = dict(aligned[0], id="b", word_times="")
    rows = pipelines.with_shifted_prompts(aligned + [plain], 0.5, 3.0, 1.0, seed=0)
    assert len(rows) == 41 and rows[-1] == plain                 # as many rows; no timings: kept whole
    moved = [r for r in rows if "@" in r["id"]]
    assert 10 <= len(moved) <= 30
    assert {r["id"].split("@")[1] for r in moved} <= {"1", "2"}  # words 3.. leave less than 3 s + 1 s
    assert all(r["duration"] >= 4.0 - 0.1 - 1e-6 and r["text"].split()[0] in ("two", "three") for r in moved)
    assert rows == pipelines.with_shifted_prompts(aligned + [plain], 0.5, 3.0, 1.0, seed=0)  # the same draw
    assert pipelines.with_shifted_prompts(aligned, 0.0, 3.0, 1.0, seed=0) == aligned


def test_a_narrow_band_prompt_loses_what_lies_above_4_khz(tmp_path):
    pipelines = _load("data_pipelines", "recipes/LibriLight/data_pipelines.py")
    t = np.arange(4 * SR) / SR
    path = tmp_path / "tones.wav"
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 6000 * t) + 0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32),
             SR, subtype="FLOAT")
    row = {"id": "u", "path": str(path), "start": 0.0, "end": -1.0}

    def band_energy(wav, low, high):
        spectrum = np.abs(np.fft.rfft(wav.numpy())) ** 2
        freqs = np.fft.rfftfreq(len(wav), 1 / SR)
        return spectrum[(freqs >= low) & (freqs < high)].sum()

    full = pipelines.prompt_audio(dict(row, prompt_rate=0), SR, 3 * SR)
    narrow = pipelines.prompt_audio(dict(row, prompt_rate=8000), SR, 3 * SR)
    assert len(full) == len(narrow) == 3 * SR
    assert band_energy(narrow, 5000, 8000) < 1e-4 * band_energy(full, 5000, 8000)   # the 6 kHz tone is gone
    assert band_energy(narrow, 400, 600) == pytest.approx(band_energy(full, 400, 600), rel=0.02)  # 500 Hz kept
