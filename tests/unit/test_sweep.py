"""tools/sweep.py: grid of overrides -> one run folder each, resumable, one table with intervals over seeds."""
import csv
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("sweep", REPO / "tools/sweep.py")
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)

# a stand-in recipe: parses --key=value like SpeechBrain, writes summary.json, counts its runs
FAKE_RECIPE = '''
import json, sys
from pathlib import Path
args = dict(a[2:].split("=", 1) for a in sys.argv[2:])
# SpeechBrain's parser turns any "=" inside a value into a space: a folder name must not hold one
assert "=" not in args["output_folder"], args["output_folder"]
out = Path(args["output_folder"])
count = out / "runs.txt"
count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))
if args.get("fail") == "1":
    sys.exit(3)
w, seed = float(args.get("w_ce", 1.0)), int(args["seed"])  # 1.0: the base YAML's
(out / "summary.json").write_text(json.dumps({"valid_final": {"loss": 10 * w + seed}, "epochs": args["epochs"]}))
'''


@pytest.fixture
def fake(tmp_path):
    """(recipe script, base YAML) of the stand-in recipe."""
    recipe = tmp_path / "fake_train.py"
    recipe.write_text(FAKE_RECIPE)
    base = tmp_path / "base.yaml"
    base.write_text("w_ce: 1.0\nseed: 1\n")
    return recipe, base


def test_grid_parsing_and_folder_names():
    grid = sweep.parse_grid(["w_ce=10.0,0.0", "seed=1,2", "layers=[1, 2],[0]", "--lr=3e-4"])
    assert grid == {"w_ce": [10.0, 0.0], "seed": [1, 2], "layers": [[1, 2], [0]], "lr": [3e-4]}
    points = sweep.grid_points(grid)
    assert len(points) == 8 and points[0] == {"w_ce": 10.0, "seed": 1, "layers": [1, 2], "lr": 3e-4}
    assert sweep.point_name(points[0]) == "w_ce-10.0,seed-1,layers-_1,2_,lr-0.0003"
    with pytest.raises(sweep.SweepError, match="write key=value1,value2"):
        sweep.parse_grid(["seed"])
    with pytest.raises(sweep.SweepError, match="repeated key"):
        sweep.parse_grid(["seed=1", "seed=2"])


def test_interval_is_a_student_t_interval():
    mean, low, high = sweep.interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.303, sd = 1, n = 3 -> half width 4.303 / sqrt(3) = 2.484
    assert mean == 2.0 and high - mean == pytest.approx(2.4843, abs=1e-3) and mean - low == pytest.approx(2.4843, abs=1e-3)
    assert sweep.interval([5.0]) == (5.0, 5.0, 5.0) and sweep.interval([]) == (None, None, None)


def test_sweep_runs_every_point_once_resumes_and_tabulates(tmp_path, capsys, fake):
    recipe, base = fake
    out = tmp_path / "sweep"
    argv = [str(recipe), str(base), "--grid", "w_ce=10.0,0.0", "--grid", "seed=1,2,3",
            "--metric", "valid_final.loss", "--metric", "missing.key", "--out", str(out), "--jobs", "2",
            "--epochs=4"]  # unknown options are passed to every run
    assert sweep.main(argv) == 0
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == [f"w_ce-{w},seed-{s}" for w in ("0.0", "10.0") for s in (1, 2, 3)]
    assert json.loads((out / "w_ce-0.0,seed-2" / "summary.json").read_text())["epochs"] == "4"
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert len(rows) == 6 and {r["valid_final.loss"] for r in rows if r["w_ce"] == "10.0"} == {"101.0", "102.0", "103.0"}
    md = (out / "sweep.md").read_text()
    # mean over seeds 1, 2, 3 of 10 w + seed, with the t interval of [1, 2, 3] around it
    assert "| 10.0 | 3 | 102 [99.52, 104.5] | - |" in md and "| 0.0 | 3 | 2 [-0.4841, 4.484] | - |" in md
    assert (out / "sweep.png").stat().st_size > 5000
    # rerunning resumes: finished points are not run again; a failed point is reported and rerun next time
    (out / "w_ce-0.0,seed-3" / "summary.json").unlink()
    assert sweep.main(argv) == 0
    runs = {p.name: int((p / "runs.txt").read_text()) for p in out.iterdir() if p.is_dir()}
    assert runs["w_ce-0.0,seed-3"] == 2 and all(v == 1 for k, v in runs.items() if k != "w_ce-0.0,seed-3")
    assert sweep.main([str(recipe), str(base), "--grid", "w_ce=1.0", "--grid", "seed=1", "--grid", "fail=1",
                       "--metric", "valid_final.loss", "--out", str(tmp_path / "bad")]) == 1
    assert "run failed (exit 3): w_ce-1.0,seed-1,fail-1; see" in capsys.readouterr().out
    assert "| 1.0 | 1 | 0 | - |" in (tmp_path / "bad" / "sweep.md").read_text()  # the table is still written


def test_sweep_file_and_clear_errors(tmp_path, capsys, fake):
    recipe, base = fake
    spec_file = tmp_path / "sweep.yaml"
    spec_file.write_text(f"script: {recipe}\nhparams: {base}\npoints:\n  - {{w_ce: 1.0, seed: 1}}\n"
                         f"  - {{w_ce: 2.0, seed: 1}}\nmetrics: [valid_final.loss]\nout: {tmp_path / 'f'}\n"
                         "extra: ['--epochs=1']\n")
    assert sweep.main(["--sweep", str(spec_file)]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir() if p.is_dir()) == ["w_ce-1.0,seed-1", "w_ce-2.0,seed-1"]
    assert sweep.main(["nope.py", str(base), "--grid", "seed=1", "--metric", "x"]) == 2
    assert "recipe script 'nope.py' not found" in capsys.readouterr().out
    assert sweep.main([str(recipe), str(base), "--grid", "seed=1"]) == 2
    assert "no --metric given" in capsys.readouterr().out
    spec_file.write_text("scrpt: x\n")
    assert sweep.main(["--sweep", str(spec_file)]) == 2
    assert "unknown keys scrpt" in capsys.readouterr().out


def test_variants_then_steps_and_metrics_from_other_files(tmp_path, fake):
    recipe, base = fake
    sweep_file = tmp_path / "sweep.yaml"
    out = tmp_path / "s"
    # the "evaluation" step reads the run's summary and writes its own results file
    evaluate = tmp_path / "fake_eval.py"
    evaluate.write_text("import json, sys\nfrom pathlib import Path\nf = Path(sys.argv[1])\n"
                        "loss = json.loads((f / 'summary.json').read_text())['valid_final']['loss']\n"
                        "(f / 'eval').mkdir(exist_ok=True)\n"
                        "(f / 'eval' / 'results.json').write_text(json.dumps({'score': -loss}))\n")
    sweep_file.write_text(
        f"script: {recipe}\nhparams: {base}\nout: {out}\n"
        "variants:\n  full: {}\n  no_ce: {w_ce: 0.0}\n"
        "grid:\n  seed: [1, 2]\nextra: [--epochs=1]\n"
        f"then: ['{{python}} {evaluate} {{folder}}']\n"
        "results_file: eval/results.json\ndone_file: eval/results.json\n"
        "metrics: [score, 'summary.json:valid_final.loss']\n")
    assert sweep.main(["--sweep", str(sweep_file)]) == 0
    rows = {(r["variant"], r["seed"]): r for r in csv.DictReader(open(out / "sweep.csv"))}
    # w_ce comes from the variant (no_ce: 0.0), seed from the grid; the base YAML's 1.0 otherwise
    assert float(rows[("no_ce", "2")]["summary.json:valid_final.loss"]) == 2.0
    assert float(rows[("full", "1")]["summary.json:valid_final.loss"]) == 11.0
    assert float(rows[("full", "1")]["score"]) == -11.0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "variant-full,seed-1", "variant-full,seed-2", "variant-no_ce,seed-1", "variant-no_ce,seed-2"]
    # rerun: the recipe is not run again (its summary exists), nor the finished evaluation
    assert sweep.main(["--sweep", str(sweep_file)]) == 0
    assert (out / "variant-full,seed-1" / "runs.txt").read_text() == "1"


def test_points_get_the_callers_thread_count_or_cores_over_jobs(monkeypatch):
    """OMP_NUM_THREADS=1 python tools/sweep.py ... --jobs 1 leaves the other cores free."""
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 8)
    assert sweep.point_threads(2, environ={}) == 4
    assert sweep.point_threads(16, environ={}) == 1
    assert sweep.point_threads(1, environ={"OMP_NUM_THREADS": "1"}) == 1
    with pytest.raises(sweep.SweepError, match="OMP_NUM_THREADS='two' must be a positive integer"):
        sweep.point_threads(1, environ={"OMP_NUM_THREADS": "two"})


def test_only_runs_the_selected_points_and_tabulates_all(tmp_path, capsys, fake):
    recipe, base = fake
    out = tmp_path / "part"
    argv = [str(recipe), str(base), "--grid", "w_ce=10.0,0.0", "--grid", "seed=1,2",
            "--metric", "valid_final.loss", "--out", str(out), "--epochs=1"]
    assert sweep.main(argv + ["--only", "seed=2"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["w_ce-0.0,seed-2", "w_ce-10.0,seed-2"]
    printed = capsys.readouterr().out
    assert "2 selected by --only" in printed and "not selected" in printed
    rows = {(r["w_ce"], r["seed"]): r for r in csv.DictReader(open(out / "sweep.csv"))}
    assert len(rows) == 4 and rows[("10.0", "2")]["valid_final.loss"] == "102.0"
    assert rows[("10.0", "1")]["valid_final.loss"] == ""  # left for a later call, still a row
    # a later call with another selection runs only what is missing from it
    assert sweep.main(argv + ["--only", "w_ce=0.0"]) == 0
    assert (out / "w_ce-0.0,seed-1" / "runs.txt").read_text() == "1"
    assert (out / "w_ce-0.0,seed-2" / "runs.txt").read_text() == "1"
    assert not (out / "w_ce-10.0,seed-1").exists()
    capsys.readouterr()
    assert sweep.main(argv + ["--only", "seed=7"]) == 2
    assert "--only seed=7: no point has that value; seed takes 1, 2" in capsys.readouterr().out
    assert sweep.main(argv + ["--only", "lr=1"]) == 2
    assert "no point has the key 'lr'" in capsys.readouterr().out
    assert sweep.main(argv + ["--only", "seed"]) == 2
    assert "--only 'seed': write key=value1,value2" in capsys.readouterr().out


# a stand-in recipe that runs until interrupted: SIGINT (Ctrl-C) makes it "checkpoint" and exit like train.py
SLOW_RECIPE = '''
import os, sys, time
from pathlib import Path
args = dict(a[2:].split("=", 1) for a in sys.argv[2:])
out = Path(args["output_folder"])
(out / "pid").write_text(str(os.getpid()))
try:
    time.sleep(120)
except KeyboardInterrupt:
    (out / "interrupted").write_text("checkpointed")
    sys.exit(1)
'''


def test_sigterm_stops_the_sweep_and_its_running_recipe_and_starts_no_other_point(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    recipe = tmp_path / "slow_train.py"
    recipe.write_text(SLOW_RECIPE)
    base = tmp_path / "base.yaml"
    base.write_text("seed: 1\n")
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, str(REPO / "tools/sweep.py"), str(recipe), str(base),
                             "--grid", "seed=1,2", "--out", str(out), "--jobs", "1",
                             "--metric", "valid_final.loss"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = out / "seed-1" / "pid"
    deadline = time.time() + 60
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert first.exists(), proc.communicate(timeout=30)[0]
    time.sleep(0.3)  # the recipe is inside its sleep
    proc.send_signal(signal.SIGTERM)
    printed, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, printed
    assert (out / "seed-1" / "interrupted").read_text() == "checkpointed"  # it got SIGINT, as from Ctrl-C
    with pytest.raises(ProcessLookupError):  # and nothing of it is left running
        os.kill(int(first.read_text()), 0)
    assert not (out / "seed-2" / "pid").exists()  # the next point never started
    printed = " ".join(printed.split())  # rich wraps long lines
    assert "stopped (SIGTERM): 2 unfinished point(s)" in printed
    assert "the same command resumes them" in printed
