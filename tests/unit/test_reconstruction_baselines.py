"""tools/reconstruction_baselines.py: reference predictors scored with the training losses."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reconstruction_baselines", REPO / "tools/reconstruction_baselines.py")
rb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rb)


def test_hand_computed_values_on_a_ramp():
    # x[t, f] = 0.5 t + f: every frame differs from the previous one by 0.5 in every bin
    frames = [torch.arange(12.0)[:, None] * 0.5 + torch.arange(4.0)[None] for _ in range(3)]
    out, predicted = rb.baselines(frames, options={"time_deriv": {"orders": 2}, "freq_deriv": {"orders": 1}})
    assert set(out["flat (mean frame)"]) == {"spec", "freq_deriv", "time_deriv"}  # the paper table's frame terms
    assert out["truth"] == {"spec": 0.0, "freq_deriv": 0.0, "time_deriv": 0.0}
    torch.testing.assert_close(predicted["truth"][1], frames[1])
    # flat: D_t(x^) = 0 and D_t(x) = 0.5 -> order 1 gives 0.5 + 0.25, order 2 gives 0
    assert out["flat (mean frame)"]["time_deriv"] == pytest.approx(0.75)
    # the mean frame keeps the bin-to-bin step of 1, exactly like the truth
    assert out["flat (mean frame)"]["freq_deriv"] == pytest.approx(0.0, abs=1e-6)
    # repeat: the error is -0.5 everywhere but the first frame -> L_s = (11/12)(0.5 + 0.25)
    repeat = out["repeat previous true frame"]
    assert repeat["spec"] == pytest.approx(11 / 12 * 0.75)
    # its time derivative is wrong only at t = 0 (D = 0 instead of 0.5): 1 of 11 order-1 steps,
    # and order 2 sees a 0.5 step in 1 of 10: (0.75 / 11) + (0.75 / 10)
    assert repeat["time_deriv"] == pytest.approx(0.75 / 11 + 0.75 / 10)
    # a linear AR(2) model reproduces a ramp (up to its small ridge penalty)
    assert out["linear AR(2) from true past (in-sample)"]["spec"] < 1e-3
    assert out["truth + N(0, 0.1^2)"]["spec"] == pytest.approx(0.1 * (2 / np.pi) ** 0.5 + 0.01, rel=0.2)
    # a mean over 5 frames of a ramp is the ramp itself except at the 2 repeated frames of each edge
    blurred = predicted["truth, mean over 5 frames"][0]
    torch.testing.assert_close(blurred[2:-2], frames[0][2:-2])
    torch.testing.assert_close(blurred[0], frames[0][0] + torch.tensor(0.5 * (0 + 0 + 0 + 1 + 2) / 5))
    # groups of 4 frames take their mean: frames 0-3 of the ramp all become frame 1.5
    held = predicted["truth held over groups of 4 frames"][0]
    torch.testing.assert_close(held[:4], (frames[0][1] + 0.25).expand(4, -1))
    torch.testing.assert_close(held[8:12], (frames[0][9] + 0.25).expand(4, -1))


def test_terms_come_from_the_loss_table():
    frames = [torch.randn(20, 6) for _ in range(2)]
    out, _ = rb.baselines(frames, terms=["spec", "flux"], options={"flux": {"bound": 1.0}})
    assert set(out["repeat previous true frame"]) == {"spec", "flux"}
    # flux rewards distance from the previous true frame: repeating it earns nothing, the flat frame does
    assert out["repeat previous true frame"]["flux"] == pytest.approx(0.0, abs=1e-6)
    assert out["flat (mean frame)"]["flux"] < 0
    with pytest.raises(SystemExit, match="--terms ce: that term needs"):
        rb.frame_terms(["ce"])
    with pytest.raises(SystemExit, match="--terms nope: not a registered loss term"):
        rb.frame_terms(["nope"])


def test_asr_column_scores_the_vocoded_predictors():
    from spectron_kit.features import FeatureSpec
    from spectron_kit.hookspecs import hookimpl
    from spectron_kit.registry import get_registry

    class LoudnessTranscriber:
        """Says "loud" for audio with a clear level, nothing otherwise (a fake ASR with a known answer)."""

        def transcribe(self, wavs, sample_rate):
            return ["loud" if np.abs(w).mean() > 1e-3 else "" for w in wavs]

    class Plugin:
        @hookimpl
        def register_transcribers(self, register):
            register("test_loudness", LoudnessTranscriber, description="test")

    get_registry().register_plugin(Plugin(), name="test-loudness-asr")
    spec = FeatureSpec(sample_rate=16000, n_fft=400, win_length=400, hop_length=200, n_mels=20)
    loud = torch.full((30, 20), 0.0)
    silent = torch.full((30, 20), float(np.log(spec.log_floor)))
    predictions = {"right": [loud, silent], "all silent": [silent, silent]}
    wers = rb.asr_wer(predictions, [["loud"], []], spec, "test_loudness", n_iter=4)
    assert wers == {"right": 0.0, "all silent": 1.0}


def test_command_line_on_a_manifest(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        t = np.arange(16000 * 5) / 16000
        sf.write(path, 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(t.size), 16000)
        rows.append(f"u{i},{path},0.0,5.0,5.0,s{i},b,3.0,some words,")
    rows.append(f"short,{tmp_path / 'u0.wav'},0.0,3.2,3.2,s0,b,3.0,too short,")
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path,start,end,duration,speaker,book,prompt_seconds,text,prompt_text\n" + "\n".join(rows))
    step0 = tmp_path / "step0.json"
    step0.write_text(json.dumps({"spec": 40.0, "freq_deriv": 1.5, "time_deriv": 4.0}))
    out = tmp_path / "values.json"
    results = rb.main([str(manifest), "--step0", str(step0), "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["utterances"] == 3  # the 3.2 s utterance has no continuation to score
    assert set(saved["results"]) == set(results) and len(results) == 12
    # steady tones: the flat predictor is nearly right, the noisy truth much worse on L_t
    assert results["flat (mean frame)"]["time_deriv"] < results["truth + N(0, 0.3^2)"]["time_deriv"]
    with pytest.raises(SystemExit, match="no utterance"):
        rb.main([str(manifest), "--prompt-seconds", "10"])
    # a higher log floor clips the quiet bins: every predictor's L_s shrinks (the default floor is 1e-5)
    floored = rb.main([str(manifest), "--log-floor", "1e-2"])
    assert floored["flat (mean frame)"]["spec"] < results["flat (mean frame)"]["spec"]
    with pytest.raises(SystemExit, match="--log-floor=0.0; pass a positive value"):
        rb.main([str(manifest), "--log-floor", "0"])
