#!/usr/bin/env python3
"""Run a grid of recipe overrides, resume it, and collect one table of metrics.

    python tools/sweep.py recipes/LibriLight/train.py recipes/LibriLight/hparams/spectron_mini.yaml \\
        --grid w_ce=10.0,0.0 --grid seed=1,2,3 \\
        --metric test_prompt_transcript_wer --metric valid_final.spec --jobs 2 --out results/sweeps/no_ce
    python tools/sweep.py --sweep my_sweep.yaml      # the same as a YAML file (keys: the long options)

Every point of the grid (the product of the ``--grid`` lists, or the
``points`` list of a sweep YAML) is one run of the recipe script with those
overrides and ``--output_folder=<out>/<key>-<value>,...`` (so runs never share
a folder). A point whose folder already holds ``--done-file`` (default
``summary.json``) is not run again: rerunning the same command resumes a
half-finished sweep (the recipe resumes its own unfinished run from its
checkpoints). ``--jobs N`` runs N points at a time, each with
``OMP_NUM_THREADS`` = cores / N (or the ``OMP_NUM_THREADS`` the sweep itself was
started with, e.g. ``OMP_NUM_THREADS=1`` to leave a core free for other work).
Ctrl-C or SIGTERM (``kill <sweep pid>``) stops the sweep: its running recipes get SIGINT, as from Ctrl-C
(they checkpoint and exit), no further point starts, and the same command resumes them.

The metrics are dotted keys into each run's JSON results (``--results-file``,
default ``summary.json``; e.g. ``valid_final.spec``, or with
``--results-file eval/results.json`` ``speech.generated.wer.value``). They are
collected into ``<out>/sweep.csv`` (one row per run), and, grouped over the
``--over`` key (default ``seed``), into ``<out>/sweep.md`` (mean and 95%
Student-t interval over the group) and ``<out>/sweep.png``. A metric written
``file:dotted.key`` reads another JSON file of the run folder (e.g.
``summary.json:valid_final.spec`` next to evaluation metrics).

A sweep YAML can also name **variants**: sets of overrides that belong together
(``no_derivative: {w_freq: 0.0, w_time: 0.0}``), crossed with the grid; a
point's folder then starts with ``variant-<name>``. ``then`` (``--then``,
repeatable) is a command run for each point after the recipe, with
``{folder}`` replaced by the point's folder and ``{python}`` by this Python
(e.g. the evaluation recipe on the run's bundle); the recipe is skipped when its ``--train-done-file`` exists, and the point is
finished when ``--done-file`` exists (set it to the evaluation's results).

``--only key=value1,value2`` (repeatable) runs only the points whose values
match every ``--only``, e.g. one seed of each ablation on a machine that has
time for two runs; the others are left for a later call and still appear in
the table (as not finished).

    python tools/sweep.py --sweep recipes/LibriLight/sweeps/ablation_mini.yaml
"""
import argparse
import csv
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

try:
    from spectron_kit.evaluation.metrics import t_interval as interval
    from spectron_kit.progress import progress_bar
    from spectron_kit.recipe import RecipeConfigError, parse_overrides, threads_per_job
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from spectron_kit.evaluation.metrics import t_interval as interval
    from spectron_kit.progress import progress_bar
    from spectron_kit.recipe import RecipeConfigError, parse_overrides, threads_per_job

console = Console()


class SweepError(ValueError):
    """A sweep that cannot run (bad grid, missing script, unknown metric)."""


def parse_value(text):
    """A grid value as YAML reads it (``0.0`` float, ``3e-4`` float, ``True``, ``[1, 2]``, text)."""
    return parse_overrides(f"v: {text}")["v"]


def parse_grid(items, flag="--grid"):
    """``["k=a,b", "j=1"]`` -> ``{"k": ["a", "b"], "j": [1]}`` (values parsed as YAML, order kept)."""
    grid = {}
    for item in items or ():
        if "=" not in item:
            raise SweepError(f"{flag} {item!r}: write key=value1,value2 (e.g. {flag} seed=1,2,3)")
        key, values = item.split("=", 1)
        key = key.strip().lstrip("-")
        if not key or key in grid:
            raise SweepError(f"{flag} {item!r}: {'empty' if not key else 'repeated'} key; give each key once")
        parts = [v.strip() for v in re.split(r",(?![^\[]*\])", values) if v.strip()]
        if not parts:
            raise SweepError(f"{flag} {item!r}: no values; write key=value1,value2")
        grid[key] = [parse_value(v) for v in parts]
    return grid


def select_points(points, only):
    """The points matching every ``--only`` filter (``{key: [values]}``); a key no point has is a SweepError."""
    wanted = {key: {_value_text(v) for v in values} for key, values in only.items()}
    for key, values in wanted.items():
        known = {_value_text(p[key]) for p in points if key in p}
        if not known:
            raise SweepError(f"--only {key}=...: no point has the key {key!r}; the points' keys are "
                             f"{', '.join(dict.fromkeys(k for p in points for k in p)) or 'none'}")
        unknown = [_value_text(v) for v in only[key] if _value_text(v) not in known]
        if unknown:
            raise SweepError(f"--only {key}={','.join(unknown)}: no point has that value; "
                             f"{key} takes {', '.join(sorted(known))}")
    return [p for p in points if all(_value_text(p.get(k)) in values for k, values in wanted.items())]


def grid_points(grid):
    """Every combination of a grid, as a list of ``{key: value}`` in grid order."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _value_text(value):
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def point_name(point):
    """Folder name of a point: ``key-value,key-value`` with characters unsafe in paths replaced.

    No ``=``: SpeechBrain's command-line parser turns every ``=`` of a value
    into a space, so ``--output_folder=a=b`` would name another folder.
    """
    text = ",".join(f"{k}-{_value_text(v)}" for k, v in point.items()) or "base"
    return re.sub(r"[^A-Za-z0-9._,+-]", "_", text)


def lookup(record, dotted):
    """``record["a"]["b"]`` for ``"a.b"``; None when a part is missing."""
    value = record
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def point_overrides(point, variants):
    """The recipe overrides of a point: its variant's overrides, then its grid values."""
    overrides = {}
    if "variant" in point:
        if point["variant"] not in variants:
            raise SweepError(f"variant {point['variant']!r} is not defined; the sweep file defines "
                             f"{', '.join(map(str, variants)) or 'none'}")
        overrides.update(variants[point["variant"]] or {})
    overrides.update({k: v for k, v in point.items() if k != "variant"})
    return overrides


def point_threads(jobs, environ=None):
    """Torch threads per point (:func:`spectron_kit.recipe.threads_per_job`), a bad value a SweepError."""
    try:
        return threads_per_job(jobs, environ)
    except RecipeConfigError as err:
        raise SweepError(str(err)) from None


#: the recipe processes running now, and whether SIGTERM asked the sweep to stop
RUNNING, STOPPING = set(), threading.Event()


def stop_on_sigterm(signum=None, frame=None):
    """SIGTERM: no further point starts, and each running recipe gets SIGINT (it checkpoints and exits, as on
    Ctrl-C), so no recipe is left running without its sweep."""
    STOPPING.set()
    for process in list(RUNNING):
        process.send_signal(signal.SIGINT)


def run_point(script, hparams, point, folder, extra, threads, log_file, variants=None, then=(),
              train_done_file=None):
    """Run one point of the sweep (the recipe, then each ``then`` command); returns (return code, seconds),
    the code None when SIGTERM stopped the sweep before a command started."""
    commands = []
    if not (train_done_file and (folder / train_done_file).is_file()):
        commands.append([sys.executable, str(script), str(hparams),
                         *[f"--{k}={_value_text(v)}" for k, v in point_overrides(point, variants or {}).items()],
                         f"--output_folder={folder}", *extra])
    for step in then:
        step = step.replace("{folder}", shlex.quote(str(folder))).replace("{python}", shlex.quote(sys.executable))
        commands.append(shlex.split(step))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.time()
    folder.mkdir(parents=True, exist_ok=True)
    code = 0
    with open(log_file, "a") as log:
        for command in commands:
            if STOPPING.is_set():
                return None, time.time() - started
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            RUNNING.add(process)
            if STOPPING.is_set():  # SIGTERM came between the check above and this start
                process.send_signal(signal.SIGINT)
            try:
                code = process.wait()
            finally:
                RUNNING.discard(process)
            if code != 0:
                break
    return code, time.time() - started


def collect(points, out, results_file, metrics):
    """One row per point: its overrides, its folder and every metric (None when missing)."""
    rows = []
    for point in points:
        folder = out / point_name(point)
        path = folder / results_file
        records = {}

        def read(name):
            if name not in records:
                file = folder / name
                records[name] = json.loads(file.read_text()) if file.is_file() else {}
            return records[name]

        row = {**{k: _value_text(v) for k, v in point.items()}, "folder": str(folder),
               "done": path.is_file()}
        for metric in metrics:
            name, key = metric.split(":", 1) if ":" in metric else (results_file, metric)
            value = lookup(read(name), key)
            row[metric] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        rows.append(row)
    return rows


def summarise(rows, keys, over, metrics):
    """Group rows by every key but ``over``: ``[(group dict, n, {metric: (mean, low, high)})]``."""
    group_keys = [k for k in keys if k != over]
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in group_keys), []).append(row)
    out = []
    for values, members in groups.items():
        done = [r for r in members if r["done"]]
        out.append((dict(zip(group_keys, values)), len(done),
                    {m: interval([r[m] for r in done]) for m in metrics}))
    return out


def _fmt(x):
    if x is None:
        return "-"
    return f"{x:.4g}"


def write_reports(rows, summary, keys, over, metrics, out):
    """``sweep.csv``, ``sweep.md`` and ``sweep.png``; returns their paths."""
    columns = [*keys, "folder", "done", *metrics]
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    group_keys = [k for k in keys if k != over]
    lines = [f"# Sweep: {len(rows)} runs, {sum(r['done'] for r in rows)} finished", "",
             f"Mean and 95% Student-t interval over `{over}` (n = finished runs in the group).", "",
             "| " + " | ".join([*group_keys, "n", *metrics]) + " |",
             "| " + " | ".join(["---"] * len(group_keys) + ["---:"] * (1 + len(metrics))) + " |"]
    for group, n, stats in summary:
        cells = [str(group[k]) for k in group_keys] + [str(n)]
        for m in metrics:
            mean, low, high = stats[m]
            cells.append("-" if mean is None else (_fmt(mean) if low == high else
                                                   f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"))
        lines.append("| " + " | ".join(cells) + " |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.6), squeeze=False)
    labels = [",".join(f"{k}={g[k]}" for k in group_keys) or "all" for g, _, _ in summary]
    for ax, metric in zip(axes[0], metrics):
        means = [s[metric][0] for _, _, s in summary]
        heights = [m if m is not None else 0.0 for m in means]
        errors = [[(m - s[metric][1]) if m is not None else 0.0 for (_, _, s), m in zip(summary, means)],
                  [(s[metric][2] - m) if m is not None else 0.0 for (_, _, s), m in zip(summary, means)]]
        ax.bar(range(len(summary)), heights, yerr=errors, capsize=4, color="tab:blue")
        ax.set_xticks(range(len(summary)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
    fig.suptitle(f"mean and 95% interval over {over}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)
    plt.close(fig)
    return {"csv": out / "sweep.csv", "markdown": out / "sweep.md", "plot": out / "sweep.png"}


def load_sweep_file(path):
    """Read a sweep YAML: keys ``script``, ``hparams``, ``grid`` ({key: [values]}) or ``points``
    ([{key: value}]), ``metrics``, and optionally ``out``, ``jobs``, ``over``, ``results_file``,
    ``done_file``, ``train_done_file``, ``then`` (list of commands), ``variants`` ({name: {key: value}})
    and ``extra`` (list of arguments passed to every run)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    known = {"script", "hparams", "grid", "points", "variants", "metrics", "out", "jobs", "over",
             "results_file", "done_file", "train_done_file", "then", "extra"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SweepError(f"{path}: unknown keys {', '.join(unknown)}; a sweep file has {', '.join(sorted(known))}")
    return data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("script", nargs="?", help="recipe script (e.g. recipes/LibriLight/train.py)")
    parser.add_argument("hparams", nargs="?", help="its base YAML")
    parser.add_argument("--sweep", help="a sweep YAML instead of the arguments below")
    parser.add_argument("--grid", action="append", help="key=value1,value2 (repeat for a product grid)")
    parser.add_argument("--metric", action="append", dest="metrics", help="dotted key into each run's results")
    parser.add_argument("--out", help="sweep folder (default: results/sweeps/<base YAML name>)")
    parser.add_argument("--jobs", type=int, default=1, help="points run at a time (default 1)")
    parser.add_argument("--over", default="seed", help="key averaged over in the table (default: seed)")
    parser.add_argument("--results-file", default="summary.json", help="results JSON inside each run folder")
    parser.add_argument("--done-file", default="summary.json", help="a run is finished when this file exists")
    parser.add_argument("--train-done-file", default="summary.json",
                        help="with --then: the recipe is not rerun when this file exists in the run folder")
    parser.add_argument("--then", action="append", default=[],
                        help="command run in each point after the recipe; {folder} is its folder (repeatable)")
    parser.add_argument("--only", action="append", default=[],
                        help="key=value1,value2: run only the points with these values (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="list the points and their folders only")
    args, extra = parser.parse_known_args(argv)
    try:
        return _main(args, extra)
    except SweepError as err:
        console.print(f"error: {err}", style="red", soft_wrap=True)
        return 2


def _main(args, extra):
    points, variants = None, {}
    if args.sweep:
        spec = load_sweep_file(args.sweep)
        args.script = spec.get("script", args.script)
        args.hparams = spec.get("hparams", args.hparams)
        args.metrics = spec.get("metrics", args.metrics)
        args.out = spec.get("out", args.out)
        args.jobs = int(spec.get("jobs", args.jobs))
        args.over = spec.get("over", args.over)
        args.results_file = spec.get("results_file", args.results_file)
        args.done_file = spec.get("done_file", args.done_file)
        args.train_done_file = spec.get("train_done_file", args.train_done_file)
        args.then = list(spec.get("then", [])) + args.then
        extra = list(spec.get("extra", [])) + extra
        variants = dict(spec.get("variants") or {})
        if spec.get("points"):
            points = [dict(p) for p in spec["points"]]
        elif spec.get("grid"):
            points = grid_points({k: list(v) if isinstance(v, list) else [v] for k, v in spec["grid"].items()})
    if points is None:
        points = grid_points(parse_grid(args.grid))
    if variants:
        points = [{"variant": name, **p} for name in variants for p in points]
    for p in points:
        point_overrides(p, variants)  # unknown variant names fail here, before anything runs
    if not args.script or not Path(args.script).is_file():
        raise SweepError(f"recipe script {args.script!r} not found; pass e.g. recipes/LibriLight/train.py")
    if not args.hparams or not Path(args.hparams).is_file():
        raise SweepError(f"base YAML {args.hparams!r} not found; pass e.g. "
                         "recipes/LibriLight/hparams/spectron_mini.yaml")
    if not args.metrics:
        raise SweepError("no --metric given; name at least one dotted key of the runs' results, "
                         "e.g. --metric valid_final.loss")
    if args.jobs < 1:
        raise SweepError(f"--jobs={args.jobs}: run at least 1 point at a time")
    if any("output_folder" in p for p in points):
        raise SweepError("output_folder is chosen by the sweep (one folder per point); remove it from the grid")
    out = Path(args.out or Path("results") / "sweeps" / Path(args.hparams).stem)
    out.mkdir(parents=True, exist_ok=True)
    if not args.dry_run:  # one sweep per folder (its sweep.json and sweep.md would mix two grids)
        from spectron_kit.recipe import RecipeConfigError, lock_run_folder
        try:
            lock_run_folder(out, key="out", what="sweep")
        except RecipeConfigError as err:
            raise SweepError(str(err)) from None
    keys = list(dict.fromkeys(k for p in points for k in p))
    (out / "sweep.json").write_text(json.dumps({"script": str(args.script), "hparams": str(args.hparams),
                                                "points": points, "variants": variants, "then": args.then,
                                                "extra": extra, "metrics": args.metrics},
                                               indent=2))
    selected = select_points(points, parse_grid(args.only, "--only")) if args.only else points
    finished = [p for p in points if (out / point_name(p) / args.done_file).is_file()]
    todo = [p for p in selected if p not in finished]
    table = Table(title=f"sweep: {len(points)} points, {len(finished)} already finished"
                        + (f", {len(selected)} selected by --only" if args.only else ""))
    for column in ("point", "folder", "state"):
        table.add_column(column, overflow="fold")
    for p in points:
        table.add_row(", ".join(f"{k}={_value_text(v)}" for k, v in p.items()) or "(base)",
                      str(out / point_name(p)),
                      "to run" if p in todo else "finished" if p in finished else "not selected")
    console.print(table)
    if args.dry_run:
        return 0
    threads = point_threads(args.jobs)
    failed, stopped = [], []
    with progress_bar(console=console) as progress:
        task = progress.add_task("sweep runs", total=len(todo))

        def one(point):
            folder = out / point_name(point)
            code, seconds = run_point(args.script, args.hparams, point, folder, extra, threads,
                                      folder / "sweep_run.log", variants, args.then,
                                      args.train_done_file if args.then else None)
            progress.advance(task)
            if STOPPING.is_set():
                stopped.append(point)
            elif code != 0:
                failed.append((point, code, folder / "sweep_run.log"))
            return code

        STOPPING.clear()  # a SIGTERM of an earlier sweep in this process does not stop this one
        previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
        try:
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                list(pool.map(one, todo))
        finally:
            signal.signal(signal.SIGTERM, previous)
    rows = collect(points, out, args.results_file, args.metrics)
    summary = summarise(rows, keys, args.over, args.metrics)
    paths = write_reports(rows, summary, keys, args.over, args.metrics, out)
    console.print((out / "sweep.md").read_text())
    console.print(f"wrote {paths['csv']}, {paths['markdown']}, {paths['plot']}")
    for point, code, log in failed:
        console.print(f"[red]run failed[/red] (exit {code}): {point_name(point)}; see {log}", soft_wrap=True)
    if stopped:
        console.print(f"[yellow]stopped[/yellow] (SIGTERM): {len(stopped)} unfinished point(s) "
                      f"({', '.join(point_name(p) for p in stopped)}); the same command resumes them", soft_wrap=True)
        return 1
    missing = [r for r in rows if r["done"] and any(r[m] is None for m in args.metrics)]
    for row in missing:
        for metric in (m for m in args.metrics if row[m] is None):
            name, key = metric.split(":", 1) if ":" in metric else (args.results_file, metric)
            console.print(f"[yellow]warning:[/yellow] {row['folder']}/{name} has no {key}", soft_wrap=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
