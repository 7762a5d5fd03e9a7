#!/usr/bin/env python3
"""Measure the README's quick start on this machine: its main-job command in a fresh clone and a fresh venv.

    python tools/quickstart.py                     # writes results/quickstart/results.md and quickstart.json
    python tools/quickstart.py --reuse-packages    # the venv sees this Python's packages: times the job alone

The command measured is the first line of the README's "Quick start" block, run as written (each ``&&`` part
timed on its own) from a fresh clone of this checkout's HEAD, with ``python`` the fresh venv's: the install
part installs everything from the package index pip is configured with (no pip cache), and the main job
builds its corpus and pre-trained parts from nothing. Peak memory is the largest total resident memory of the
command's process tree, sampled every half second (with ``psutil``; without it, the largest single process).

Then (unless ``--no-evaluate``), outside the quick start's minutes, the bundle it made is evaluated by the
evaluation protocol of every run in RESULTS.md: the ``eval`` extra installed into the same venv, then
``recipes/LibriLight/evaluate.py`` on ``test_seen`` and ``test``, 120 utterances each, seed 1234, into
``results/spectron_mini/1234/eval`` of the clone, which is kept. So the README's main-job numbers come from the
code of the commit measured, not from an older bundle. ``tools/results.py`` puts the report into the recipe's
RESULTS.md (``reports:`` in its results.yaml; the ``main_job`` run reads the clone's folders), and the README
quotes it. Run nothing else CPU-heavy meanwhile: the minutes are wall-clock.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectron_kit.evaluation.report import checkout_commit, hardware_info  # noqa: E402


#: the main job's run folder (in the clone) and the commands that evaluate its bundle
RUN = "results/spectron_mini/1234"
EVAL_SPLITS = ("test_seen", "test")


def evaluation_commands(run=RUN, corpus="data/mini_corpus"):
    """The evaluation of the main job's bundle: the ``eval`` extra, then evaluate.py by RESULTS.md's protocol."""
    splits = ",".join(f"{corpus}/{split}" for split in EVAL_SPLITS)
    return ["python -m pip install -e '.[eval]'",
            "python recipes/LibriLight/evaluate.py recipes/LibriLight/hparams/evaluate.yaml "
            f"--model_dir={run}/bundle --test_folder=[{splits}] "
            f"--lm_scorer_source={corpus}/pretrained/1234/text_lm --num_utterances=120 --seed=1234 "
            f"--output_folder={run}/eval --noprogressbar"]


def evaluation_numbers(eval_folder):
    """``{split: headline numbers}`` of the evaluation's ``<split>/results.json`` files (absent splits left out)."""
    numbers = {}
    for split in EVAL_SPLITS:
        path = Path(eval_folder) / split / "results.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        speech, aggregates = data["speech"], data["aggregates"]
        numbers[split] = {
            "reference_wer": speech["reference"]["wer"]["value"], "vocoded_wer": speech["vocoded"]["wer"]["value"],
            "teacher_forced_wer": speech["teacher_forced"]["wer"]["value"],
            "generated_wer": speech["generated"]["wer"]["value"],
            "prompt_wer": aggregates["prompt_wer"]["value"],
            "speaker_similarity": aggregates["speaker_sim_generated"]["value"],
            "speaker_similarity_floor": aggregates["speaker_sim_other_speaker"]["value"]}
    return numbers


def quick_start_commands(readme):
    """The README's quick-start lines (the first code block under "## Quick start"), as a list of strings."""
    text = Path(readme).read_text()
    match = re.search(r"^## Quick start\s*\n.*?```[^\n]*\n(.*?)```", text, re.S | re.M)
    if not match:
        raise SystemExit(f"error: {readme} has no code block under '## Quick start'; the tool measures its first line")
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


class PeakMemory:
    """Sample the total resident memory of a process and its descendants every ``interval`` seconds."""

    def __init__(self, pid, interval=0.5):
        self.pid, self.interval, self.peak, self.method = pid, interval, 0, "largest single process"
        self._stop = threading.Event()
        try:
            import psutil

            self._psutil = psutil
            self.method = "process tree total, sampled every 0.5 s"
        except ImportError:
            self._psutil = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        if self._psutil is None:
            return
        try:
            root = self._psutil.Process(self.pid)
        except self._psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except self._psutil.Error:  # ended between listing and reading
                        pass
            except self._psutil.Error:
                break
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._psutil is None:  # ru_maxrss: kilobytes on Linux, of the largest finished child
            self.peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def run_step(command, cwd, env, log):
    """Run one shell command; returns (exit code, seconds, peak bytes, how the peak was measured)."""
    log.write(f"$ {command}\n")
    log.flush()
    started = time.time()
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    with PeakMemory(proc.pid) as memory:
        code = proc.wait()
    return code, time.time() - started, memory.peak, memory.method


def report_markdown(record):
    """The report ``tools/results.py`` puts into RESULTS.md."""
    lines = ["# The quick start, measured", "",
             f"- command (the README's first quick-start line, run as written in a fresh clone): "
             f"`{record['command']}`",
             f"- measured by `{record['tool_command']}` on {record['date']}; {record['hardware']}; "
             f"commit {record['commit'] or 'n/a'}",
             f"- environment: {record['environment']}; peak memory: {record['memory_method']}", "",
             "| step | minutes | peak memory (GB) | exit code |", "| --- | ---: | ---: | ---: |"]
    for step in record["steps"]:
        lines.append(f"| `{step['command']}` | {step['seconds'] / 60:.1f} min | {step['peak_gb']:.1f} GB | "
                     f"{step['code']} |")
    lines.append(f"| whole command | {record['minutes']:.1f} min | {record['peak_gb']:.1f} GB | {record['code']} |")
    job = record.get("main_job") or {}
    if job:
        lines += ["", "The main job's own summary (`results/spectron_mini/1234/summary.json` of the clone):", "",
                  "| measure | value |", "| --- | ---: |",
                  f"| training minutes | {_number(job['training_minutes'], '.1f')} |",
                  f"| optimizer steps | {_number(job['optimizer_steps'], 'd')} |",
                  f"| valid L_s (best checkpoint) | {_number(job['valid_spec'], '.3f')} |",
                  f"| held-out prompt transcript WER, training voices / unseen voices | "
                  f"{_number(job['prompt_wer_seen'], '.1%')} / {_number(job['prompt_wer_unseen'], '.1%')} |"]
    evaluation = record.get("evaluation") or {}
    if evaluation:
        lines += ["", f"Its bundle evaluated (not part of the quick start's minutes; `{RUN}/eval` of the clone; "
                      "120 utterances per split, seed 1234, Whisper tiny.en):", "",
                  "| step | minutes | exit code |", "| --- | ---: | ---: |"]
        lines += [f"| `{step['command']}` | {step['seconds'] / 60:.1f} min | {step['code']} |"
                  for step in evaluation["steps"]]
        if evaluation.get("numbers"):
            splits = list(evaluation["numbers"])
            lines += ["", "| measure | " + " | ".join(splits) + " |", "| --- |" + " ---: |" * len(splits)]
            for label, key, form in EVAL_ROWS:
                lines.append(f"| {label} | " + " | ".join(_number(evaluation["numbers"][s].get(key), form)
                                                           for s in splits) + " |")
            for label, (num, den) in (("free-running / reference (target 1.5 x)", ("generated_wer", "reference_wer")),
                                      ("teacher-forced / vocoded (target 1.3 x)",
                                       ("teacher_forced_wer", "vocoded_wer"))):
                lines.append(f"| {label} | " + " | ".join(
                    _ratio(evaluation["numbers"][s].get(num), evaluation["numbers"][s].get(den)) for s in splits) + " |")
    return "\n".join(lines) + "\n"


#: (label, key of evaluation_numbers, format) of the report's evaluation table
EVAL_ROWS = [("reference audio: Whisper WER (ceiling)", "reference_wer", ".1%"),
             ("vocoded reference: WER (vocoder ceiling)", "vocoded_wer", ".1%"),
             ("teacher-forced speech: WER", "teacher_forced_wer", ".1%"),
             ("free-running speech: WER against the words it spoke", "generated_wer", ".1%"),
             ("prompt transcript WER", "prompt_wer", ".1%"),
             ("speaker similarity, free-running speech", "speaker_similarity", ".3f"),
             ("floor: another speaker's audio", "speaker_similarity_floor", ".3f")]


def _ratio(num, den):
    return "n/a" if num is None or not den else f"{num / den:.2f}x"


def main_job_numbers(clone):
    """Headline numbers of the main job's summary.json in the clone (None when it is missing)."""
    path = Path(clone) / "results" / "spectron_mini" / "1234" / "summary.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    by_split = data.get("test_prompt_transcript_wer_by_split") or {}
    return {"training_minutes": data.get("training_minutes"), "optimizer_steps": data.get("optimizer_steps"),
            "valid_spec": (data.get("valid_final") or {}).get("spec"),
            "prompt_wer_seen": by_split.get("test_seen"), "prompt_wer_unseen": by_split.get("test")}


def _number(value, form):
    return "n/a" if value is None else format(value, form)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/quickstart", help="report folder (the clone and venv go inside)")
    parser.add_argument("--reuse-packages", action="store_true",
                        help="a venv that sees this Python's packages (the install step then installs nothing new)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and the venv afterwards")
    parser.add_argument("--repo", default=str(ROOT), help="the git checkout to clone (default: this one)")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="time the quick start only (no evaluation of the bundle it made)")
    args = parser.parse_args(argv)
    out, repo = Path(args.out), Path(args.repo).resolve()
    command = quick_start_commands(repo / "README.md")[0]
    clone, venv = out / "repo", out / "venv"
    for path in (clone, venv):
        shutil.rmtree(path, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        print("warning: the checkout has uncommitted changes; the clone measures HEAD without them")
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    venv_args = [sys.executable, "-m", "venv", str(venv)] + (["--system-site-packages"] if args.reuse_packages else [])
    subprocess.run(venv_args, check=True)
    env = dict(os.environ, VIRTUAL_ENV=str(venv.resolve()), PIP_NO_CACHE_DIR="1",
               PATH=f"{(venv / 'bin').resolve()}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    steps, code = [], 0
    with open(out / "quickstart.log", "w") as log:
        for part in (p.strip() for p in command.split("&&")):
            code, seconds, peak, method = run_step(part, clone, env, log)
            steps.append({"command": part, "seconds": seconds, "peak_gb": peak / 1e9, "code": code})
            print(f"{part}: {seconds / 60:.1f} min, peak {peak / 1e9:.2f} GB, exit {code}")
            if code != 0:
                break
        evaluation = None
        if code == 0 and not args.no_evaluate and (clone / RUN / "bundle").is_dir():
            evaluation = {"steps": []}
            for part in evaluation_commands():
                eval_code, seconds, _, _ = run_step(part, clone, env, log)
                evaluation["steps"].append({"command": part, "seconds": seconds, "code": eval_code})
                print(f"{part}: {seconds / 60:.1f} min, exit {eval_code}")
                if eval_code != 0:
                    print(f"warning: the evaluation failed (exit {eval_code}); see {out / 'quickstart.log'}")
                    break
            evaluation["numbers"] = evaluation_numbers(clone / RUN / "eval")
    hardware = hardware_info()
    record = {"command": command, "tool_command": "python tools/quickstart.py" + (" --reuse-packages"
                                                                                   if args.reuse_packages else ""),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "hardware": f"{hardware.get('cpu_count')} CPU cores, {hardware.get('processor')}, "
                          f"{hardware.get('accelerator')}, Python {hardware.get('python')}",
              "commit": (checkout_commit(repo) or "n/a") + (" (uncommitted changes not measured)" if dirty else ""),
              "environment": ("a venv seeing this Python's packages" if args.reuse_packages else
                              "a fresh venv, packages from pip's configured index without its cache"),
              "memory_method": method, "steps": steps, "code": code,
              "minutes": sum(s["seconds"] for s in steps) / 60, "peak_gb": max(s["peak_gb"] for s in steps),
              "main_job": main_job_numbers(clone), "evaluation": evaluation}
    (out / "quickstart.json").write_text(json.dumps(record, indent=2))
    (out / "results.md").write_text(report_markdown(record))
    print((out / "results.md").read_text())
    if not args.keep:
        shutil.rmtree(venv, ignore_errors=True)
        shutil.rmtree(clone / "data", ignore_errors=True)  # the corpus (about 350 MB); the run folder stays
    if code != 0:
        print(f"error: the quick start failed (exit {code}); see {out / 'quickstart.log'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
