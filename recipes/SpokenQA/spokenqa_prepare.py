#!/usr/bin/env python3
"""Manifests of spoken questions: LLaMA-Questions (recorded) and WebQuestions (synthesised).

    python recipes/SpokenQA/spokenqa_prepare.py llama_questions /data/LLaMA-Questions --save manifests/
    python recipes/SpokenQA/spokenqa_prepare.py web_questions /data/webquestions.test.json --save manifests/ \\
        --tts espeak --voice en-us
    python recipes/SpokenQA/spokenqa_prepare.py mini_facts data/mini_facts.json --save manifests/

A QA manifest is a CSV with the columns ``id, path, duration, question,
answers`` (``answers``: a JSON list of gold answers). ``--max-seconds`` keeps
the questions whose audio fits a prompt length (the paper used 3 s prompts);
how many were kept and dropped is logged and written next to the manifest
(``<name>.prep.json``).

Layouts:
- LLaMA-Questions: a folder with ``llama_questions_300.tsv`` (header
  ``Questions<TAB>Answer<TAB>Wav Filename``; questions may end in spaces) and
  the wav files it names (16 kHz mono).
- WebQuestions: the JSON list of ``{"question", "answers", "url"}`` records
  (``answers``, or ``targetValue`` in the original ``(list (description ...))``
  form). Questions are spoken by a registered ``tts`` component into
  ``<save>/web_questions_audio/``; audio already there is reused, so an
  interrupted run resumes.
"""
import argparse
import csv
import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path


try:
    from spectron_kit.audio import audio_seconds
    from spectron_kit.data.manifest import track
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from spectron_kit.audio import audio_seconds
    from spectron_kit.data.manifest import track

logger = logging.getLogger("spokenqa_prepare")

COLUMNS = ("id", "path", "duration", "question", "answers")
LLAMA_TSV = "llama_questions_300.tsv"


def _write(manifest, rows, report):
    manifest = Path(manifest)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "answers": json.dumps(row["answers"])})
    manifest.with_suffix(".prep.json").write_text(json.dumps(report, indent=2))
    logger.info("%s: %d questions kept of %d%s", manifest.name, report["kept"], report["total"],
                "".join(f"; {n} {why}" for why, n in report["skipped"].items()))
    return manifest


def read_qa_manifest(path):
    """Rows of a QA manifest, ``answers`` as a list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no QA manifest at {path}; make one with recipes/SpokenQA/spokenqa_prepare.py")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["answers"] = json.loads(row["answers"])
        row["duration"] = float(row["duration"])
    return rows


def prepare_llama_questions(folder, save_folder, max_seconds=None, progress=True):
    """Manifest of LLaMA-Questions (``<save_folder>/llama_questions.csv``).

    Arguments:
        folder: the folder holding ``llama_questions_300.tsv`` and the wavs.
        save_folder: where the manifest goes.
        max_seconds: keep only questions whose audio is at most this long (None: all).

    Returns:
        Path of the manifest.
    """
    folder = Path(folder)
    table = folder / LLAMA_TSV
    if not table.is_file():
        raise FileNotFoundError(f"no {LLAMA_TSV} in {folder}; pass the LLaMA-Questions folder (the .tsv and "
                                "its wav files)")
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"Questions", "Answer", "Wav Filename"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{table}: the header lacks {', '.join(sorted(missing))}; expected "
                             "Questions<TAB>Answer<TAB>Wav Filename")
        records = list(reader)
    rows, skipped = [], Counter()
    for record in track(records, description="LLaMA-Questions", enabled=progress):
        wav = folder / record["Wav Filename"].strip()
        if not wav.is_file():
            skipped["audio file missing"] += 1
            continue
        try:
            seconds = audio_seconds(wav)
        except Exception as err:  # noqa: BLE001 - libsndfile raises several types
            logger.debug("cannot read %s: %s", wav, err)
            skipped["audio unreadable"] += 1
            continue
        if max_seconds is not None and seconds > max_seconds:
            skipped[f"longer than {max_seconds:g} s"] += 1
            continue
        rows.append({"id": wav.stem, "path": str(wav.resolve()), "duration": round(seconds, 6),
                     "question": record["Questions"].strip(), "answers": [record["Answer"].strip()]})
    report = {"dataset": "llama_questions", "total": len(records), "kept": len(rows),
              "max_seconds": max_seconds, "skipped": dict(skipped)}
    return _write(Path(save_folder) / "llama_questions.csv", rows, report)


def web_questions_answers(record):
    """Gold answers of a WebQuestions record: ``answers`` or the ``targetValue`` descriptions."""
    if isinstance(record.get("answers"), list):
        return [str(a) for a in record["answers"]]
    target = str(record.get("targetValue", ""))
    found = re.findall(r'\(description\s+(?:"((?:[^"\\]|\\.)*)"|([^()\s]+))\)', target)
    return [a or b for a, b in found]


def prepare_web_questions(json_file, save_folder, tts="espeak", voice=None, max_seconds=None, limit=None,
                          progress=True):
    """Manifest of WebQuestions with spoken questions (``<save_folder>/web_questions.csv``).

    Arguments:
        json_file: the WebQuestions JSON (a list of records).
        save_folder: manifest and ``web_questions_audio/`` go here.
        tts: a registered ``tts`` component name.
        voice: its voice (None: its default).
        max_seconds: keep only questions whose audio is at most this long.
        limit: use the first ``limit`` questions (None: all).

    Returns:
        Path of the manifest.
    """
    from spectron_kit.audio import save_audio
    from spectron_kit.registry import build

    records = json.loads(Path(json_file).read_text())
    if not isinstance(records, list):
        raise ValueError(f"{json_file}: expected a JSON list of {{question, answers}} records")
    records = records[:limit] if limit else records
    audio_dir = Path(save_folder) / "web_questions_audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    synthesiser = None
    rows, skipped = [], Counter()
    for i, record in enumerate(track(records, description="WebQuestions (TTS)", enabled=progress)):
        question = str(record.get("question", "")).strip()
        answers = web_questions_answers(record)
        if not question or not answers:
            skipped["no question or no answer"] += 1
            continue
        wav = audio_dir / f"wq{i:05d}.wav"
        if not wav.is_file():
            if synthesiser is None:
                synthesiser = build("tts", tts)
            audio, rate = synthesiser.synthesize(question[:1].upper() + question[1:], voice=voice)
            save_audio(str(wav), audio, rate)
        seconds = audio_seconds(wav)
        if max_seconds is not None and seconds > max_seconds:
            skipped[f"longer than {max_seconds:g} s"] += 1
            continue
        rows.append({"id": wav.stem, "path": str(wav.resolve()), "duration": round(seconds, 6),
                     "question": question, "answers": answers})
    report = {"dataset": "web_questions", "total": len(records), "kept": len(rows), "tts": tts, "voice": voice,
              "max_seconds": max_seconds, "skipped": dict(skipped)}
    return _write(Path(save_folder) / "web_questions.csv", rows, report)


def write_mini_facts(json_file):
    """The mini corpus's fact questions as a WebQuestions-style JSON (for an offline in-domain check)."""
    from spectron_kit.data.minicorpus import fact_questions

    records = [{"question": q, "answers": [a]} for q, a in fact_questions()]
    Path(json_file).parent.mkdir(parents=True, exist_ok=True)
    Path(json_file).write_text(json.dumps(records, indent=1))
    return Path(json_file)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("llama_questions", "web_questions", "mini_facts"),
                        help="mini_facts: write the mini corpus's fact questions as a WebQuestions JSON to SOURCE")
    parser.add_argument("source", help="LLaMA-Questions folder, or the WebQuestions JSON file")
    parser.add_argument("--save", required=True, help="folder for the manifest (and synthesised audio)")
    parser.add_argument("--max-seconds", type=float, help="keep questions whose audio fits this prompt length")
    parser.add_argument("--tts", default="espeak", help="registered tts component (web_questions)")
    parser.add_argument("--voice", help="tts voice (web_questions)")
    parser.add_argument("--limit", type=int, help="first N questions only (web_questions)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.dataset == "mini_facts":
            path = write_mini_facts(args.source)
        elif args.dataset == "llama_questions":
            path = prepare_llama_questions(args.source, args.save, args.max_seconds)
        else:
            path = prepare_web_questions(args.source, args.save, args.tts, args.voice, args.max_seconds, args.limit)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
