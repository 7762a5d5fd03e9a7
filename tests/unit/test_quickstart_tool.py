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
