"""tools/quickstart.py: the README's first quick-start line, timed step by step in a fresh clone and venv."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("quickstart", REPO / "tools/quickstart.py")
quickstart = importlib.util.module_from_spec(spec)
spec.loader.exec_module(quickstart)


def test_the_measured_command_is_the_readmes_main_job():
    first = quickstart.quick_start_commands(REPO / "README.md")[0]
    assert first.startswith("python -m pip install -e . && python recipes/LibriLight/train.py")
    assert first.endswith("hparams/spectron_mini.yaml")


def _repo(tmp_path, line):
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "README.md").write_text(f"# p\n\n## Quick start\n\n```\n{line}\nsecond line\n```\n")
    (repo / "grow.py").write_text("import time\nblock = bytearray(400_000_000)\nblock[::4096] = b'x' * len(block[::4096])\n"
                                  "time.sleep(2)\nopen('made.txt', 'w').write(str(len(block)))\n")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(command, cwd=repo, check=True)
    return repo


def test_each_step_is_timed_with_its_peak_memory_in_a_fresh_clone(tmp_path):
    pytest.importorskip("psutil")
    repo = _repo(tmp_path, "python -c 'import sys; print(sys.prefix)' && python grow.py")
    out = tmp_path / "qs"
    assert quickstart.main(["--repo", str(repo), "--out", str(out), "--reuse-packages", "--keep"]) == 0
    record = json.loads((out / "quickstart.json").read_text())
    assert [s["command"] for s in record["steps"]] == ["python -c 'import sys; print(sys.prefix)'", "python grow.py"]
    assert record["code"] == 0 and all(s["code"] == 0 for s in record["steps"])
    # the venv's python ran, in the clone, and the 400 MB the second step touched were seen
    assert str((out / "venv").resolve()) in (out / "quickstart.log").read_text()
    assert (out / "repo" / "made.txt").read_text() == "400000000"
    assert 0.4 <= record["steps"][1]["peak_gb"] < 1.5 and record["steps"][1]["seconds"] >= 2
    assert record["minutes"] == pytest.approx(sum(s["seconds"] for s in record["steps"]) / 60)
    md = (out / "results.md").read_text()
    assert "| `python grow.py` |" in md and "| whole command |" in md and record["date"] in md


def test_a_failing_step_stops_the_command_and_is_reported(tmp_path, capsys):
    repo = _repo(tmp_path, "python -c 'raise SystemExit(3)' && python grow.py")
    out = tmp_path / "qs"
    assert quickstart.main(["--repo", str(repo), "--out", str(out), "--reuse-packages"]) == 3
    record = json.loads((out / "quickstart.json").read_text())
    assert len(record["steps"]) == 1 and record["code"] == 3
    assert "the quick start failed (exit 3)" in capsys.readouterr().out
    assert not (out / "venv").exists()  # removed without --keep


def test_a_readme_without_a_quick_start_is_one_line(tmp_path):
    (tmp_path / "README.md").write_text("# nothing\n")
    with pytest.raises(SystemExit, match="has no code block under '## Quick start'"):
        quickstart.quick_start_commands(tmp_path / "README.md")


def test_the_bundle_the_main_job_made_is_evaluated_and_its_numbers_reported(tmp_path, monkeypatch):
    """After the quick start the tool evaluates the bundle it made (here a stand-in evaluation that writes one
    split's results.json as evaluate.py does); the report gives the numbers and the targets' ratios."""
    split = {"speech": {"reference": {"wer": {"value": 0.40}}, "vocoded": {"wer": {"value": 0.50}},
                        "teacher_forced": {"wer": {"value": 0.55}}, "generated": {"wer": {"value": 0.80}}},
             "aggregates": {"prompt_wer": {"value": 0.11}, "speaker_sim_generated": {"value": 0.65},
                            "speaker_sim_other_speaker": {"value": 0.64}}}
    repo = _repo(tmp_path, f"python -c \"import os; os.makedirs('{quickstart.RUN}/bundle')\"")
    (repo / "fake_eval.py").write_text(
        "import json, os, sys\n"
        f"folder = os.path.join('{quickstart.RUN}', 'eval', 'test_seen')\n"
        "os.makedirs(folder)\n"
        f"json.dump({split!r}, open(os.path.join(folder, 'results.json'), 'w'))\n"
        "print('evaluated', sys.argv[1:])\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "eval"], cwd=repo, check=True)
    monkeypatch.setattr(quickstart, "evaluation_commands", lambda: ["python fake_eval.py --split=test_seen"])
    out = tmp_path / "qs"
    assert quickstart.main(["--repo", str(repo), "--out", str(out), "--reuse-packages"]) == 0
    record = json.loads((out / "quickstart.json").read_text())
    assert record["evaluation"]["steps"][0]["code"] == 0
    assert record["evaluation"]["numbers"] == {"test_seen": {
        "reference_wer": 0.40, "vocoded_wer": 0.50, "teacher_forced_wer": 0.55, "generated_wer": 0.80,
        "prompt_wer": 0.11, "speaker_similarity": 0.65, "speaker_similarity_floor": 0.64}}
    md = (out / "results.md").read_text()
    assert "| free-running speech: WER against the words it spoke | 80.0% |" in md
    assert "| free-running / reference (target 1.5 x) | 2.00x |" in md
    assert "| teacher-forced / vocoded (target 1.3 x) | 1.10x |" in md
    assert (out / "repo" / quickstart.RUN / "eval" / "test_seen" / "results.json").is_file()  # the clone's run stays


def test_the_evaluation_follows_the_results_protocol():
    install, evaluate = quickstart.evaluation_commands()
    assert install == "python -m pip install -e '.[eval]'"
    assert evaluate.startswith("python recipes/LibriLight/evaluate.py recipes/LibriLight/hparams/evaluate.yaml ")
    for part in ("--model_dir=results/spectron_mini/1234/bundle", "--num_utterances=120", "--seed=1234",
                 "--test_folder=[data/mini_corpus/test_seen,data/mini_corpus/test]",
                 "--output_folder=results/spectron_mini/1234/eval"):
        assert part in evaluate.split()
