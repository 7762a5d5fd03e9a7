"""Evaluation reports: Markdown and JSON content, and the samples page in a real headless browser."""
import html
import json
import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from spectron_kit.evaluation import report
from spectron_kit.evaluation.continuation import aggregate_records
from spectron_kit.evaluation.scorers import (AsrPerplexity, AsrWer, PredictedMos, SpeakerSimilarity, aggregate_scores,
                                             scorer_info)

CHROMIUM_HINT = ("no Chromium found: install it with `apt-get install chromium` (Debian) "
                 "or run tools/install_browser.sh")


def find_chromium():
    """Path of a Chromium/Chrome binary ($SPECTRON_KIT_CHROMIUM first), or None."""
    candidates = [os.environ.get("SPECTRON_KIT_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome",
                                             "google-chrome-stable")]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def media_status(chromium, page, profile):
    """Open ``page`` in headless Chromium and return the page's own media check.

    The samples page writes ``data-media-status`` (JSON: ok count, failed and
    pending sources) and ``data-media-done`` on <html> once every <audio> has
    loaded its metadata (or failed) and every <img> has decoded (or failed).
    """
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--allow-file-access-from-files", "--autoplay-policy=no-user-gesture-required",
           f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    root = re.search(r"<html[^>]*>", proc.stdout)
    assert root, proc.stdout[:500]
    status = re.search(r'data-media-status="([^"]*)"', root.group(0))
    assert status and 'data-media-done="1"' in root.group(0), root.group(0)
    return json.loads(html.unescape(status.group(1)))


# -- a small result with real files -------------------------------------------------------------

def _record(i, samples, speaker="s1"):
    return {"id": f"utt <{i}>", "speaker": speaker, "duration": 4.0, "samples": samples,
            "reference_text": "the cat sat on the mat today", "reference_prompt_text": "the cat sat",
            "model_text": "The cat sat. On a hat", "model_prompt_transcript": "the cat sat",
            "model_continuation_text": "on a hat", "asr_generated": "on a <b>hat</b>",
            "lm_nll": 6.0 + i, "lm_tokens": 3, "perplexity": math.exp((6.0 + i) / 3),
            "speaker_sim_generated": 0.4, "speaker_sim_reference": 0.8, "speaker_sim_other_speaker": 0.1,
            "mos_generated": 3.0, "mos_reference": 4.0, "prompt_wer_edits": i, "prompt_wer_ref_words": 3,
            "prompt_wer": i / 3, "text_speech_wer_edits": 0, "text_speech_wer_ref_words": 3,
            "text_speech_wer": 0.0, "reference_prompt_source": "prompt_text",
            "speech": {"generated": {"wer": 0.0, "wer_edits": 0, "wer_ref_words": 3, "lm_nll": 6.0 + i,
                                     "lm_tokens": 3, "perplexity": math.exp((6.0 + i) / 3), "speaker_sim": 0.4,
                                     "mos": 3.0, "asr": "on a <b>hat</b>", "expected": "on a hat"},
                       "reference": {"speaker_sim": 0.8, "mos": 4.0},
                       "other_speaker": {"speaker_sim": 0.1}}}


class _Label:
    label = "predicted MOS (DNSMOS OVRL)"


SCORERS = [AsrWer(None), AsrPerplexity(None, None), SpeakerSimilarity(None), PredictedMos(_Label())]


def make_result(folder, n=2, missing=()):
    """A result as evaluate_continuation returns it, with tiny wav and png files in folder/samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = folder / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    records = []
    t = np.arange(4000) / 16000
    for i in range(n):
        paths = {}
        for kind, freq in (("prompt", 220), ("reference", 330), ("generated", 440)):
            name = f"utt {i}_{kind}.wav"  # a space: links must be URL-quoted
            sf.write(samples / name, (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000,
                     subtype="PCM_16")
            paths[kind] = f"samples/{name}"
        fig = plt.figure(figsize=(1, 1))
        plt.imshow(np.random.default_rng(i).random((8, 8)))
        fig.savefig(samples / f"utt {i}_spectrogram.png", dpi=20)
        plt.close(fig)
        paths["spectrogram"] = f"samples/utt {i}_spectrogram.png"
        for kind in missing:
            paths[kind] = f"samples/missing {i}_{kind}.wav"
        records.append(_record(i, paths, speaker=f"s{i}"))
    batches = [{"frames": 80, "frames_s": 1.0, "total_s": 2.0, "audio_s": 1.0}]
    config = {"prompt_seconds": 3.0, "length_rule": "reference", "seed": 0, "n_resamples": 100,
              "batch_size": 2, "mos_label": "predicted MOS (DNSMOS OVRL)", "min_continuation_seconds": 0.5,
              "components": {"transcriber": "pocketsphinx", "lm_scorer": "hf(source='gpt2')",
                             "speaker_encoder": "resemblyzer", "mos_predictor": "dnsmos"},
              "scorers": [scorer_info(sc) for sc in SCORERS]}
    speech = aggregate_scores(records, SCORERS, n_resamples=100)
    return {"config": config, "records": records, "batches": batches, "speech": speech,
            "aggregates": aggregate_records(records, batches, speech, n_resamples=100,
                                            mos_label=config["mos_label"]),
            "counts": {"rows": n + 1, "too_short": 1, "evaluated": n, "prompt_text_from_alignments": n,
                       "no_other_speaker": 0, "empty_generation": 0}}


SETUP = {"model": "results/mini/1234/bundle", "test_set": "data/LibriSpeech/test-clean"}


# -- content ------------------------------------------------------------------------------------

def test_report_files_tables_and_paper_comparison(tmp_path):
    result = make_result(tmp_path)
    paths = report.write_report(result, tmp_path, setup=SETUP, print_table=False)
    md = paths["markdown"].read_text()
    assert "| metric | value | 95% CI | n | |" in md
    ppl = result["aggregates"]["perplexity"]
    row = f"| perplexity of ASR transcript (corpus) | {ppl['value']:.2f} | [{ppl['low']:.2f}, {ppl['high']:.2f}] | 2 |"
    assert row in md
    assert "| WER of the model's prompt transcript | 16.7% |" in md  # (0 + 1) edits / (3 + 3) words
    # one column per scorer of the config, in its order; a metric that does not apply is "-"
    assert ("| audio | ASR WER vs the text it should say (lower is better) [95% CI] | perplexity of the ASR "
            "transcript (lower is better) [95% CI] | speaker similarity to the prompt (higher is better) [95% CI] | "
            "predicted MOS (DNSMOS OVRL) (higher is better) [95% CI] | n |") in md
    assert "| (d) model, free-running generation | 0.0% [0.0, 0.0] |" in md
    assert "| floor: another speaker's reference continuation (speaker similarity) | - | - | 0.100 [0.100, 0.100] | - | 2 |" in md
    for paper_value in ("126.08", "0.42", "3.68 (human N-MOS)", "GSLM 296.99", "AudioLM 0.37"):
        assert paper_value in md
    assert "Setup difference:" in md and "data/LibriSpeech/test-clean" in md
    saved = json.loads(paths["json"].read_text())
    assert set(saved) >= {"config", "records", "aggregates", "hardware", "date", "setup", "counts"}
    assert saved["aggregates"]["prompt_wer"]["value"] == pytest.approx(1 / 6)
    assert saved["hardware"]["cpu_count"] >= 1


def test_json_has_no_nan(tmp_path):
    result = make_result(tmp_path)
    result["records"][0]["mos_generated"] = float("nan")
    path = report.write_results_json(result, tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text)["records"][0]["mos_generated"] is None


def test_samples_page_escapes_text_and_links_relative_quoted_paths(tmp_path):
    page = report.samples_html(make_result(tmp_path), SETUP)
    assert "<b>hat</b>" not in page and "on a &lt;b&gt;hat&lt;/b&gt;" in page
    assert 'id="utt &lt;0&gt;"' in page
    srcs = re.findall(r'src="([^"]+)"', page)
    assert len(srcs) == 2 * 4 and all(s.startswith("samples/utt%200_") or s.startswith("samples/utt%201_")
                                      for s in srcs)
    assert 'class="prompt-part"' in page and "predicted MOS (DNSMOS OVRL)" in page


def test_rich_summary_lists_every_metric(tmp_path):
    from rich.console import Console

    console = Console(record=True, width=200)
    report.print_summary(make_result(tmp_path), console)
    text = console.export_text()
    assert "speaker similarity: prompt vs generated" in text and "95% CI" in text


# -- the page in a real browser -------------------------------------------------------------------

def test_samples_page_loads_every_audio_and_image_in_chromium(tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(CHROMIUM_HINT)
    paths = report.write_report(make_result(tmp_path / "ok"), tmp_path / "ok", setup=SETUP, print_table=False)
    status = media_status(chromium, paths["html"], tmp_path / "profile1")
    assert status == {"ok": 2 * 4, "failed": [], "pending": []}

    # the check is not vacuous: a missing file is reported by the page itself
    paths = report.write_report(make_result(tmp_path / "bad", missing=("generated",)), tmp_path / "bad",
                                setup=SETUP, print_table=False)
    status = media_status(chromium, paths["html"], tmp_path / "profile2")
    assert status["ok"] == 2 * 3
    assert sorted(status["failed"] + status["pending"]) == ["samples/missing%200_generated.wav",
                                                            "samples/missing%201_generated.wav"]
