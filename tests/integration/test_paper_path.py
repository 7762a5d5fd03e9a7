"""The paper path on a user's own folder of audio, as the recipe README lists it (issue 23):

voice-activity files (tools/make_vad.py) -> manifest (librilight_prepare.py) -> pseudo-labels
(tools/pseudo_label.py, Whisper) -> spectron.yaml training from "hub" models (a tiny WavLM and a tiny
GPT-2 saved here, loaded through the same ``from_pretrained(id_or_dir)`` code as hub ids) -> evaluate.py.

All audio is generated here with espeak-ng (no shared data), in Libri-Light's layout for training and
LibriSpeech's layout (with ``*.trans.txt``) for the dev and test splits.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "LibriLight"
HERE = Path(__file__).resolve().parent

pytest.importorskip("webrtcvad")
pytest.importorskip("espeakng_loader")
pytest.importorskip("faster_whisper")

SENTENCES = ["the farmer walked home across the quiet field",
             "then the children counted the red apples in the basket",
             "a small dog ran after the yellow ball in the garden",
             "the old man opened the window and looked at the river",
             "my sister painted a blue boat near the little bridge",
             "the teacher read a long story to the happy children"]
VOICES = ["en-us+m1", "en-us+f2", "en-us+m3"]


def speak(text, voice, rate=16000):
    from spectron_kit.audio import resample
    from spectron_kit.data import espeak

    speech = espeak.synthesize(text, voice=voice)
    return resample(np.asarray(speech.wav, np.float32), speech.sample_rate, rate)


def with_pauses(parts, rng, pause=1.2, rate=16000):
    """Sentences with pauses between them and a little noise (no digital silence), as a recording has."""
    silence = np.zeros(int(pause * rate), np.float32)
    audio = np.concatenate([silence] + [x for p in parts for x in (p, silence)])
    return audio + 1e-4 * rng.standard_normal(len(audio)).astype(np.float32)


def make_own_recordings(root, rng):
    """Libri-Light layout without VAD files: ``<root>/small/<speaker>/<book>/<speaker>-<book>-<n>.flac``."""
    for s, voice in enumerate(VOICES):
        for n in range(2):
            first, second = SENTENCES[(2 * s + n) % 6], SENTENCES[(2 * s + n + 3) % 6]
            path = root / "small" / str(100 + s) / "7" / f"{100 + s}-7-{n:04d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, with_pauses([speak(first, voice), speak(second, voice)], rng), 16000)


def make_librispeech_split(root, split, voice, speaker, rng):
    """LibriSpeech layout: two utterances of two sentences each, with their ``*.trans.txt``."""
    folder = root / split / str(speaker) / "1"
    folder.mkdir(parents=True)
    lines = []
    for n in range(2):
        words = f"{SENTENCES[n]} {SENTENCES[n + 2]}"
        audio = np.concatenate([speak(SENTENCES[n], voice), speak(SENTENCES[n + 2], voice)])
        audio = audio + 1e-4 * rng.standard_normal(len(audio)).astype(np.float32)
        uid = f"{speaker}-1-{n:04d}"
        soundfile.write(folder / f"{uid}.flac", audio, 16000)
        lines.append(f"{uid} {words.upper()}")
    (folder / f"{speaker}-1.trans.txt").write_text("\n".join(lines) + "\n")


def make_hub_models(root):
    """A tiny WavLM encoder and a tiny GPT-2 LM with a word tokenizer, saved as hub models are."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (AutoConfig, AutoModel, GPT2Config, GPT2LMHeadModel,
                              PreTrainedTokenizerFast)

    config = AutoConfig.for_model("wavlm", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, conv_dim=[16] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2],
                                  conv_stride=[5, 2, 2, 2, 2, 2, 2], num_conv_pos_embeddings=8,
                                  num_conv_pos_embedding_groups=2, num_buckets=16, max_bucket_distance=64)
    AutoModel.from_config(config).save_pretrained(root / "encoder")
    words = sorted({w for s in SENTENCES for w in s.split()})
    vocab = {"<|endoftext|>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>", unk_token="<unk>")
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=1024,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(root / "lm")
    tokenizer.save_pretrained(root / "lm")
    return root / "encoder", root / "lm"


def run_tool(*args):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_paper_path_from_own_audio_to_evaluation(tmp_path, monkeypatch):
    import jiwer

    sys.path.insert(0, str(RECIPE))
    import train

    from spectron_kit.data.manifest import read_manifest

    rng = np.random.default_rng(0)
    own, librispeech = tmp_path / "LibriLight", tmp_path / "LibriSpeech"
    make_own_recordings(own, rng)
    make_librispeech_split(librispeech, "dev-clean", "en-us+f3", 200, rng)
    make_librispeech_split(librispeech, "test-clean", "en-us+m2", 300, rng)
    encoder, lm = make_hub_models(tmp_path / "hub")

    # 0. voice activity beside the audio
    out = run_tool(REPO / "tools" / "make_vad.py", own / "small")
    assert "written: 6" in out and len(list((own / "small").rglob("*.json"))) == 6
    # 1. a manifest without text, then Whisper pseudo-labels for it
    manifests = tmp_path / "manifests"
    run_tool(RECIPE / "librilight_prepare.py", "--librilight", own, "--subsets", "small", "--save", manifests)
    rows = read_manifest(manifests / "small.csv")
    assert len(rows) == 6 and all(r["id"].startswith(r["speaker"]) for r in rows)
    labels = tmp_path / "librilight_pseudo.tsv"
    run_tool(REPO / "tools" / "pseudo_label.py", manifests / "small.csv", labels, "--transcriber", "whisper")
    pseudo = dict(line.split("\t", 1) for line in labels.read_text().splitlines())
    assert set(pseudo) == {r["id"] for r in rows}
    truth = {f"{100 + s}-7-{n:04d}": f"{SENTENCES[(2 * s + n) % 6]} {SENTENCES[(2 * s + n + 3) % 6]}"
             for s in range(3) for n in range(2)}
    hyps = [" ".join(jiwer.RemovePunctuation()(pseudo[r["id"]]).lower().split()) for r in rows]
    refs = [truth[r["id"].rsplit("-", 1)[0]] for r in rows]
    assert jiwer.wer(refs, hyps) < 0.5  # the labels are the words (Whisper tiny.en on espeak-ng speech)

    # 2. train the paper configuration on them (tiny "hub" models, a few steps)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    summary = train.main([
        str(RECIPE / "hparams" / "spectron.yaml"), f"--data_folder={own}", f"--transcripts={labels}",
        f"--librispeech_folder={librispeech}", "--librilight_subsets=[small]", "--train_splits=[small]",
        f"--encoder_source={encoder}", f"--lm_source={lm}", f"--output_folder={run}", "--number_of_epochs=1",
        "--batch_size=2", "--precision=fp32", "--warmup_steps=1", "--num_samples=1", "--max_text_tokens=48",
        "--spec_augment_freq_masks=0", "--spec_augment_time_masks=0"])
    assert summary["optimizer_steps"] == 3  # 6 utterances, batch 2, one epoch
    config = json.loads((run / "bundle" / "spectron_config.json").read_text())
    assert config["components"]["encoder"]["name"] == "hf" and config["components"]["lm"]["name"] == "hf"
    assert summary["test_prompt_transcript_wer"] is None  # no word alignments in this test split: n/a, not 0.0
    assert (run / "train_log.txt").read_text().startswith("epoch: 1")

    # 3. evaluate the bundle on the LibriSpeech-layout test split
    spec = importlib.util.spec_from_file_location("librilight_evaluate", RECIPE / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    monkeypatch.syspath_prepend(str(HERE))
    results, paths = evaluate.main([
        str(RECIPE / "hparams" / "evaluate.yaml"), f"--model_dir={run / 'bundle'}",
        f"--test_folder={librispeech / 'test-clean'}", f"--lm_scorer_source={lm}",
        f"--output_folder={tmp_path / 'eval'}", "--batch_size=2", "--n_resamples=50", "--noprogressbar",
        "--max_continuation_seconds=4.0", "--num_samples=1",
        "--speaker_encoder=!new:eval_fakes.FakeSpeakerEncoder", "--mos_predictor=!new:eval_fakes.FakeMOSPredictor"])
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    speech = saved["speech"]
    assert {"reference", "vocoded", "teacher_forced", "generated"} <= set(speech)
    # Whisper hears the reference audio and its vocoded copy (the ceilings are real numbers); the floor is 100%
    assert speech["reference"]["wer"]["value"] < 0.6 and speech["vocoded"]["wer"]["value"] < 0.6
    assert speech["flat"]["wer"]["value"] >= 0.9
    assert len(saved["records"]) == len(results["records"]) == 2
    assert paths["markdown"].is_file() and paths["html"].is_file()
