#!/usr/bin/env python3
"""Measure the README's quick start on this machine: its main-job command in a fresh clone and a fresh venv.

    python tools/quickstart.py                     # writes results/quickstart/results.md and quickstart.json
    python tools/quickstart.py --reuse-packages    # the venv sees this Python's packages: times the job alone

The command measured is the first line of the README's "Quick start" block, run as written (each ``&&`` part
timed on its own) from a fresh clone of this checkout's HEAD, with ``python`` the fresh venv's: the install
part installs everything from the package index pip is configured with (no pip cache), and the main job
builds its corpus and pre-trained parts from nothing. Peak memory is the largest total resident memory of the
command's process tree, sampled every half second (with ``psutil``; without it, the largest single process).
``tools/results.py`` puts the report into the recipe's RESULTS.md (``reports:`` in its results.yaml), and the
README quotes it. Run nothing else CPU-heavy meanwhile: the minutes are wall-clock.
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
    return "\n".join(lines) + "\n"


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
              "main_job": main_job_numbers(clone)}
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
