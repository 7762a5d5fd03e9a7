"""recipes/LibriLight/evaluate.py end to end on a tiny bundle and a tiny LibriSpeech-layout folder.

The model is an untrained tiny Spectron (its outputs are noise; the test
checks the protocol and the report, not quality). Audio comes from espeak-ng
when it is available, otherwise from tone sweeps. The text-LM scorer is a
real ``hf`` scorer on a tiny random GPT-2; transcriber, speaker encoder and
MOS predictor are fast stand-ins (``eval_fakes.py``) passed as YAML overrides.
"""
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from types import SimpleNamespace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from spectron_kit import build
from spectron_kit.evaluation.continuation import (aggregate_records, check_protocol, frames_that_fit,
                                                  reference_prompt_words, select_rows, split_model_text,
                                                  spoken_words)
from spectron_kit.evaluation.scorers import choose_other_speaker
from spectron_kit.evaluation.metrics import normalize_text
from spectron_kit.model import SpectronModel
from spectron_kit.recipe import RecipeConfigError

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SPEC = {"n_mels": 40, "n_fft": 512, "win_length": 400, "hop_length": 160}

#: (speaker, chapter, voice, sentence); the last one is too short for a 3 s prompt
UTTERANCES = [
    ("11", "100", "en-us", "The old man walked slowly down the long dusty road toward the quiet little village "
                           "by the sea."),
    ("11", "100", "en-us", "Then the cat sat on a warm mat near the open window and went to sleep at home "
                           "for hours."),
    ("22", "200", "en+m3", "A young woman opened the heavy wooden door and looked out at the grey morning sky "
                           "above the hills."),
    ("22", "200", "en+m3", "The children ran across the green field and then they went back home again "
                           "before the rain came."),
    ("22", "200", "en+m3", "Yes indeed."),
]


# -- fixtures: data, tokenizer, scoring LM, model bundle ------------------------------------------

def _speech(text, voice, seed):
    """espeak-ng speech, or a tone sweep of a similar length when espeak-ng is unavailable."""
    try:
        from spectron_kit.data import espeak

        out = espeak.synthesize(text, voice=voice, seed=seed)
        return out.wav, [(w.word, w.start, w.end) for w in out.words]
    except Exception:  # no espeak-ng library here: tones keep the test meaningful for the protocol
        seconds = 0.33 * len(text.split())
        t = np.arange(int(seconds * 16000)) / 16000
        f0 = 180.0 + 60 * seed
        wav = 0.3 * np.sin(2 * np.pi * (f0 * t + 40 * t ** 2)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        step = seconds / len(text.split())
        return wav.astype(np.float32), [(w, i * step, (i + 1) * step) for i, w in enumerate(text.split())]


def make_test_folder(root):
    """A LibriSpeech-layout split with .trans.txt files and, for speaker 11, word alignments."""
    split = Path(root) / "LibriSpeech" / "test-clean"
    chapters = {}
    for n, (spk, chap, voice, text) in enumerate(UTTERANCES):
        folder = split / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        utt = f"{spk}-{chap}-{n:04d}"
        wav, words = _speech(text, voice, seed=n)
        sf.write(folder / f"{utt}.flac", wav, 16000, subtype="PCM_16")
        trans, align = chapters.setdefault((spk, chap), ([], {}))
        trans.append(f"{utt} {re.sub(r'[^A-Za-z ]', '', text).upper()}")
        align[utt] = [[w.upper(), s, e] for w, s, e in words]
    for (spk, chap), (trans, align) in chapters.items():
        folder = split / spk / chap
        (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(trans) + "\n")
        if spk == "11":
            (folder / f"{spk}-{chap}.words.json").write_text(json.dumps(align))
    return split


def make_tokenizer(directory):
    """A word-level tokenizer over the test sentences (saved as an HF fast tokenizer)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w.lower() for *_, text in UTTERANCES for w in re.findall(r"[A-Za-z']+", text)}
                   | set("the cat sat on a mat and then went home".split()))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(directory)
    return fast


def make_scoring_lm(directory, tokenizer_dir):
    """A tiny random GPT-2 text LM with the word-level tokenizer (the lm_scorer's source)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=128,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def make_bundle(directory, tokenizer_dir):
    """A tiny untrained Spectron with 3 s prompts, saved as an inference bundle."""
    torch.manual_seed(0)
    model = SpectronModel(
        frontend=build("frontend", "log_mel", spec=SPEC),
        encoder=build("encoder", "conformer", n_mels=40, d_model=32, num_layers=1, nhead=2, d_ffn=64,
                      kernel_size=7, dropout=0.0, hop_seconds=0.01),
        lm=build("lm", "hf", config={"model_type": "gpt2", "n_embd": 48, "n_layer": 1, "n_head": 2,
                                     "n_positions": 1024}, tokenizer=str(tokenizer_dir)),
        prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim, bottleneck=32),
        postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim, hidden=64),
        vocoder=build("vocoder", "griffin_lim", spec=SPEC, n_iter=4),
        prompt_seconds=3.0, max_text_tokens=24, max_seconds=2.0)
    model.save_pretrained(directory)
    return directory


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag in ("audio", "img", "source"):
            self.sources += [v for k, v in attrs if k == "src"]


# -- the recipe, end to end ---------------------------------------------------------------------

def test_evaluate_recipe_end_to_end(tmp_path):
    test_folder = make_test_folder(tmp_path / "data")
    make_tokenizer(tmp_path / "tok")
    lm_dir = make_scoring_lm(tmp_path / "scoring_lm", tmp_path / "tok")
    bundle = make_bundle(tmp_path / "bundle", tmp_path / "tok")
    out = tmp_path / "eval"
    cmd = [sys.executable, str(REPO / "recipes/LibriLight/evaluate.py"),
           str(REPO / "recipes/LibriLight/hparams/evaluate.yaml"),
           f"--model_dir={bundle}", f"--test_folder={test_folder}", f"--lm_scorer_source={lm_dir}",
           f"--output_folder={out}", "--batch_size=3", "--n_resamples=200", "--noprogressbar", "--do_sample=True",
           "--max_continuation_seconds=1.2",
           "--transcriber=!new:eval_fakes.FakeTranscriber",
           "--speaker_encoder=!new:eval_fakes.FakeSpeakerEncoder",
           "--mos_predictor=!new:eval_fakes.FakeMOSPredictor"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(REPO), os.environ.get("PYTHONPATH", "")]),
           "SPECTRON_KIT_LOAD_PLUGINS": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["rows"] == 5 and results["counts"]["too_short"] == 1
    assert results["counts"]["evaluated"] == 4
    assert results["counts"]["prompt_text_from_alignments"] == 2  # speaker 11 has word alignments
    agg = results["aggregates"]
    for key in ("log_perplexity", "perplexity", "mean_log_perplexity", "mean_perplexity",
                "speaker_sim_generated", "speaker_sim_reference", "speaker_sim_other_speaker",
                "mos_generated", "mos_reference", "prompt_wer", "text_speech_wer", "frames_per_second",
                "real_time_factor"):
        entry = agg[key]
        assert entry["low"] - 1e-9 <= entry["value"] <= entry["high"] + 1e-9, (key, entry)
        assert entry["n"] >= 1
    assert math.isclose(agg["perplexity"]["value"], math.exp(agg["log_perplexity"]["value"]), rel_tol=1e-9)
    assert agg["mos_generated"]["label"].startswith("predicted MOS")
    # "reference" length rule: as many frames as the true continuation, here cut to 1.2 s = 120 frames
    assert results["counts"]["truncated"] == 4
    for rec in results["records"]:
        assert rec["generated_frames"] == rec["reference_frames"] == 120 and rec["reference_truncated"]
        assert rec["other_speaker_id"] is not None
        assert rec["other_speaker_id"].split("-")[0] != rec["speaker"]
        words = normalize_text(rec["model_text"]).split()
        assert words == (rec["model_prompt_transcript"] + " " + rec["model_continuation_text"]).split()
    # every speech metric on the ceilings (a)-(c), the generation (d) and the floor, same utterances
    speech = results["speech"]
    assert list(speech) == ["reference", "vocoded", "teacher_forced", "generated", "flat", "other_speaker"]
    for cond in ("reference", "vocoded", "teacher_forced", "generated", "flat"):
        assert {"wer", "perplexity", "speaker_sim", "mos"} <= set(speech[cond]), cond
        assert all(e["n"] == 4 for key, e in speech[cond].items() if key not in ("wer", "perplexity")), cond
        # empty ASR transcripts have no perplexity: left out and counted in the note
        ppl = speech[cond]["perplexity"]
        assert ppl["n"] + (int(ppl["note"].split()[0]) if ppl["note"] else 0) == 4, cond
    assert set(speech["other_speaker"]) == {"speaker_sim"}  # the floor of speaker similarity only
    assert speech["other_speaker"]["speaker_sim"]["value"] == pytest.approx(agg["speaker_sim_other_speaker"]["value"])
    # the scorers' per-condition values are the paper view's values (one computation, two views)
    assert speech["generated"]["perplexity"]["value"] == pytest.approx(agg["perplexity"]["value"])
    assert speech["generated"]["wer"]["value"] == pytest.approx(agg["text_speech_wer"]["value"])
    assert speech["generated"]["mos"]["value"] == pytest.approx(agg["mos_generated"]["value"])
    assert speech["vocoded"]["frame_l1"]["value"] == 0.0 and "frame_l1" not in speech["reference"]
    assert [s["name"] for s in results["config"]["scorers"]] == [
        "asr_wer", "asr_perplexity", "speaker_similarity", "predicted_mos", "frame_distance"]
    for rec in results["records"]:
        conds = rec["speech"]
        assert conds["generated"]["wer"] == rec["text_speech_wer"]
        assert conds["generated"]["expected"] == rec["model_continuation_text"]
        assert conds["reference"]["expected"] == rec["reference_continuation_text"]
        assert conds["reference"]["speaker_sim"] == rec["speaker_sim_reference"]
        assert conds["reference"]["mos"] == rec["mos_reference"]
        # cut at 1.2 s: only the words whose middle lies before 3.0 + 1.2 s remain
        assert set(rec["reference_continuation_text"].split()) <= set(rec["reference_text"].split())
        assert all(abs(conds[c]["seconds"] - 1.19) < 0.02 for c in ("vocoded", "teacher_forced", "flat"))
    assert results["setup"]["test_set"] == str(test_folder)
    assert results["config"]["seed"] == 1234 and results["hardware"]["cpu_count"]

    md = (out / "results.md").read_text()
    assert "| metric | value | 95% CI | n |" in md and "126.08" in md and "Setup difference" in md
    assert "4 reference continuations were longer than the 1.2 s limit (max_continuation_seconds" in md
    assert "## Speech: ceilings, generation and floors" in md and "(c) model, teacher-forced" in md
    assert "| floor: another speaker's reference continuation (speaker similarity) | - | - |" in md
    page = (out / "samples.html").read_text()
    parser = _Sources()
    parser.feed(page)
    assert len(parser.sources) == 4 * 7  # prompt + 5 conditions + 1 spectrogram per utterance
    from urllib.parse import unquote
    for src in parser.sources:
        assert not os.path.isabs(src) and (out / unquote(src)).is_file(), src
    assert (out / "hyperparams.yaml").is_file() and (out / "save" / "test-clean.csv").is_file()


class ToySeconds:
    """A metric added from a test: seconds of audio of every condition."""

    label = "seconds of audio"
    better = ""

    def score(self, batch):
        return [{cond: len(batch.audio[cond][i]) / batch.sample_rate for cond in batch.conditions}
                for i in range(len(batch.rows))]


def test_a_registered_scorer_joins_with_one_yaml_line(tmp_path, monkeypatch):
    from spectron_kit.hookspecs import hookimpl
    from spectron_kit.registry import get_registry

    class Plugin:
        @hookimpl
        def register_scorers(self, register):
            register("toy_seconds", ToySeconds, description="test")

    get_registry().register_plugin(Plugin(), name="toy-scorer")
    monkeypatch.syspath_prepend(str(HERE))  # eval_fakes
    test_folder = make_test_folder(tmp_path / "data")
    make_tokenizer(tmp_path / "tok")
    lm_dir = make_scoring_lm(tmp_path / "scoring_lm", tmp_path / "tok")
    bundle = make_bundle(tmp_path / "bundle", tmp_path / "tok")
    spec = importlib.util.spec_from_file_location("librilight_evaluate", REPO / "recipes/LibriLight/evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    out = tmp_path / "eval"
    monkeypatch.chdir(tmp_path)
    evaluate.main([str(REPO / "recipes/LibriLight/hparams/evaluate.yaml"), f"--model_dir={bundle}",
                   f"--test_folder={test_folder}", f"--lm_scorer_source={lm_dir}", f"--output_folder={out}",
                   "--batch_size=4", "--n_resamples=100", "--noprogressbar", "--max_continuation_seconds=1.2",
                   "--num_samples=0", "--scorers=[asr_wer,frame_distance,toy_seconds]",
                   "--transcriber=!new:eval_fakes.FakeTranscriber",
                   "--speaker_encoder=!new:eval_fakes.FakeSpeakerEncoder",
                   "--mos_predictor=!new:eval_fakes.FakeMOSPredictor"])
    results = json.loads((out / "results.json").read_text())
    speech, records = results["speech"], results["records"]
    # the toy's aggregate is the mean of what the protocol measured itself, per condition
    for cond in ("reference", "generated", "flat"):
        expected = np.mean([r["speech"][cond]["seconds"] for r in records])
        assert speech[cond]["toy_seconds"]["value"] == pytest.approx(expected)
        assert speech[cond]["toy_seconds"]["n"] == len(records)
        assert all("asr" in r["speech"][cond] for r in records)  # a scorer that needs the transcriber got it
    assert speech["vocoded"]["frame_l1"]["value"] == 0.0 and "frame_l1" not in speech["reference"]
    assert speech["flat"]["frame_l1"]["value"] > 0 and speech["generated"]["frame_l1"]["value"] > 0
    # only the listed scorers ran: no perplexity, speaker similarity or MOS; their paper rows are left out
    assert all({"perplexity", "speaker_sim", "mos"}.isdisjoint(entries) for entries in speech.values())
    assert "perplexity" not in results["aggregates"] and "mos_generated" not in results["aggregates"]
    md = (out / "results.md").read_text()
    assert "| audio | ASR WER vs the text it should say (lower is better) [95% CI] |" in md
    assert "seconds of audio [95% CI] | n |" in md
    assert results["config"]["components"]["scorers"][2] == "toy_seconds"


def make_ctc_recognizer(directory):
    """A tiny untrained character CTC recogniser for the test features (the frame_ctc_wer scorer's source)."""
    from spectron_kit.ctc import CTCSpeechRecognizer

    torch.manual_seed(1)
    model = CTCSpeechRecognizer(build("frontend", "log_mel", spec=SPEC),
                                build("encoder", "conformer", n_mels=40, d_model=32, num_layers=1, nhead=2,
                                      d_ffn=64, kernel_size=7, dropout=0.0, hop_seconds=0.01))
    with torch.no_grad():  # a head that writes letters and spaces, so transcripts are not empty
        model.head.bias.copy_(torch.linspace(-1.0, 1.0, model.head.bias.numel()))
    model.save_pretrained(directory)
    return directory


def test_frames_only_evaluation_of_two_splits_side_by_side(tmp_path, monkeypatch):
    """The in-domain CTC yardstick: no vocoder, no ASR model; two splits, one table."""
    import jiwer

    monkeypatch.syspath_prepend(str(HERE))
    data = make_test_folder(tmp_path / "data")
    seen = data.parent / "test-seen"
    import shutil

    shutil.copytree(data, seen)
    make_tokenizer(tmp_path / "tok")
    lm_dir = make_scoring_lm(tmp_path / "scoring_lm", tmp_path / "tok")
    bundle = make_bundle(tmp_path / "bundle", tmp_path / "tok")
    ctc = make_ctc_recognizer(tmp_path / "ctc")
    spec = importlib.util.spec_from_file_location("librilight_evaluate", REPO / "recipes/LibriLight/evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    out = tmp_path / "eval"
    monkeypatch.chdir(tmp_path)
    results, paths = evaluate.main([
        str(REPO / "recipes/LibriLight/hparams/evaluate.yaml"), f"--model_dir={bundle}",
        f"--test_folder=[{seen},{data}]", f"--lm_scorer_source={lm_dir}", f"--output_folder={out}",
        f"--frame_ctc_source={ctc}", "--scorers=[frame_distance]", "--batch_size=4", "--n_resamples=100",
        "--noprogressbar", "--max_continuation_seconds=1.2", "--num_samples=1",
        "--transcriber=!new:eval_fakes.FakeTranscriber", "--speaker_encoder=!new:eval_fakes.FakeSpeakerEncoder",
        "--mos_predictor=!new:eval_fakes.FakeMOSPredictor"])
    assert list(results) == ["test-seen", "test-clean"]
    for name, result in results.items():
        speech = json.loads((out / name / "results.json").read_text())["speech"]
        # frames only: the conditions made of frames, no audio condition and no vocoded file
        assert set(speech) == {"vocoded", "teacher_forced", "generated", "flat"}
        assert not [p for p in (out / name / "samples").glob("*.wav") if not p.name.endswith("_prompt.wav")]
        edits = words = 0
        for rec in result["records"]:
            for cond in ("vocoded", "generated"):
                got = rec["speech"][cond]
                expected = rec["model_continuation_text"] if cond == "generated" else rec["reference_continuation_text"]
                assert got["frame_wer_ref_words"] == len(expected.split())
                if expected and cond == "vocoded":  # the corpus value is a ratio of sums, as jiwer counts it
                    measure = jiwer.process_words(expected, got["frame_asr"] or "<empty>")
                    edits += measure.substitutions + measure.deletions + measure.insertions
                    words += len(expected.split())
        assert speech["vocoded"]["frame_wer"]["value"] == pytest.approx(edits / words)
    table = paths["splits"].read_text()
    assert "| metric | audio | test-seen | test-clean |" in table
    assert "in-domain CTC WER of the frames" in table and "| utterances | | 4 | 4 |" in table


def test_scorers_fail_early_with_one_line(tmp_path):
    from spectron_kit.evaluation.scorers import build_scorers, check_scorers

    with pytest.raises(ValueError, match="scorer 'asr_wer' needs a transcriber; set `transcriber`"):
        build_scorers(["asr_wer"])
    with pytest.raises(ValueError, match="scorer 'frame_distance' takes no option 'source'"):
        build_scorers(["frame_distance"], options={"frame_distance": {"source": "x"}})
    with pytest.raises(ValueError, match="set frame_ctc_source"):
        build_scorers(["frame_ctc_wer"], options={"frame_ctc_wer": {"source": None}})

    class Clash:
        key = "wer"

        def score(self, batch):
            return []

    with pytest.raises(ValueError, match="both write 'wer'; give one another `key`"):
        check_scorers(build_scorers(["asr_wer"], transcriber=object()) + [Clash()])


def test_unknown_override_names_the_key(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "recipes/LibriLight/evaluate.py"),
                           str(REPO / "recipes/LibriLight/hparams/evaluate.yaml"), "--model_dir=x",
                           "--test_folder=y", "--lm_scorer_source=z", "--topp=0.9"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode != 0
    assert "unknown override --topp" in proc.stderr and "--top_p" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_overrides_rejects_wrong_types():
    spec = importlib.util.spec_from_file_location("librilight_evaluate", REPO / "recipes/LibriLight/evaluate.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    yaml_file = REPO / "recipes/LibriLight/hparams/evaluate.yaml"
    required = "model_dir: b\ntest_folder: t\nlm_scorer_source: gpt2\n"
    assert recipe.check_overrides(yaml_file, required + "num_utterances: 5\nlength_rule: fixed") == {
        "model_dir": "b", "test_folder": "t", "lm_scorer_source": "gpt2", "num_utterances": 5,
        "length_rule": "fixed"}
    with pytest.raises(RecipeConfigError, match="length_rule='longest' is invalid"):
        recipe.check_overrides(yaml_file, required + "length_rule: longest")
    with pytest.raises(RecipeConfigError, match="--batch_size='four' is a str but batch_size takes a int"):
        recipe.check_overrides(yaml_file, required + "batch_size: four")
    with pytest.raises(RecipeConfigError, match="unknown override --num_utts; did you mean --num_utterances"):
        recipe.check_overrides(yaml_file, required + "num_utts: 5")
    with pytest.raises(RecipeConfigError, match="evaluate.yaml needs test_folder: pass --test_folder=..."):
        recipe.check_overrides(yaml_file, "model_dir: b\nlm_scorer_source: gpt2")
    # a whole component swapped with a tagged value passes through untouched
    tagged = "transcriber: !apply:spectron_kit.build {kind: transcriber, name: hf_asr, source: my/asr}"
    assert recipe.check_overrides(yaml_file, required + tagged)["transcriber"] == tagged.split(": ", 1)[1]


# -- continuation helpers against hand-computed cases -------------------------------------------

def test_reference_prompt_words_prefers_alignments_then_proportional_split():
    row = {"text": "one two three four five six seven eight", "duration": 8.0}
    assert reference_prompt_words(row, 3.0) == (["one", "two", "three"], "proportional")
    # 7 words over 5 s with a 3 s prompt: round(7 * 3 / 5) = round(4.2) = 4
    row = {"text": "One, two three four five six seven.", "duration": 5.0}
    assert reference_prompt_words(row, 3.0) == (["one", "two", "three", "four"], "proportional")
    row["prompt_text"] = "one two"
    assert reference_prompt_words(row, 3.0) == (["one", "two"], "prompt_text")
    assert reference_prompt_words({"text": "", "duration": 5.0}, 3.0) == ([], "proportional")


def test_split_model_text_takes_prompt_words_first():
    assert split_model_text("The cat sat. On the mat!", 3) == (["the", "cat", "sat"], ["on", "the", "mat"])
    assert split_model_text("", 2) == ([], [])
    assert split_model_text("a b", 0) == ([], ["a", "b"])


def test_other_speaker_choice_is_seeded_and_never_the_same_speaker():
    speakers = ["a", "a", "b", "c", "", "c"]
    picks = choose_other_speaker(speakers, seed=7)
    assert picks == choose_other_speaker(speakers, seed=7)
    assert picks[4] is None  # unknown speaker: no baseline
    for i, j in enumerate(picks):
        if j is not None:
            assert speakers[j] not in (speakers[i], "")
    # only one other-speaker item exists: it must be chosen
    picks = choose_other_speaker(["x", "x", "y"], seed=123)
    assert picks[:2] == [2, 2] and picks[2] in (0, 1)
    assert choose_other_speaker(["x", "x"]) == [None, None]


def test_select_rows_skips_short_and_subsamples_reproducibly():
    rows = [{"id": str(i), "duration": d} for i, d in enumerate([3.4, 3.5, 6.0, 9.0, 2.0, 7.0])]
    kept, short = select_rows(rows, 3.0)
    assert [r["id"] for r in kept] == ["1", "2", "3", "5"] and short == 2
    a, _ = select_rows(rows, 3.0, num_utterances=2, seed=1)
    b, _ = select_rows(rows, 3.0, num_utterances=2, seed=1)
    assert [r["id"] for r in a] == [r["id"] for r in b] and len(a) == 2
    assert int(a[0]["id"]) < int(a[1]["id"])  # manifest order kept


def test_aggregates_match_hand_computed_values():
    from spectron_kit.evaluation.scorers import AsrPerplexity, AsrWer, SpeakerSimilarity, aggregate_scores

    records = [
        {"lm_nll": 6.0, "lm_tokens": 3, "prompt_wer_edits": 1, "prompt_wer_ref_words": 4,
         "speech": {"generated": {"lm_nll": 6.0, "lm_tokens": 3, "perplexity": math.exp(2.0), "speaker_sim": 0.5,
                                  "wer": None, "wer_edits": 2, "wer_ref_words": 0}}},
        {"lm_nll": 2.0, "lm_tokens": 1, "prompt_wer_edits": 0, "prompt_wer_ref_words": 6,
         "speech": {"generated": {"lm_nll": 2.0, "lm_tokens": 1, "perplexity": math.exp(2.0), "speaker_sim": None,
                                  "wer": 0.5, "wer_edits": 1, "wer_ref_words": 2}}},
    ]
    batches = [{"frames": 100, "frames_s": 2.0, "total_s": 3.0, "audio_s": 1.0}]
    speech = aggregate_scores(records, [AsrWer(None), AsrPerplexity(None, None), SpeakerSimilarity(None)])
    agg = aggregate_records(records, batches, speech)
    assert agg["log_perplexity"]["value"] == pytest.approx(8.0 / 4)
    assert agg["perplexity"]["value"] == pytest.approx(math.exp(8.0 / 4))
    assert agg["mean_log_perplexity"]["value"] == pytest.approx(2.0)
    assert agg["mean_perplexity"]["value"] == pytest.approx(math.exp(2.0))
    assert agg["speaker_sim_generated"]["value"] == 0.5 and agg["speaker_sim_generated"]["n"] == 1
    assert agg["prompt_wer"]["value"] == pytest.approx(0.1)
    assert agg["text_speech_wer"]["value"] == pytest.approx(0.5) and agg["text_speech_wer"]["n"] == 1
    assert agg["text_speech_wer"]["note"] == "1 with no reference words left out"
    assert agg["frames_per_second"]["value"] == 50.0 and agg["real_time_factor"]["value"] == 3.0
    assert "mos_generated" not in agg


def test_a_cut_generation_is_scored_on_the_words_it_spoke_before_the_cut():
    espeak = pytest.importorskip("spectron_kit.data.espeak")
    try:
        said = [p.phoneme for p in espeak.synthesize("saw the white snow and").phonemes]
    except espeak.EspeakError as err:
        pytest.skip(f"espeak-ng unavailable: {err}")
    words = "saw the white snow and then it told its mother".split()
    # the model spoke exactly the phonemes of its first five words (pauses included) when the budget ran out
    assert spoken_words(words, said) == (words[:5], "phonemes")
    s_n = [p for p in said if not p.startswith("_")][:9]  # "saw the white" (7 phonemes) + "s n" of "snow" (3)
    assert spoken_words(words, s_n[:8]) == (words[:3], "phonemes")  # 1 of 3: the middle of "snow" not reached
    assert spoken_words(words, s_n[:9]) == (words[:4], "phonemes")  # 2 of 3: past its middle
    assert spoken_words(words, ["_:"] * 40) == ([], "phonemes")  # pauses say no word
    assert spoken_words([], said) == ([], "phonemes")

    # the aggregate names the cut generations and keeps the WER against the whole text in its own row
    records = [{"model_spoken_source": "phonemes", "model_spoken_text": "a b", "model_continuation_text": "a b c d",
                "speech": {"generated": {"wer": 0.5, "wer_edits": 1, "wer_ref_words": 2, "wer_whole": 0.75,
                                         "wer_whole_edits": 3, "wer_whole_ref_words": 4}}},
               {"model_spoken_source": "whole", "model_spoken_text": "e f", "model_continuation_text": "e f",
                "speech": {"generated": {"wer": 0.0, "wer_edits": 0, "wer_ref_words": 2, "wer_whole": 0.0,
                                         "wer_whole_edits": 0, "wer_whole_ref_words": 2}}}]
    from spectron_kit.evaluation.scorers import AsrWer, aggregate_scores

    agg = aggregate_records(records, speech=aggregate_scores(records, [AsrWer(None)]))
    assert agg["text_speech_wer"]["value"] == pytest.approx(1 / 4)
    assert agg["text_speech_wer"]["note"].startswith("1 generations cut by their budget")
    assert agg["text_speech_wer_whole"]["value"] == pytest.approx(3 / 6) and agg["text_speech_wer_whole"]["n"] == 2


def test_check_protocol_names_the_bad_value():
    check_protocol(prompt_seconds=2, length_rule="stop", do_sample=True, top_k=5)
    with pytest.raises(ValueError, match="prompt_seconds=0 is invalid"):
        check_protocol(prompt_seconds=0)
    with pytest.raises(ValueError, match="needs fixed_seconds"):
        check_protocol(length_rule="fixed", fixed_seconds=None)
    with pytest.raises(ValueError, match="do_sample=1 is invalid"):
        check_protocol(do_sample=1)


def test_frame_budget_fits_the_lm_context():
    def model(n_positions, r=1):
        config = SimpleNamespace(n_positions=n_positions)
        return SimpleNamespace(lm=SimpleNamespace(model=SimpleNamespace(config=config)), max_text_tokens=10, r=r)

    # 100 positions - 30 prefix - <sos> - go frame - 10 text tokens = 58 steps; r frames per step
    assert frames_that_fit(model(100), [30, 90]) == [58, 0]
    assert frames_that_fit(model(100, r=2), [30]) == [116]
    assert frames_that_fit(model(None), [30]) == [10 ** 9]
