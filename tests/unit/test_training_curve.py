"""tools/training_curve.py: finds a run's snapshot bundles, reuses finished evaluations, writes the curve."""
import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import training_curve as tc  # noqa: E402


def fake_bundle(folder, minutes=None):
    folder.mkdir(parents=True)
    (folder / "spectron_config.json").write_text("{}")
    if minutes is not None:
        (folder / "training.json").write_text(json.dumps({"training_minutes": minutes, "step": 1, "epoch": 1}))


def fake_results(folder, wer_generated):
    folder.mkdir(parents=True, exist_ok=True)
    speech = {cond: {"wer": {"value": value}, "speaker_sim": {"value": 0.5}, "mos": {"value": 2.0}}
              for cond, value in (("reference", 0.4), ("vocoded", 0.42), ("teacher_forced", wer_generated - 0.1),
                                  ("generated", wer_generated), ("flat", 1.0))}
    (folder / "results.json").write_text(json.dumps({"speech": speech, "counts": {"evaluated": 24}}))


def test_curve_from_snapshots_and_the_final_bundle(tmp_path):
    run = tmp_path / "run"
    fake_bundle(run / "snapshots" / "10min", 10.2)
    fake_bundle(run / "snapshots" / "5min", 5.1)
    fake_bundle(run / "bundle")
    (run / "summary.json").write_text(json.dumps({"training_minutes": 12.5}))
    found = tc.find_bundles(run)
    assert [(m, b.name) for m, b in found] == [(5.1, "5min"), (10.2, "10min"), (12.5, "bundle")]
    curve = run / "curve"
    for name, wer in (("5min", 0.95), ("10min", 0.7), ("final", 0.6)):
        fake_results(curve / name, wer)  # finished evaluations are reused, nothing is run
    rows = tc.main([str(run), "--test-folder", "unused", "--lm-scorer", "unused"])
    assert [r["wer_generated"] for r in rows] == [0.95, 0.7, 0.6]
    assert (curve / "curve.png").stat().st_size > 5000
    table = list(csv.DictReader((curve / "curve.csv").open()))
    assert [float(r["minutes"]) for r in table] == [5.1, 10.2, 12.5]
    md = (curve / "curve.md").read_text()
    assert "| 10.2 | 70.0% | 60.0% | 40.0% | 42.0% | 100.0% |" in md


def test_a_run_without_bundles_says_how_to_make_them(tmp_path):
    with pytest.raises(SystemExit, match="--snapshot_minutes"):
        tc.find_bundles(tmp_path)


def test_two_runs_compared_against_optimiser_steps(tmp_path):
    runs = {}
    for name, steps, wers in (("cpu", (1500, 6300), (0.8, 0.6)), ("gpu", (1100, 3000), (0.77, 0.65))):
        run = tmp_path / name
        fake_bundle(run / "snapshots" / "2min", 2.0)
        info = run / "snapshots" / "2min" / "training.json"
        info.write_text(json.dumps({"training_minutes": 2.0, "optimizer_steps": steps[0]}))
        fake_bundle(run / "bundle")
        (run / "summary.json").write_text(json.dumps({"training_minutes": 6.1, "optimizer_steps": steps[1]}))
        fake_results(run / "curve" / "2min", wers[0])
        fake_results(run / "curve" / "final", wers[1])
        runs[name] = run
    tc.main([str(runs["cpu"]), "--test-folder", "unused", "--lm-scorer", "unused"])
    assert [float(r["steps"]) for r in csv.DictReader((runs["cpu"] / "curve" / "curve.csv").open())] == [1500, 6300]
    rows = tc.main([str(runs["gpu"]), "--test-folder", "unused", "--lm-scorer", "unused", "--label", "GPU",
                    "--compare", f"CPU={runs['cpu'] / 'curve' / 'curve.csv'}"])
    assert [r["steps"] for r in rows] == [1100, 3000]
    assert (runs["gpu"] / "curve" / "compare.png").stat().st_size > 5000
    with pytest.raises(SystemExit, match="LABEL=PATH"):
        tc.main([str(runs["gpu"]), "--test-folder", "u", "--lm-scorer", "u", "--compare", "CPU"])
