"""tools/results.py: RESULTS.md generated from the runs' own files, numbers beside their yardsticks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]


def fake_results(folder, generated, reference=0.40, vocoded=0.41, teacher=0.50):
    """One split's results.json with the fields RESULTS.md reads."""
    folder.mkdir(parents=True)
    speech = {"reference": {"wer": {"value": reference, "n": 120}},
              "vocoded": {"wer": {"value": vocoded, "n": 120}, "mos": {"value": 2.39}},
              "teacher_forced": {"wer": {"value": teacher, "n": 120}},
              "generated": {"wer": {"value": generated, "n": 120}}, "flat": {"wer": {"value": 1.0}}}
    aggregates = {"speaker_sim_generated": {"value": 0.7}, "speaker_sim_other_speaker": {"value": 0.64},
                  "mos_generated": {"value": 1.9}, "prompt_wer": {"value": 0.05}}
    (folder / "results.json").write_text(json.dumps({
        "date": "2026-12-03T10:00:00+00:00", "speech": speech, "aggregates": aggregates,
        "hardware": {"cpu_count": 2, "torch_threads": 1, "accelerator": "none (CPU)", "torch": "2.14.1"},
        "setup": {"command": f"python recipes/LibriLight/evaluate.py --output_folder={folder.parent}"}}))


def generate(recipe):
    """Run the tool on ``recipe`` (it must succeed); the RESULTS.md it wrote."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "results.py"), str(recipe)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return (recipe / "RESULTS.md").read_text()


def test_results_md_from_the_runs_files(tmp_path):
    for name, generated in (("a", 0.60), ("b", 0.70)):
        run = tmp_path / name
        fake_results(run / "eval" / "test_seen", generated)
        (run / "summary.json").write_text(json.dumps({"training_minutes": 94.0, "optimizer_steps": 1234,
                                                      "valid_final": {"spec": 0.256, "ce": 0.1}}))
        (run / "sweep_run.log").write_text(f"$ /usr/bin/python3 recipes/LibriLight/train.py x.yaml --seed={name}\n")
        (run / "env.log").write_text("Git revision:\nabc1234\n")
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "results.yaml").write_text(yaml.safe_dump({
        "title": "a test recipe", "intro": "protocol text",
        "groups": [{"title": "two seeds", "runs": ["a", "b"]}],
        "runs": [{"name": n, "title": f"run {n}", "train": str(tmp_path / n), "eval": str(tmp_path / n / "eval")}
                 for n in ("a", "b")] + [{"name": "gone", "title": "a run not here",
                                           "eval": str(tmp_path / "nowhere")}]}))
    md = generate(recipe)
    assert "do not edit by hand" in md and "protocol text" in md
    # each run: its command (from the sweep's log), commit (env.log), date and hardware, its numbers
    assert "- training: `python recipes/LibriLight/train.py x.yaml --seed=a`" in md
    assert "commit abc1234 (training)" in md and "2 CPU cores, 1 torch threads" in md
    assert "| (d) free-running speech: WER against the words it spoke | 60.0% |" in md
    assert "| (d) / (a) | 1.50x |" in md and "| (c) / (b) | 1.22x |" in md  # 0.60 / 0.40, 0.50 / 0.41
    assert "| valid L_s (best checkpoint) | 0.256 |" in md and "| optimizer steps | 1234 |" in md
    # the group: mean and Student-t interval over the seeds, computed here independently
    low, high = stats.t.interval(0.95, 1, loc=0.65, scale=stats.sem([0.60, 0.70]))
    assert f"| (d) free-running speech: WER against the words it spoke | 65.0% [{100 * low:.1f}%, " \
           f"{100 * high:.1f}%] (n=2) |" in md
    # a run whose folders are gone is named, not dropped
    assert "### a run not here (`gone`)" in md and f"Not on this machine: {tmp_path / 'nowhere'}" in md
    # runs live in results/ (not in git): on a machine without them, regenerating keeps every number -
    # first from RESULTS.json (what the last generation read), then from the previous RESULTS.md itself
    import shutil

    group_line = next(line for line in md.splitlines() if line.startswith("| (d) free-running") and "(n=2)" in line)
    shutil.rmtree(tmp_path / "b")
    again = generate(recipe)
    assert group_line in again and "| (d) free-running speech: WER against the words it spoke | 70.0% |" in again
    assert f"Not on this machine: {tmp_path / 'b'}, {tmp_path / 'b' / 'eval'}; the numbers below are those read" \
        in again and "- training: `python recipes/LibriLight/train.py x.yaml --seed=b`" in again
    (recipe / "RESULTS.json").unlink()
    shutil.rmtree(tmp_path / "a")
    kept = generate(recipe)
    assert group_line in kept and "| (d) free-running speech: WER against the words it spoke | 60.0% |" in kept
    assert "| (d) free-running speech: WER against the words it spoke | 70.0% |" in kept
    assert kept.count("this section is kept from the previous RESULTS.md") == 1  # b's already says it is not here
    assert "### a run not here (`gone`)" in kept


def test_a_recipe_without_results_yaml_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "results.py"), str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "results.yaml does not exist" in done.stderr


@pytest.mark.parametrize("recipe", ["recipes/LibriLight", "recipes/SpokenQA"])
def test_the_recipe_lists_its_runs(recipe):
    spec = yaml.safe_load((ROOT / recipe / "results.yaml").read_text())
    names = [run["name"] for run in spec.get("runs", []) + spec.get("reports", [])]
    assert names and (ROOT / recipe / "RESULTS.md").is_file()
    assert len(names) == len(set(names))
    assert all(name in names for group in spec.get("groups", []) for name in group["runs"])


def test_an_experiment_report_is_taken_as_written_and_kept_when_its_folder_is_gone(tmp_path):
    folder = tmp_path / "kr"
    folder.mkdir()
    (folder / "results.md").write_text("# Knowledge retention\n\n- command: `python x.py`\n\n| arm | heard |\n"
                                      "| --- | ---: |\n| lm_init | 4.2% |\n\n## Forgetting curve\n\n| a | 1 |\n")
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "results.yaml").write_text(yaml.safe_dump({
        "title": "qa", "intro": "protocol", "reports": [{"name": "arms", "title": "the arms", "folder": str(folder)}]}))

    md = generate(recipe)
    assert "### the arms (`arms`)" in md and "| lm_init | 4.2% |" in md and "- command: `python x.py`" in md
    assert "#### Forgetting curve" in md and "# Knowledge retention" not in md and "## Runs" not in md
    (folder / "results.md").unlink()
    again = generate(recipe)
    assert "| lm_init | 4.2% |" in again and f"Not on this machine: {folder}; the report below" in again
    (recipe / "RESULTS.json").unlink()
    kept = generate(recipe)
    assert "| lm_init | 4.2% |" in kept and "#### Forgetting curve" in kept


def test_a_report_can_name_its_file_and_reports_have_their_heading(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.md").write_text("# sweep of x\n\n| variant | n | wer |\n| --- | ---: | ---: |\n| no_ce | 1 | 61.2% |\n")
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "results.yaml").write_text(yaml.safe_dump({"title": "t", "intro": "p", "reports": [
        {"name": "abl", "title": "ablations", "folder": str(folder), "file": "sweep.md"}]}))
    md = generate(recipe)
    assert md.index("## Reports") < md.index("### ablations (`abl`)") < md.index("| no_ce | 1 | 61.2% |")
    assert "# sweep of x" not in md


def test_a_kept_run_keeps_its_section_though_its_folder_now_holds_another_run(tmp_path):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "RESULTS.md").write_text(
        "# Results: t\n\n## Runs\n\n### seed one (`one`)\n\nNot on this machine: x; this section is kept from "
        "the previous RESULTS.md.\n\n- training: `python train.py --seed=1`\n\n| measure | test |\n"
        "| --- | ---: |\n| (d) / (a) | 1.64x |\n")
    folder = tmp_path / "run"
    (folder / "eval" / "test").mkdir(parents=True)
    (folder / "eval" / "test" / "results.json").write_text(json.dumps({"speech": {"reference": {"wer": {"value": 0.5}},
                                                                                  "generated": {"wer": {"value": 0.6}}}}))
    (recipe / "results.yaml").write_text(yaml.safe_dump({"title": "t", "intro": "p", "runs": [
        {"name": "one", "title": "seed one", "train": str(folder), "eval": str(folder / "eval"),
         "kept": "run on an earlier machine"},
        {"name": "again", "title": "seed one rerun", "train": str(folder), "eval": str(folder / "eval")}]}))
    md = generate(recipe)
    first = md[md.index("(`one`)"):md.index("(`again`)")]
    assert "| (d) / (a) | 1.64x |" in first and "training: `python train.py --seed=1`" in first
    assert first.count("Not on this machine: run on an earlier machine; this section is kept") == 1
    assert "| (d) / (a) | 1.20x |" in md[md.index("(`again`)"):]  # the folder's run, under its own name
    assert "| (d) / (a) | 1.64x |" in generate(recipe)  # and again after a second generation
