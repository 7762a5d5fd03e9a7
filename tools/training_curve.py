#!/usr/bin/env python3
"""Intelligibility against training time: evaluate a run's snapshot bundles and plot ASR WER per minute.

A training run with ``--snapshot_minutes=[5,10,20,40,80]`` leaves a bundle in
``<run>/snapshots/<m>min/`` after m minutes of training. This tool evaluates
each of them (and the final ``<run>/bundle``) with the recipe's evaluation
(``recipes/LibriLight/evaluate.py``: Whisper ASR, ceilings (a)-(c), the
generation (d), the floor) on the same test utterances, then writes
``<run>/curve/curve.csv``, ``curve.md`` and ``curve.png``: ASR WER of the
generated speech against the model's own text, and of the teacher-forced
speech against the true text, per training minute, with the reference audio
(a) and the vocoder ceiling (b) as horizontal lines. ``--test-folder`` may be
given several times (e.g. ``test_seen``, unseen sentences in the training
voices, and ``test``, unseen voices): every split is evaluated on every
bundle and gets its own panel and table.

    python tools/training_curve.py results/spectron_mini/1234 \\
        --test-folder data/mini_corpus/test_seen --test-folder data/mini_corpus/test \\
        --lm-scorer data/mini_corpus/pretrained/1234/text_lm --num-utterances 48

Evaluations already done are reused, so rerunning after a longer training
only evaluates the new snapshots. Extra ``evaluate.py`` overrides go after
``--``: ``... -- --transcriber_name=pocketsphinx``.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVALUATE = REPO / "recipes" / "LibriLight" / "evaluate.py"
EVALUATE_YAML = REPO / "recipes" / "LibriLight" / "hparams" / "evaluate.yaml"
COLUMNS = ("split", "minutes", "steps", "bundle", "wer_generated", "wer_teacher_forced", "wer_reference",
           "wer_vocoded", "wer_flat", "speaker_sim_generated", "speaker_sim_other", "mos_generated", "mos_vocoded", "n")


def _is_final(row):
    """Whether a curve row is the run's final bundle (not a snapshot)."""
    return Path(str(row.get("bundle", ""))).parent.name != "snapshots"


def find_bundles(run):
    """``[(training minutes, bundle folder)]`` of a run's snapshots and final bundle, by time.

    Arguments:
        run: the run's output folder (holding ``snapshots/`` and ``bundle/``).

    Returns:
        list of (float or None, Path); the final bundle's minutes come from
        ``summary.json`` (None when absent).
    """
    run = Path(run)
    found = []
    for folder in sorted((run / "snapshots").glob("*min")):
        info = folder / "training.json"
        if (folder / "spectron_config.json").is_file() and info.is_file():
            found.append((float(json.loads(info.read_text())["training_minutes"]), folder))
    final = run / "bundle"
    if (final / "spectron_config.json").is_file():
        summary = run / "summary.json"
        minutes = json.loads(summary.read_text()).get("training_minutes") if summary.is_file() else None
        found.append((minutes, final))
    if not found:
        raise SystemExit(f"no bundles under {run}: train with --snapshot_minutes=[5,10,20] (and let it finish) "
                         "to leave snapshots/<m>min/ and bundle/")
    return sorted(found, key=lambda item: float("inf") if item[0] is None else item[0])


def bundle_steps(bundle):
    """Optimiser steps behind a bundle: a snapshot's ``training.json``, or the run's ``summary.json`` for the
    final bundle (None when neither says)."""
    bundle = Path(bundle)
    for info in (bundle / "training.json", bundle.parent / "summary.json"):
        if info.is_file():
            steps = json.loads(info.read_text()).get("optimizer_steps")
            if steps is not None:
                return int(steps)
    return None


def evaluate(bundle, test_folder, out_dir, args, extra):
    """Run evaluate.py on one bundle and split unless its results are already there; return the results dict."""
    results = out_dir / "results.json"
    if not results.is_file():
        cmd = [sys.executable, str(EVALUATE), str(EVALUATE_YAML), f"--model_dir={bundle}",
               f"--test_folder={test_folder}", f"--lm_scorer_source={args.lm_scorer}",
               f"--output_folder={out_dir}", f"--num_utterances={args.num_utterances}",
               f"--num_samples={args.num_samples}", f"--seed={args.seed}", "--noprogressbar", *extra]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(results.read_text())


def curve_row(minutes, bundle, results, split=""):
    """One row of the curve table from an evaluation's results."""
    speech = results["speech"]

    def value(cond, metric):
        entry = speech.get(cond, {}).get(metric)
        return None if entry is None else entry["value"]

    return {"split": split, "minutes": minutes, "steps": bundle_steps(bundle), "bundle": str(bundle),
            "wer_generated": value("generated", "wer"), "wer_teacher_forced": value("teacher_forced", "wer"),
            "wer_reference": value("reference", "wer"), "wer_vocoded": value("vocoded", "wer"),
            "wer_flat": value("flat", "wer"), "speaker_sim_generated": value("generated", "speaker_sim"),
            "speaker_sim_other": value("other_speaker", "speaker_sim"),
            "mos_generated": value("generated", "mos"), "mos_vocoded": value("vocoded", "mos"),
            "n": results["counts"]["evaluated"]}


def _pct(value):
    return "-" if value is None else f"{100 * value:.1f}%"


def write_outputs(rows, out_dir, title, machine=None):
    """curve.csv, curve.md and curve.png in ``out_dir`` (one table and one panel per split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(out_dir / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    splits = list(dict.fromkeys(r.get("split", "") for r in rows))
    lines = [f"# {title}", ""]
    for split in splits:
        lines += ([f"## {split}", ""] if split else []) + [
            "| training minutes | (d) generated vs own text | (c) teacher-forced | (a) reference audio | "
            "(b) vocoded reference | floor | speaker sim (d) / other speaker | predicted MOS (d) / (b) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in (r for r in rows if r.get("split", "") == split):
            minutes = "-" if r["minutes"] is None else f"{r['minutes']:.1f}"
            if _is_final(r):
                minutes += " (final bundle: the checkpoint best_checkpoint_key picks)"
            sim = " / ".join("-" if r.get(k) is None else f"{r[k]:.3f}"
                             for k in ("speaker_sim_generated", "speaker_sim_other"))
            mos = " / ".join("-" if r.get(k) is None else f"{r[k]:.2f}" for k in ("mos_generated", "mos_vocoded"))
            lines.append(f"| {minutes} | {_pct(r['wer_generated'])} | {_pct(r['wer_teacher_forced'])} | "
                         f"{_pct(r['wer_reference'])} | {_pct(r['wer_vocoded'])} | {_pct(r['wer_flat'])} | "
                         f"{sim} | {mos} |")
        lines.append("")
    (out_dir / "curve.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, len(splits), figsize=(7 * len(splits), 4.2), squeeze=False)
    for ax, split in zip(axes[0], splits):
        _panel(ax, [r for r in rows if r.get("split", "") == split], f"{title}: {split}" if split else title,
               machine)
    fig.tight_layout()
    fig.savefig(out_dir / "curve.png", dpi=100)
    plt.close(fig)


def _ceiling_lines(ax, rows):
    """The ceilings (a) and (b), mean over ``rows``, and the targets 1.5 x (a) and 1.3 x (b), as lines."""
    reference = [r["wer_reference"] for r in rows if r.get("wer_reference") is not None]
    vocoded = [r["wer_vocoded"] for r in rows if r.get("wer_vocoded") is not None]
    if reference:
        ref = 100 * sum(reference) / len(reference)
        ax.axhline(ref, color="green", linestyle=":", label=f"(a) reference audio ({ref:.0f}%)")
        ax.axhline(1.5 * ref, color="grey", linestyle="-.", label=f"1.5 x (a): target of (d) ({1.5 * ref:.0f}%)")
    if vocoded:
        voc = 100 * sum(vocoded) / len(vocoded)
        ax.axhline(voc, color="purple", linestyle=":", label=f"(b) vocoded reference ({voc:.0f}%)")
        ax.axhline(1.3 * voc, color="tab:orange", linestyle=(0, (1, 3)),
                   label=f"1.3 x (b): target of (c) ({1.3 * voc:.0f}%)")


def _panel(ax, rows, title, machine=None):
    """One split's curve: (c) and (d) per training minute, the ceilings as lines."""
    timed = [r for r in rows if r["minutes"] is not None and not _is_final(r)]
    finals = [r for r in rows if r["minutes"] is not None and _is_final(r)]
    xs = [r["minutes"] for r in timed]
    top = 105.0
    for key, label, style, colour in (("wer_generated", "(d) generated speech vs its own text", "o-", "tab:blue"),
                                      ("wer_teacher_forced", "(c) teacher-forced speech vs true text", "s--",
                                       "tab:orange")):
        points = [(x, 100 * r[key]) for x, r in zip(xs, timed) if r[key] is not None]
        if points:
            ax.plot(*zip(*points), style, label=label, color=colour)
            top = max(top, max(y for _, y in points) + 5)
        for r in finals:  # the final bundle is the checkpoint best_checkpoint_key picks: its own marker
            if r[key] is not None:
                ax.plot([r["minutes"]], [100 * r[key]], "*", color=colour, markersize=12,
                        label=f"{label.split(' ')[0]} final bundle")
                top = max(top, 100 * r[key] + 5)
    _ceiling_lines(ax, timed)
    if xs and min(xs) > 0 and max(xs) / min(xs) > 4:  # ticks at the snapshot minutes
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:.0f}" for x in xs])
        ax.set_xticks([], minor=True)  # no log-scale minor labels over the minutes
    ax.set_xlabel(f"training minutes ({machine})" if machine else "training minutes")
    ax.set_ylabel("ASR WER (%)")
    ax.set_ylim(0, top)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def read_curve(path):
    """Rows of a ``curve.csv`` (numbers as floats, blanks as None)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (None if v in ("", None) else v if k in ("split", "bundle") else float(v))
                         for k, v in row.items()})
    return rows


def write_comparison(runs, out_file):
    """One panel per split: (c) and (d) of each run against optimiser steps, the ceilings as lines.

    Arguments:
        runs: list of (label, rows of its curve); rows without steps are left out.
        out_file: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(r.get("split", "") for _, rows in runs for r in rows))
    fig, axes = plt.subplots(1, len(splits), figsize=(7 * len(splits), 4.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, split in zip(axes[0], splits):
        for i, (label, rows) in enumerate(runs):
            here = sorted((r for r in rows if r.get("split", "") == split and r.get("steps") is not None),
                          key=lambda r: r["steps"])
            for key, style, name in (("wer_generated", "o-", "(d)"), ("wer_teacher_forced", "s--", "(c)")):
                points = [(r["steps"], 100 * r[key]) for r in here if r.get(key) is not None]
                if points:
                    ax.plot(*zip(*points), style, color=colours[i % len(colours)], label=f"{name} {label}")
        _ceiling_lines(ax, [r for _, rows in runs for r in rows if r.get("split", "") == split])
        ax.set_xscale("log")
        ax.set_xlabel("optimiser steps")
        ax.set_ylabel("ASR WER (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"(c) teacher-forced and (d) generated speech: {split}" if split else "ASR WER", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="training output folder, e.g. results/spectron_mini/1234")
    parser.add_argument("--test-folder", required=True, action="append",
                        help="LibriSpeech-layout split folder (repeat for several splits)")
    parser.add_argument("--lm-scorer", required=True, help="text LM that scores ASR transcripts")
    parser.add_argument("--num-utterances", type=int, default=48)
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--out", default=None, help="output folder (default <run>/curve)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--machine", default=None, help="what the minutes were measured on, for the x axis "
                                                        "(e.g. '2-core CPU', 'one H200 GPU')")
    parser.add_argument("--label", default=None, help="this run's name in --compare's figure (default: the run)")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=CURVE_CSV",
                        help="another run's curve.csv (made by this tool): also draw compare.png, (c) and (d) of "
                             "both runs against optimiser steps; repeat for more runs")
    args, extra = parser.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    out_dir = Path(args.out or Path(args.run) / "curve")
    out_dir.mkdir(parents=True, exist_ok=True)
    from spectron_kit.recipe import RecipeConfigError, lock_run_folder
    try:  # one curve per folder (each point's evaluation takes its own folder's lock as well)
        lock_run_folder(out_dir, key="out", what="training curve")
    except RecipeConfigError as err:
        sys.exit(f"error: {err}")
    rows = []
    several = len(args.test_folder) > 1
    for folder in args.test_folder:
        split = Path(folder).resolve().name
        for minutes, bundle in find_bundles(args.run):
            name = bundle.name if bundle.parent.name == "snapshots" else "final"
            where = out_dir / name / split if several else out_dir / name
            rows.append(curve_row(minutes, bundle, evaluate(bundle, folder, where, args, extra),
                                  split if several else ""))
    title = args.title or f"ASR WER vs training time: {Path(args.run)}"
    write_outputs(rows, out_dir, title, args.machine)
    print((out_dir / "curve.md").read_text())
    print(f"wrote {out_dir / 'curve.png'}, {out_dir / 'curve.csv'}")
    if args.compare:
        runs = [(args.label or str(args.run), rows)]
        for item in args.compare:
            label, sep, path = item.partition("=")
            if not sep or not Path(path).is_file():
                raise SystemExit(f"--compare {item!r}: give LABEL=PATH of an existing curve.csv "
                                 "(run this tool on that run first)")
            other = read_curve(path)
            if all(r.get("steps") is None for r in other):
                raise SystemExit(f"--compare {item!r}: {path} has no optimiser steps (written by an older version "
                                 "of this tool): rerun the tool on that run, its evaluations are reused")
            runs.append((label, other))
        write_comparison(runs, out_dir / "compare.png")
        print(f"wrote {out_dir / 'compare.png'}")
    return rows


if __name__ == "__main__":
    main()
