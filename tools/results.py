#!/usr/bin/env python3
"""Write a recipe's RESULTS.md from its runs' own files (ESPnet's RESULTS.md, generated, never typed).

    python tools/results.py recipes/LibriLight

reads ``<recipe>/results.yaml`` (the runs to report: a name, a title, the training folder with its
``summary.json`` and the evaluation folder with one ``<split>/results.json`` per split; groups of runs
that differ only in their seed) and writes ``<recipe>/RESULTS.md``: per run, the command, date, hardware
and commit it came from, then its numbers with their yardsticks (the reference audio's and the vocoded
reference's WER as ceilings, the flat "mean frame" prediction and another speaker's audio as floors);
per group, the mean and 95% Student-t interval over its seeds. The READMEs quote these numbers and link here.

Runs live in ``results/``, which is not in git, so a fresh clone or another machine has none of them: every
generation also writes ``<recipe>/RESULTS.json`` (the numbers it read, per run, with the date read), and a run
whose folders are missing here keeps its numbers from that record (said so under its heading); a run in
neither keeps its section of the previous RESULTS.md verbatim, or is listed as missing - never dropped.
"""
import argparse
import datetime
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spectron_kit.evaluation.stats import t_interval  # noqa: E402

#: (row label, how to read it from one split's results.json, format)
SPLIT_ROWS = [
    ("(a) reference audio: Whisper WER (ceiling)", lambda r: r["speech"]["reference"]["wer"]["value"], "pct"),
    ("(b) vocoded reference frames: WER (vocoder ceiling)", lambda r: r["speech"]["vocoded"]["wer"]["value"], "pct"),
    ("(c) teacher-forced frames, vocoded: WER", lambda r: r["speech"]["teacher_forced"]["wer"]["value"], "pct"),
    ("(c) / (b)", lambda r: r["speech"]["teacher_forced"]["wer"]["value"] / r["speech"]["vocoded"]["wer"]["value"],
     "x"),
    ("(d) free-running speech: WER against the words it spoke", lambda r: r["speech"]["generated"]["wer"]["value"],
     "pct"),
    ("(d) / (a)", lambda r: r["speech"]["generated"]["wer"]["value"] / r["speech"]["reference"]["wer"]["value"], "x"),
    ("floor: the mean frame at every step, vocoded: WER", lambda r: r["speech"]["flat"]["wer"]["value"], "pct"),
    ("speaker similarity to the prompt, (d)", lambda r: r["aggregates"]["speaker_sim_generated"]["value"], "3f"),
    ("floor: another speaker's audio", lambda r: r["aggregates"]["speaker_sim_other_speaker"]["value"], "3f"),
    ("predicted MOS, (d)", lambda r: r["aggregates"]["mos_generated"]["value"], "2f"),
    ("predicted MOS, (b) vocoded reference", lambda r: r["speech"]["vocoded"]["mos"]["value"], "2f"),
    ("prompt transcript WER", lambda r: r["aggregates"]["prompt_wer"]["value"], "pct"),
    ("utterances", lambda r: r["speech"]["generated"]["wer"]["n"], "d"),
]
#: (row label, key path in the training summary.json, format)
TRAIN_ROWS = [
    ("training minutes", ("training_minutes",), "1f"),
    ("optimizer steps", ("optimizer_steps",), "d"),
    ("valid L_s (best checkpoint)", ("valid_final", "spec"), "3f"),
    ("valid CE (best checkpoint)", ("valid_final", "ce"), "3f"),
]


def fmt(value, kind):
    """A number as RESULTS.md prints it (None: n/a)."""
    if value is None:
        return "n/a"
    return {"pct": f"{100 * value:.1f}%", "x": f"{value:.2f}x", "3f": f"{value:.3f}", "2f": f"{value:.2f}",
            "1f": f"{value:.1f}", "d": f"{int(value)}"}[kind]


def read(getter, data):
    try:
        return getter(data)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def commit_of(folder):
    """The git revision SpeechBrain wrote into the run's env.log (None when absent)."""
    env = Path(folder) / "env.log"
    if not env.is_file():
        return None
    match = re.search(r"Git revision:\s*\n\s*([0-9a-f]{7,40})", env.read_text())
    return match.group(1) if match else None


def train_command(folder):
    """The training command a run recorded: ``summary.json``'s ``command`` or the ``$ ...`` line a sweep wrote
    into ``sweep_run.log`` (None for runs that recorded none)."""
    summary = Path(folder) / "summary.json"
    recorded = json.loads(summary.read_text()).get("command") if summary.is_file() else None
    if recorded:
        return recorded
    log = Path(folder) / "sweep_run.log"
    if log.is_file():
        first = log.read_text().splitlines()[:1]
        if first and first[0].startswith("$ "):
            words = first[0][2:].split()
            return " ".join(["python"] + words[1:]) if words and words[0].endswith(("python", "python3")) \
                else first[0][2:]
    return None


def split_results(eval_folder):
    """``{split: results.json}`` of an evaluation folder (one folder per split, or one results.json)."""
    folder = Path(eval_folder)
    found = {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/results.json"))}
    if not found and (folder / "results.json").is_file():
        data = json.loads((folder / "results.json").read_text())
        found[Path(data.get("setup", {}).get("test_set", "test")).name] = data
    return found


def run_numbers(run):
    """``{"splits": {split: {label: value}}, "train": {label: value}, "meta": {...}}`` of one run entry."""
    out = {"splits": {}, "train": {}, "meta": {}}
    if run.get("kept"):  # made elsewhere: its folders here (if any) belong to another run
        return out
    if run.get("eval"):
        for split, data in split_results(ROOT / run["eval"]).items():
            out["splits"][split] = {label: read(getter, data) for label, getter, _ in SPLIT_ROWS}
            out["meta"].setdefault("eval_command", data.get("setup", {}).get("command"))
            out["meta"].setdefault("date", data.get("date"))
            hardware = data.get("hardware") or {}
            out["meta"].setdefault("hardware", f"{hardware.get('cpu_count')} CPU cores, {hardware.get('torch_threads')}"
                                               f" torch threads, {hardware.get('accelerator')}; torch "
                                               f"{hardware.get('torch')}" if hardware else None)
        out["meta"]["eval_commit"] = commit_of(ROOT / run["eval"])
    if run.get("train"):
        summary = ROOT / run["train"] / "summary.json"
        if summary.is_file():
            data = json.loads(summary.read_text())
            for label, path, _ in TRAIN_ROWS:
                value = data
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                out["train"][label] = value
        out["meta"]["train_commit"] = commit_of(ROOT / run["train"])
        out["meta"]["train_command"] = train_command(ROOT / run["train"])
    return out


def missing_folders(run):
    """The run's training / evaluation folders that are not on this machine (all of them for a ``kept`` run:
    one made on an earlier machine whose folders here now hold another run)."""
    return [run[key] for key in ("train", "eval") if run.get(key) and (run.get("kept") or not (ROOT / run[key]).exists())]


def where_from(run):
    """What a section of a run that is not here says it is missing."""
    return run["kept"] if run.get("kept") else ", ".join(missing_folders(run))


def has_numbers(numbers):
    return bool(numbers and (numbers.get("splits") or numbers.get("train")))


def previous_sections(path):
    """``{run name or group title: its lines}`` of an earlier RESULTS.md (``{}`` when there is none)."""
    if not Path(path).is_file():
        return {}
    sections, key, lines = {}, None, []
    for line in Path(path).read_text().splitlines() + ["## end"]:
        if line.startswith(("## ", "### ")):
            if key:
                sections[key] = lines
            key, lines = None, [line]
            run = re.search(r" \(`([^`]+)`\)$", line)
            if line.startswith("### ") and run:
                key = run.group(1)
            elif line.startswith("### ") and ": mean [95% t interval]" in line:
                key = "group: " + line[4:].split(": mean [95% t interval]")[0]
        else:
            lines.append(line)
    return {k: v[: max(i for i, text in enumerate(v) if text.strip()) + 1] + [""] for k, v in sections.items()}


def run_section(run, numbers, recorded_on=None):
    lines = [f"### {run['title']} (`{run['name']}`)", ""]
    missing = missing_folders(run)
    if missing and recorded_on:
        lines += [f"Not on this machine: {where_from(run)}; the numbers below are those read from it on "
                  f"{recorded_on} (RESULTS.json), the commands below make it again.", ""]
    elif missing:
        lines += [f"Not on this machine: {where_from(run)}; the commands below make it.", ""]
    meta = numbers["meta"]
    for label, value in (("training", run.get("train_command") or meta.get("train_command")),
                         ("evaluation", meta.get("eval_command"))):
        if value:
            lines.append(f"- {label}: `{value}`")
    lines.append(f"- evaluated {meta.get('date') or 'n/a'} on {meta.get('hardware') or 'n/a'}; commit "
                 f"{meta.get('train_commit') or 'n/a'} (training), {meta.get('eval_commit') or 'n/a'} (evaluation)")
    lines.append("")
    splits = sorted(numbers["splits"], key=lambda s: (s != "test_seen", s))
    if splits:
        lines += ["| measure | " + " | ".join(splits) + " |", "| --- |" + " ---: |" * len(splits)]
        for label, _, kind in SPLIT_ROWS:
            lines.append(f"| {label} | " + " | ".join(fmt(numbers["splits"][s][label], kind) for s in splits) + " |")
        lines.append("")
    if numbers["train"]:
        lines += ["| training | value |", "| --- | ---: |"]
        lines += [f"| {label} | {fmt(numbers['train'].get(label), kind)} |" for label, _, kind in TRAIN_ROWS]
        lines.append("")
    return lines


def group_section(group, by_name):
    runs = [by_name[name] for name in group["runs"] if name in by_name]
    splits = sorted({s for numbers in runs for s in numbers["splits"]}, key=lambda s: (s != "test_seen", s))
    lines = [f"### {group['title']}: mean [95% t interval] over {len(runs)} seeds "
             f"({', '.join(group['runs'])})", ""]
    lines += ["| measure | " + " | ".join(splits) + " |", "| --- |" + " ---: |" * len(splits)]
    for label, _, kind in SPLIT_ROWS:
        cells = []
        for split in splits:
            values = [n["splits"].get(split, {}).get(label) for n in runs]
            values = [v for v in values if v is not None]
            mean, low, high = t_interval(values)
            cells.append("n/a" if mean is None else
                         f"{fmt(mean, kind)} [{fmt(low, kind)}, {fmt(high, kind)}] (n={len(values)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def report_lines(entry):
    """The section of a ``reports`` entry: an experiment that writes its own ``results.md`` (e.g. SpokenQA's
    knowledge retention, which records its command, date, hardware and commit in it; ``file:`` names another,
    e.g. a sweep's ``sweep.md``); its title line dropped and its headings moved under the entry's. None when the
    folder has no report."""
    report = ROOT / entry["folder"] / entry.get("file", "results.md")
    if not report.is_file():
        return None
    lines = report.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return [("####" + line[2:]) if line.startswith("## ") else line for line in lines]


def write_results(recipe_folder):
    recipe_folder = Path(recipe_folder)
    spec = yaml.safe_load((recipe_folder / "results.yaml").read_text())
    record_path, previous = recipe_folder / "RESULTS.json", previous_sections(recipe_folder / "RESULTS.md")
    record = json.loads(record_path.read_text()) if record_path.is_file() else {"runs": {}}
    numbers, recorded_on = {}, {}
    for run in spec.get("runs", []):
        fresh, kept = run_numbers(run), record["runs"].get(run["name"])
        if has_numbers(fresh) and not missing_folders(run):
            record["runs"][run["name"]] = {"read_on": datetime.date.today().isoformat(), "numbers": fresh}
        elif kept and has_numbers(kept["numbers"]):  # the run is gone from this machine: its recorded numbers
            fresh, recorded_on[run["name"]] = kept["numbers"], kept["read_on"]
        numbers[run["name"]] = fresh
    shown = recipe_folder.resolve().relative_to(ROOT) if recipe_folder.resolve().is_relative_to(ROOT) else recipe_folder
    lines = [f"# Results: {spec['title']}", "",
             f"Generated by `python tools/results.py {shown}` on {datetime.date.today().isoformat()} from each "
             f"run's own `summary.json` and `results.json` (the runs: `{shown}/results.yaml`); do not edit by hand.",
             "",
             spec.get("intro", "").strip(), ""]
    if spec.get("groups"):
        lines += ["## Over seeds", ""]
        for group in spec["groups"]:
            incomplete = any(not has_numbers(numbers.get(name)) for name in group["runs"])
            kept = previous.get("group: " + group["title"])
            lines += kept if incomplete and kept else group_section(group, numbers)
    if spec.get("reports"):
        lines += ["## Reports", ""]
    for entry in spec.get("reports", []):
        header = f"### {entry['title']} (`{entry['name']}`)"
        fresh, kept = report_lines(entry), record.setdefault("reports", {}).get(entry["name"])
        if fresh is not None:
            record["reports"][entry["name"]] = {"read_on": datetime.date.today().isoformat(), "lines": fresh}
            body = fresh
        elif kept:
            body = [f"Not on this machine: {entry['folder']}; the report below is the one read from it on "
                    f"{kept['read_on']} (RESULTS.json)."] + kept["lines"]
        elif previous.get(entry["name"]):
            body = previous[entry["name"]][2:]
        else:
            body = [f"Not on this machine: {entry['folder']}; its command makes it."]
        lines += [header, "", *body, ""]
    if spec.get("runs"):
        lines += ["## Runs", ""]
    for run in spec.get("runs", []):
        kept = previous.get(run["name"])
        if not has_numbers(numbers[run["name"]]) and kept and len(kept) > 3:  # a run neither here nor recorded
            note = f"Not on this machine: {where_from(run)}; this section is kept from the previous RESULTS.md."
            said = kept[2].startswith("Not on this machine")  # a note of an earlier generation
            if said and not run.get("kept"):  # it may say more (the date its numbers were read): it stays
                lines += kept
            else:
                lines += kept[:2] + [note, ""] + (kept[4:] if said else kept[2:])
        else:
            lines += run_section(run, numbers[run["name"]], recorded_on.get(run["name"]))
    out = recipe_folder / "RESULTS.md"
    out.write_text("\n".join(lines).rstrip() + "\n")
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="the recipe folder holding results.yaml, e.g. recipes/LibriLight")
    args = parser.parse_args(argv)
    if not (Path(args.recipe) / "results.yaml").is_file():
        raise SystemExit(f"error: {args.recipe}/results.yaml does not exist; name a recipe folder that lists its runs")
    print(f"wrote {write_results(args.recipe)}")


if __name__ == "__main__":
    main()
