#!/usr/bin/env python3
"""Knowledge retention at mini scale: does Spectron keep what its pre-trained LM knew?

    python recipes/SpokenQA/knowledge_retention.py recipes/SpokenQA/hparams/knowledge_retention.yaml
    python recipes/SpokenQA/knowledge_retention.py recipes/SpokenQA/hparams/knowledge_retention.yaml \\
        --seeds=[1] --jobs=2 --train_overrides="{number_of_epochs: 2}"

The experiment (issue "SpokenQA recipe", part 3; SPECTRON.md section 5):

1. A synthetic fact world (:mod:`spectron_kit.data.factworld`: 144 facts about
   the mini corpus's people) is mixed into the text the mini LM is pre-trained
   on; the speech corpus never states these facts.
2. Spectron is trained on speech continuation from that LM
   (``hparams/factworld_lm_init.yaml``) and from a randomly initialised LM with
   the same architecture and tokenizer (``hparams/factworld_random_lm.yaml``),
   for every seed, keeping a bundle after every epoch.
3. Every bundle hears the 144 questions (spoken by espeak-ng with a voice the
   corpus's training split never uses) and writes an answer; the text LM alone
   reads the written questions (the upper bound); the LM inside every bundle
   also reads them (what its weights still hold). An answer is correct when
   the gold answer occurs in its first words (as many as the gold statement
   has, ``answer_window: statement``) - no credit for naming it later.

Writes ``<output_folder>/results.md`` (table with 95% intervals over seeds and
over questions), ``results.json``, ``forgetting_curve.png`` and per-bundle
JSON in ``<run>/qa/``. Rerunning resumes: finished runs and evaluations are
not repeated.

Authors: spectron-kit contributors
"""
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # spokenqa_prepare lives beside this script
try:
    import spectron_kit  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from spectron_kit import recipe  # noqa: E402
from spectron_kit.data.factworld import asked_facts, fact_questions, fact_world  # noqa: E402
from spokenqa_prepare import prepare_web_questions, read_qa_manifest  # noqa: E402

logger = logging.getLogger(__name__)
ABOUT = recipe.RecipeHelp.for_script(__file__, __doc__, default_yaml="hparams/knowledge_retention.yaml",
                                    run_options=())  # its training runs take train.py's options through train_overrides
console = Console()
TRAIN_SCRIPT = ROOT / "recipes" / "LibriLight" / "train.py"


# ----------------------------------------------------------------------------- questions
def arms_spoken_split(hparams):
    """The split (``person`` | ``fact``) of the facts the arms' corpus asks and answers in speech (their
    ``mini_corpus_spoken_facts`` with the training overrides applied), or None when no arm's corpus speaks
    facts. Every arm must speak the same split of the same fact world, or the questions would be heard in
    training by some arms."""
    found = {}
    for arm, path in hparams["arms"].items():
        resolved, layered = recipe.resolve_base(path, dict(hparams.get("train_overrides") or {}))
        spoken = {**recipe.yaml_defaults(resolved), **layered}.get("mini_corpus_spoken_facts") or {}
        if not isinstance(spoken, dict) or not float(spoken.get("weight") or 0) > 0:
            found[arm] = None
            continue
        if int(spoken.get("seed", hparams["fact_world_seed"])) != int(hparams["fact_world_seed"]):
            raise recipe.RecipeConfigError(
                f"arm {arm}: its corpus speaks the facts of fact world seed {spoken['seed']} but "
                f"--fact_world_seed={hparams['fact_world_seed']}; give both the same seed")
        found[arm] = spoken.get("split", "person")
    if len(set(found.values())) > 1:
        raise recipe.RecipeConfigError(
            "the arms' corpora speak different fact splits (" + ", ".join(f"{a}: {s}" for a, s in found.items())
            + "); give every arm the same mini_corpus_spoken_facts, or run them as separate experiments")
    return next(iter(found.values()), None)


def resolve_asked_split(hparams):
    """``asked_split``: ``auto`` becomes the arms' split (:func:`arms_spoken_split`); an explicit value must
    agree with it."""
    spoken, asked = arms_spoken_split(hparams), hparams.get("asked_split")
    if asked == "auto":
        return spoken
    if asked != spoken:
        raise recipe.RecipeConfigError(
            f"--asked_split={asked} but the arms' corpus speaks "
            + (f"the facts split by {spoken}" if spoken else "no facts (so all 144 are asked)")
            + "; leave --asked_split=auto")
    return asked


def prepare_questions(hparams):
    """The fact world's spoken questions: ``(rows, {question: fact})``."""
    out = Path(hparams["output_folder"])
    out.mkdir(parents=True, exist_ok=True)
    if hparams.get("asked_split"):  # the arms' corpus asks and answers the other facts (mini_corpus_spoken_facts)
        facts = asked_facts(hparams["fact_world_seed"], hparams["asked_split"])
    else:
        facts = fact_world(hparams["fact_world_seed"])
    (out / "fact_world.json").write_text(json.dumps(facts, indent=1))
    questions = out / "questions.json"
    questions.write_text(json.dumps(fact_questions(facts), indent=1))
    save = out / "save" / f"{hparams['tts_name']}_{hparams['tts_voice'] or 'default'}"
    manifest = prepare_web_questions(questions, save, hparams["tts_name"], hparams["tts_voice"],
                                     hparams["max_question_seconds"])
    rows = read_qa_manifest(manifest)[:hparams["limit"] or None]
    if not rows:
        raise recipe.RecipeConfigError(f"no fact question fits --max_question_seconds="
                                       f"{hparams['max_question_seconds']}; raise it or set it to null")
    console.print(f"fact world: {len(facts)} facts, {len(rows)} spoken questions used ({manifest})")
    return rows, {f["question"]: f for f in facts}


# ----------------------------------------------------------------------------- training
def run_folder(hparams, arm, seed):
    return Path(hparams["output_folder"]) / arm / f"seed-{seed}"


def train_arguments(overrides):
    """``{key: value}`` -> ``--key=value`` arguments of train.py (``debug: True`` -> ``--debug``).

    A mapping, not a list of ``--k=v`` strings: SpeechBrain's parser would turn
    the ``=`` inside such a value into a space.
    """
    args = []
    for key, value in (overrides or {}).items():
        if key == "debug":
            args += ["--debug"] if value else []
        elif isinstance(value, (dict, list)):
            args.append(f"--{key}={json.dumps(value)}")
        else:
            args.append(f"--{key}={value}")
    return args


def train_runs(hparams):
    """Train every (arm, seed) that has no ``summary.json`` yet; the first one alone (it pre-trains the LM)."""
    todo = [(arm, seed) for arm in hparams["arms"] for seed in hparams["seeds"]
            if not (run_folder(hparams, arm, seed) / "summary.json").is_file()]
    if not todo:
        return
    jobs = max(1, int(hparams["jobs"]))
    threads = recipe.threads_per_job(jobs)

    def one(item, threads=threads):
        arm, seed = item
        folder = run_folder(hparams, arm, seed)
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(TRAIN_SCRIPT), str(hparams["arms"][arm]), f"--seed={seed}",
                   f"--output_folder={folder}", *train_arguments(hparams["train_overrides"])]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        console.print(f"training {arm} seed {seed} -> {folder} (log: {folder / 'train_run.log'})")
        with open(folder / "train_run.log", "a") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if code != 0:
            raise recipe.RecipeConfigError(f"training {arm} seed {seed} failed (exit {code}); "
                                           f"see {folder / 'train_run.log'}")

    if not (Path(hparams["text_lm"]) / "config.json").is_file():
        # the first run pre-trains the fact-world LM that every run shares (pretrain_seed): alone, on every core
        one(todo[0], recipe.threads_per_job(1))
        todo = todo[1:]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, todo))


# ----------------------------------------------------------------------------- scoring
def windowed(records, facts_by_question, rule):
    """Rescore records: with ``rule == "statement"`` only the first words of the answer count."""
    from spectron_kit.evaluation import metrics as M

    for r in records:
        fact = facts_by_question[r["question"]]
        words = r["answer_text"].split()
        if rule == "statement":
            words = words[:len(M.normalize_text(fact["statement"]).split())]
        r["answer_window"] = " ".join(words)
        r["correct"] = M.answer_is_correct(r["answer_window"], r["answers"])
        r["relation"] = fact["relation"]
    return records


def evaluate_bundle(bundle, rows, facts_by_question, hparams, cache):
    """Heard and read accuracy of one bundle (cached in ``cache``)."""
    if cache.is_file():
        return json.loads(cache.read_text())
    import torch

    from spectron_kit.evaluation.qa import answer_written_questions, evaluate_qa
    from spectron_kit.model import SpectronModel

    torch.set_num_threads(recipe.threads_per_job(hparams["jobs"]))
    model = SpectronModel.from_pretrained(bundle, map_location="cpu")
    heard = evaluate_qa(model, rows, None, batch_size=hparams["batch_size"], seed=hparams["seed"],
                        n_resamples=hparams["n_resamples"], progress=False, speak=False)
    read = answer_written_questions(model.lm, rows, n_resamples=hparams["n_resamples"], seed=hparams["seed"])
    training = Path(bundle) / "training.json"
    result = {"bundle": str(bundle),
              "training": json.loads(training.read_text()) if training.is_file() else None,
              "heard": windowed(heard["records"], facts_by_question, hparams["answer_window"]),
              "read": windowed(read["records"], facts_by_question, hparams["answer_window"]),
              "question_wer": heard["question_wer"]}
    for kind in ("heard", "read"):
        result[f"{kind}_accuracy"] = sum(r["correct"] for r in result[kind]) / len(result[kind])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=1))
    return result


def bundles_of(folder, epochs=None):
    """``[(label, epoch, bundle)]``: the epoch snapshots (those in ``epochs``; None: all), then the final bundle."""
    out = []
    for snap in sorted((folder / "snapshots").glob("epoch*"), key=lambda p: int(p.name[5:])):
        if epochs is None or int(snap.name[5:]) in epochs:
            out.append((snap.name, int(snap.name[5:]), snap))
    if (folder / "bundle" / "config.json").is_file() or (folder / "bundle").is_dir():
        out.append(("final", None, folder / "bundle"))
    return out


def text_lm_upper_bound(hparams, rows, facts_by_question):
    """The pre-trained text LM alone, reading the written questions."""
    from spectron_kit.evaluation.qa import answer_written_questions
    from spectron_kit.lm import HFCausalLM

    cache = Path(hparams["output_folder"]) / "text_lm_upper_bound.json"
    questions = [r["question"] for r in rows]
    if cache.is_file():
        found = json.loads(cache.read_text())
        if found.get("questions") == questions and found.get("source") == str(hparams["text_lm"]):
            return found  # otherwise the questions or the LM changed: read them again
    source = Path(hparams["text_lm"])
    if not (source / "config.json").is_file():
        raise recipe.RecipeConfigError(f"--text_lm={source}: no pre-trained text LM there; it is made by the "
                                       "first training run (the arms' lm_source): point text_lm at it")
    read = answer_written_questions(HFCausalLM(source=str(source)), rows, n_resamples=hparams["n_resamples"],
                                    seed=hparams["seed"])
    result = {"source": str(source), "questions": questions,
              "read": windowed(read["records"], facts_by_question, hparams["answer_window"])}
    result["read_accuracy"] = sum(r["correct"] for r in result["read"]) / len(result["read"])
    cache.write_text(json.dumps(result, indent=1))
    return result


def majority_floor(facts):
    """Accuracy of answering every question with its relation's most common answer."""
    by_relation = {}
    for f in facts:
        by_relation.setdefault(f["relation"], []).append(f["answer"])
    hits = sum(max(answers.count(a) for a in set(answers)) for answers in by_relation.values())
    return hits / len(facts)  # over every fact (a --limit run asks fewer)


# ----------------------------------------------------------------------------- report
def t_interval(values):
    """Mean and 95% Student-t interval over seeds, clipped to [0, 1] (accuracies)."""
    from spectron_kit.evaluation.metrics import t_interval as interval

    return interval(values, bounds=(0.0, 1.0))


def bootstrap(records, n_resamples, seed):
    import numpy as np

    from spectron_kit.evaluation.metrics import bootstrap_ci

    return bootstrap_ci(np.array([float(r["correct"]) for r in records]), n_resamples=n_resamples, seed=seed)


def run_summary(folder):
    """The run's ``summary.json`` (``{}`` when it has none): its prompt WER on the corpus's test sentences
    (``test_prompt_transcript_wer``) and its valid L_s at the kept checkpoint (``valid_final.spec``)."""
    summary = Path(folder) / "summary.json"
    return json.loads(summary.read_text()) if summary.is_file() else {}


def provenance(argv):
    """How the report was made: the command, date, hardware and the checkout's commit (None outside git)."""
    import datetime

    from spectron_kit.evaluation.report import checkout_commit, hardware_info

    return {"command": recipe.command_line(__file__, argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hardware": hardware_info(), "commit": checkout_commit()}


def write_report(hparams, upper, evaluations, facts, made):
    out = Path(hparams["output_folder"])
    hw = made["hardware"]
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731

    def cell(values):
        mean, low, high = t_interval(values)
        per_seed = ", ".join(pct(v) for v in values)
        return f"{pct(mean)} [{pct(low)}, {pct(high)}] ({per_seed})" if len(values) > 1 else pct(mean)

    ub = bootstrap(upper["read"], hparams["n_resamples"], hparams["seed"])
    floor = majority_floor(facts)
    lines = ["# Knowledge retention (mini fact world)", "",
             f"- {len(upper['read'])} questions about {len(facts)} facts that only the LM's pre-training text "
             f"states; seeds {', '.join(map(str, hparams['seeds']))}; answer window: {hparams['answer_window']}",
             "- heard: the bundle hears the spoken question and writes transcript + answer; read: the bundle's "
             "LM reads the written question (no speech)",
             "- Spectron cells: mean over seeds [95% Student-t interval] (per seed)", "",
             "- question WER: the heard question's transcript; prompt WER: the same model's prompt transcripts of "
             "corpus sentences (test split, the same unseen voices); the issue's hearing target is a ratio <= 1.5",
             "- valid L_s: the speech side's cost of the arm (the spectrogram loss on the corpus's valid split, "
             "mean over seeds)",
             f"- command: `{made['command']}`",
             f"- made {made['date']} on {hw.get('cpu_count')} CPU cores ({hw.get('accelerator')}, torch "
             f"{hw.get('torch')}), commit {made['commit'] or 'n/a'}",
             "", "| system | heard: answer correct | read: answer correct | question WER (heard) | "
             "prompt WER (corpus) | ratio | valid L_s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| text LM alone (upper bound) | - | {pct(ub[0])} [{pct(ub[1])}, {pct(ub[2])}] | - | - | - | - |"]
    summary = {"upper_bound": {"read": ub}, "floor": floor, "arms": {}, **made}
    for arm in hparams["arms"]:
        finals = [(seed, e) for (a, seed), runs in evaluations.items() if a == arm
                  for label, _, e in runs if label == "final"]
        if not finals:
            continue
        heard = [e["heard_accuracy"] for _, e in finals]
        read = [e["read_accuracy"] for _, e in finals]
        wer = [e["question_wer"] for _, e in finals]
        summaries = [run_summary(run_folder(hparams, arm, seed)) for seed, _ in finals]
        prompt = [x["test_prompt_transcript_wer"] for x in summaries if x.get("test_prompt_transcript_wer") is not None]
        spec = [x["valid_final"]["spec"] for x in summaries if (x.get("valid_final") or {}).get("spec") is not None]
        summary["arms"][arm] = {"heard": t_interval(heard), "read": t_interval(read), "question_wer": t_interval(wer),
                                "prompt_wer": t_interval(prompt), "valid_spec": t_interval(spec),
                                "per_seed": {"heard": heard, "read": read, "question_wer": wer, "prompt_wer": prompt,
                                             "valid_spec": spec}}
        mean_wer = sum(wer) / len(wer)
        mean_prompt = sum(prompt) / len(prompt) if prompt else None
        ratio = f"{mean_wer / mean_prompt:.2f}" if mean_prompt else "-"
        lines.append(f"| Spectron, {arm} | {cell(heard)} | {cell(read)} | {pct(mean_wer)} | "
                     f"{pct(mean_prompt) if mean_prompt is not None else '-'} | {ratio} | "
                     f"{f'{sum(spec) / len(spec):.3f}' if spec else '-'} |")
    lines.append(f"| floor: each relation's most common answer | {pct(floor)} | {pct(floor)} | - | - | - | - |")
    lines += ["", "## Forgetting curve (accuracy after each epoch of Spectron training, mean over seeds)", "",
              "| arm | epoch | heard | read |", "| --- | ---: | ---: | ---: |"]
    curve = {}
    for (arm, seed), runs in sorted(evaluations.items()):
        for label, epoch, e in runs:
            if epoch is not None:
                curve.setdefault(arm, {}).setdefault(epoch, []).append((e["heard_accuracy"], e["read_accuracy"]))
    for arm, epochs in curve.items():
        for epoch in sorted(epochs):
            values = epochs[epoch]
            lines.append(f"| {arm} | {epoch} | {pct(sum(v[0] for v in values) / len(values))} | "
                         f"{pct(sum(v[1] for v in values) / len(values))} |")
    summary["curve"] = {arm: {str(k): v for k, v in epochs.items()} for arm, epochs in curve.items()}
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    plot_curve(curve, ub[0], floor, out / "forgetting_curve.png")
    return out / "results.md"


def plot_curve(curve, upper, floor, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = {"lm_init": "tab:blue", "random_lm": "tab:orange"}
    for ax, (index, title) in zip(axes, ((0, "heard (spoken question)"), (1, "read (written question)"))):
        for arm, epochs in curve.items():
            xs = sorted(epochs)
            stats = [t_interval([v[index] for v in epochs[x]]) for x in xs]
            ax.plot(xs, [100 * s[0] for s in stats], "o-", label=arm, color=colours.get(arm))
            ax.fill_between(xs, [100 * s[1] for s in stats], [100 * s[2] for s in stats], alpha=0.2,
                            color=colours.get(arm))
        ax.axhline(100 * upper, color="green", ls="--", label="text LM alone (read)")
        ax.axhline(100 * floor, color="gray", ls=":", label="floor (majority answer)")
        ax.set_xlabel("Spectron training epoch")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("answer correct (%)")
    axes[1].legend(fontsize=8)
    fig.suptitle("knowledge retention: mean and 95% interval over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
@recipe.exit_on_config_error
def main(argv=None):
    hparams = recipe.load_recipe(sys.argv[1:] if argv is None else argv, about=ABOUT).hparams
    only = hparams.get("only_arms")
    if only:
        unknown = sorted(set(only) - set(hparams["arms"]))
        if unknown:
            raise recipe.RecipeConfigError(f"--only_arms names {unknown}, which are not arms; choose from "
                                           f"{', '.join(hparams['arms'])}")
        hparams["arms"] = {arm: path for arm, path in hparams["arms"].items() if arm in only}
    for arm, path in hparams["arms"].items():
        if not Path(path).is_file():
            raise recipe.RecipeConfigError(f"arm {arm}: {path} does not exist; give the arm's training YAML")
    if not hparams["seeds"]:
        raise recipe.RecipeConfigError("--seeds is empty; give at least one seed, e.g. --seeds=[1,2,3]")
    if hparams["answer_window"] not in ("statement", "all"):
        raise recipe.RecipeConfigError(f"--answer_window={hparams['answer_window']}: use statement or all")
    if hparams.get("asked_split") not in ("auto", None, "person", "fact"):
        raise recipe.RecipeConfigError(f"--asked_split={hparams['asked_split']}: use auto, person, fact or null")
    hparams["asked_split"] = resolve_asked_split(hparams)
    recipe.lock_run_folder(hparams["output_folder"], what="knowledge-retention run")
    rows, facts_by_question = prepare_questions(hparams)
    train_runs(hparams)
    upper = text_lm_upper_bound(hparams, rows, facts_by_question)
    tasks = []  # (arm, seed, label, epoch, bundle, cache)
    for arm in hparams["arms"]:
        for seed in hparams["seeds"]:
            folder = run_folder(hparams, arm, seed)
            for label, epoch, bundle in bundles_of(folder, hparams.get("curve_epochs")):
                tasks.append((arm, seed, label, epoch, bundle, folder / "qa" / f"{label}.json"))
    todo = [t for t in tasks if not t[5].is_file()]
    console.print(f"evaluating {len(todo)} bundles ({len(tasks) - len(todo)} already done), {hparams['jobs']} at a time")
    if todo and int(hparams["jobs"]) <= 1:
        for t in todo:
            evaluate_bundle(t[4], rows, facts_by_question, hparams, t[5])
            console.print(f"evaluated {t[0]} seed {t[1]} {t[2]}")
    elif todo:  # one process per bundle at a time, each with cores / jobs threads
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=max(1, int(hparams["jobs"])),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(evaluate_bundle, t[4], rows, facts_by_question, dict(hparams), t[5]) for t in todo]
            for t, future in zip(todo, futures):
                future.result()
                console.print(f"evaluated {t[0]} seed {t[1]} {t[2]}")
    evaluations = {}
    for arm, seed, label, epoch, bundle, cache in tasks:
        evaluations.setdefault((arm, seed), []).append((label, epoch, json.loads(cache.read_text())))
    report = write_report(hparams, upper, evaluations, list(facts_by_question.values()),
                          provenance(sys.argv[1:] if argv is None else argv))
    console.print(report.read_text())
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
