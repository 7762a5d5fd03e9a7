"""SpokenQA recipe: question manifests (recorded and synthesised), zero-shot evaluation, the qa command."""
import csv
import json
import sys
from pathlib import Path

import pytest
import soundfile

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "SpokenQA"
sys.path.insert(0, str(RECIPE))
sys.path.insert(0, str(REPO / "tests" / "unit"))


class FixedAnswer:
    """A transcriber that always hears "the answer is four" (a known answer for the scoring)."""

    def transcribe(self, wavs, sample_rate):
        return ["The answer is four." for _ in wavs]


@pytest.fixture
def registered():  # the registry is reset before every test (conftest)
    from spectron_kit.hookspecs import hookimpl
    from spectron_kit.registry import get_registry

    class Plugin:
        @hookimpl
        def register_transcribers(self, register):
            register("test_fixed_answer", FixedAnswer, description="test")

    get_registry().register_plugin(Plugin(), name="test-fixed-answer")


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    from spectron_kit.registry import build

    folder = tmp_path_factory.mktemp("llama")
    tts = build("tts", "espeak")
    questions = [("How many legs does a dog have? ", "4", "1.wav"), ("What is the capital of France?", "Paris", "2.wav"),
                 ("Please tell me slowly which of the many rivers of the old world is the longest of them all?",
                  "Nile", "3.wav"), ("Where is it?", "here", "4.wav")]
    for text, _, name in questions[:3]:  # 4.wav is missing
        wav, rate = tts.synthesize(text)
        soundfile.write(folder / name, wav, rate)
    lines = ["Questions\tAnswer\tWav Filename"] + [f"{q}\t{a}\t{n}" for q, a, n in questions]
    (folder / "llama_questions_300.tsv").write_text("\n".join(lines) + "\n")
    return folder


def test_llama_questions_manifest_keeps_what_fits_and_counts_the_rest(tmp_path, llama_folder):
    from spokenqa_prepare import prepare_llama_questions, read_qa_manifest

    manifest = prepare_llama_questions(llama_folder, tmp_path, max_seconds=3.0, progress=False)
    rows = read_qa_manifest(manifest)
    assert [(r["id"], r["question"], r["answers"]) for r in rows] == [
        ("1", "How many legs does a dog have?", ["4"]), ("2", "What is the capital of France?", ["Paris"])]
    report = json.loads(manifest.with_suffix(".prep.json").read_text())
    assert report["total"] == 4 and report["kept"] == 2
    assert report["skipped"] == {"longer than 3 s": 1, "audio file missing": 1}
    with pytest.raises(FileNotFoundError, match="no llama_questions_300.tsv in"):
        prepare_llama_questions(tmp_path, tmp_path / "x", progress=False)


def test_web_questions_are_spoken_once_and_answers_read_from_both_forms(tmp_path):
    from spokenqa_prepare import prepare_web_questions, read_qa_manifest, web_questions_answers

    records = [{"question": "what is the capital of france?", "answers": ["Paris"]},
               {"question": "who wrote hamlet?", "targetValue": '(list (description "William Shakespeare"))'},
               {"question": "", "answers": ["x"]}]
    source = tmp_path / "wq.json"
    source.write_text(json.dumps(records))
    assert web_questions_answers(records[1]) == ["William Shakespeare"]
    manifest = prepare_web_questions(source, tmp_path / "out", progress=False)
    rows = read_qa_manifest(manifest)
    assert [r["answers"] for r in rows] == [["Paris"], ["William Shakespeare"]]
    first = Path(rows[0]["path"])
    stamp = first.stat().st_mtime_ns
    assert 0.5 < rows[0]["duration"] < 4.0
    prepare_web_questions(source, tmp_path / "out", progress=False)  # resumes: audio is reused
    assert first.stat().st_mtime_ns == stamp


def _spokenqa_evaluate():
    """recipes/SpokenQA/evaluate.py as its own module (the LibriLight recipe's evaluate.py has the same name)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("spokenqa_evaluate", RECIPE / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluation_scores_text_and_spoken_answers(tmp_path, llama_folder, registered, capsys):
    from test_model import tiny_model

    evaluate = _spokenqa_evaluate()

    bundle = tiny_model().save_pretrained(tmp_path / "bundle")
    result, paths = evaluate.main([str(RECIPE / "hparams" / "evaluate.yaml"), f"--model_dir={bundle}",
                                   f"--data_path={llama_folder}", "--transcriber_name=test_fixed_answer",
                                   f"--output_folder={tmp_path}/eval", "--answer_seconds=0.5", "--n_resamples=200"])
    records = result["records"]
    assert [r["id"] for r in records] == ["1", "2"]
    # the spoken answers are all heard as "four": right for the dog's legs ("4"), wrong for Paris
    assert [r["speech_correct"] for r in records] == [True, False]
    assert result["accuracy"]["speech"][0] == 0.5
    assert result["accuracy"]["floor"][0] == 0.5 and result["floor_answer"] in ("4", "paris")  # 1 of 2 either way
    from spectron_kit.evaluation.metrics import answer_is_correct, normalize_text

    for r in records:  # the model's first words (as many as the question has) are its transcript
        words, n = normalize_text(r["model_text"]).split(), len(normalize_text(r["question"]).split())
        assert r["model_transcript"].split() == words[:n] and r["answer_text"].split() == words[n:]
        assert r["text_correct"] == answer_is_correct(r["answer_text"], r["answers"])
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [row["speech_correct"] for row in rows] == ["True", "False"]
    md = paths["markdown"].read_text()
    assert "spoken answer (ASR transcript of the answer audio) | 50.0%" in md and "Spectron (1B) 22.9" in md
    assert "| floor: the same answer" in md
    assert len(list((tmp_path / "eval" / "answers").glob("*.wav"))) == 2


def test_qa_command_writes_the_spoken_answer(tmp_path, llama_folder, capsys):
    from test_model import tiny_model

    from spectron_kit.cli import main as cli

    bundle = tiny_model().save_pretrained(tmp_path / "bundle")
    out = tmp_path / "answer.wav"
    assert cli(["qa", "--model", str(bundle), str(llama_folder / "1.wav"), "-o", str(out), "--seconds", "0.5",
                "--plot", str(tmp_path / "a.png")]) == 0
    audio, rate = soundfile.read(out)
    assert rate == 16000 and 0.4 < len(audio) / rate < 0.6
    printed = capsys.readouterr().out
    assert "question transcript + answer" in printed and "longer than the 1 s prompts" in printed
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_mini_fact_questions_are_a_web_questions_file(tmp_path):
    from spokenqa_prepare import main as prepare_main

    from spectron_kit.data.minicorpus import fact_questions

    facts = fact_questions()
    assert ("how many legs does a bird have?", "two") in facts and len(facts) == len(set(facts)) == 32
    assert prepare_main(["mini_facts", str(tmp_path / "facts.json"), "--save", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "facts.json").read_text())
    assert records[0] == {"question": facts[0][0], "answers": [facts[0][1]]}


# ----------------------------------------------------------------------------- knowledge retention
FAKE_TRAIN = '''
import json, sys
from pathlib import Path
from spectron_kit import build
from spectron_kit.model import SpectronModel
args = dict(a[2:].split("=", 1) for a in sys.argv[2:])
out = Path(args["output_folder"])
count = out / "runs.txt"
count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))
spec = {"sample_rate": 16000, "n_fft": 400, "win_length": 400, "hop_length": 160, "n_mels": 20}
lm = ({"source": args["lm"]} if "random" not in sys.argv[1] else {"config_dir": args["lm"]})
model = SpectronModel(
    frontend=build("frontend", "log_mel", spec=spec),
    encoder=build("encoder", "conformer", n_mels=20, d_model=16, num_layers=1, nhead=2, d_ffn=32,
                  kernel_size=7, dropout=0.0, hop_seconds=0.01),
    lm=build("lm", "hf", **lm),
    prenet=lambda in_dim, out_dim: build("prenet", "mlp", in_dim=in_dim, out_dim=out_dim, bottleneck=16, dropout=0.0),
    postnet=lambda in_dim, out_dim: build("postnet", "mlp", in_dim=in_dim, out_dim=out_dim, hidden=16),
    vocoder=None, prompt_seconds=3.0, max_text_tokens=12)
model.save_pretrained(out / "snapshots" / "epoch1")
(out / "snapshots" / "epoch1" / "training.json").write_text(json.dumps({"epoch": 1, "step": 3}))
model.save_pretrained(out / "bundle")
seed = int(args["seed"])
(out / "summary.json").write_text(json.dumps({"test_prompt_transcript_wer": 0.25, "valid_final": {"spec": 0.5 + seed}}))
'''


def test_knowledge_retention_runs_every_arm_and_seed_once_and_reports(tmp_path, monkeypatch):
    """The experiment's plumbing end to end with a stand-in trainer (the real one: the recipe README)."""
    from collections import Counter

    from spectron_kit.data.factworld import fact_lines, fact_world
    from spectron_kit.evaluation.metrics import answer_is_correct, normalize_text
    from spectron_kit.pretrain import pretrain_text_lm

    from spectron_kit.data.factworld import asked_facts

    facts = fact_world(1234)
    lm_dir = tmp_path / "text_lm"
    pretrain_text_lm(fact_lines(facts, 2), [f["statement"] for f in facts[:8]], lm_dir,
                     {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256},
                     vocab_size=80, steps=3, batch_size=8, progress=False)
    trainer = tmp_path / "fake_train.py"
    trainer.write_text(FAKE_TRAIN)
    for arm in ("lm_init", "random_lm"):  # their corpus speaks the facts of 12 people: the other 12 are asked
        (tmp_path / f"{arm}.yaml").write_text("seed: 1\nmini_corpus_spoken_facts: {seed: 1234, weight: 2.0, "
                                              "split: person}\n")
    spec = importlib_module("knowledge_retention", RECIPE / "knowledge_retention.py")
    monkeypatch.setattr(spec, "TRAIN_SCRIPT", trainer)
    argv = [str(RECIPE / "hparams" / "knowledge_retention.yaml"), f"--output_folder={tmp_path}/kr",
            "--seeds=[1, 2]", f"--text_lm={lm_dir}", "--n_resamples=100", "--limit=12", "--jobs=2",
            f"--arms={{lm_init: {tmp_path}/lm_init.yaml, random_lm: {tmp_path}/random_lm.yaml}}",
            f"--train_overrides={{lm: {lm_dir}}}"]
    report = spec.main(argv)
    out = tmp_path / "kr"
    md = report.read_text()
    assert "| text LM alone (upper bound) | - |" in md and "| Spectron, lm_init |" in md
    assert "| Spectron, random_lm |" in md and "| lm_init | 1 |" in md
    # the questions: only the 72 asked facts (the arms' corpus speaks the other half)
    asked = asked_facts(1234, "person")
    assert {q["question"] for q in json.loads((out / "questions.json").read_text())} == {f["question"] for f in asked}
    # question WER beside the run's prompt WER on corpus sentences (0.25 in the stand-in's summary.json)
    row = next(line for line in md.splitlines() if line.startswith("| Spectron, lm_init |")).split(" | ")
    assert row[4] == "25.0%" and float(row[5]) == pytest.approx(float(row[3].rstrip("%")) / 25, abs=0.01)
    assert row[6] == "2.000 |"  # the speech side's cost: valid L_s, mean of the seeds' 1.5 and 2.5
    # where the report came from: its command (rerunnable), date, hardware and commit
    assert "- command: `python recipes/SpokenQA/knowledge_retention.py " in md and " CPU cores (" in md
    made = json.loads((out / "results.json").read_text())
    assert made["command"].endswith("--jobs=2 '--arms={lm_init: " + f"{tmp_path}/lm_init.yaml, random_lm: "
                                    f"{tmp_path}/random_lm.yaml}}' '--train_overrides={{lm: {lm_dir}}}'")
    assert made["arms"]["lm_init"]["per_seed"]["valid_spec"] == [1.5, 2.5] and made["hardware"]["cpu_count"] >= 1
    # the floor: each relation's most common answer among the asked facts, counted here independently
    by_relation = {}
    for f in asked:
        by_relation.setdefault(f["relation"], []).append(f["answer"])
    floor = sum(Counter(a).most_common(1)[0][1] for a in by_relation.values()) / 72
    assert f"| floor: each relation's most common answer | {100 * floor:.1f}% |" in md
    # scoring: only the first words (as many as the gold statement has) count
    upper = json.loads((out / "text_lm_upper_bound.json").read_text())
    by_question = {f["question"]: f for f in facts}
    for r in upper["read"]:
        n = len(normalize_text(by_question[r["question"]]["statement"]).split())
        assert r["correct"] == answer_is_correct(" ".join(r["answer_text"].split()[:n]), r["answers"])
    result = json.loads((out / "lm_init" / "seed-2" / "qa" / "final.json").read_text())
    assert len(result["heard"]) == len(result["read"]) == 12 and result["training"] is None
    assert json.loads((out / "lm_init" / "seed-1" / "qa" / "epoch1.json").read_text())["training"]["epoch"] == 1
    assert (out / "forgetting_curve.png").stat().st_size > 5000
    # rerunning trains and evaluates nothing again
    stamp = (out / "lm_init" / "seed-1" / "qa" / "final.json").stat().st_mtime_ns
    spec.main(argv)
    assert all((out / arm / f"seed-{s}" / "runs.txt").read_text() == "1" for arm in ("lm_init", "random_lm")
               for s in (1, 2))
    assert (out / "lm_init" / "seed-1" / "qa" / "final.json").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit) as stop:  # one line naming the unknown arm
        spec.main(argv + ["--only_arms=[lm_init, lora2]"])
    assert stop.value.code == 2
    # the asked split follows the arms' corpus; a stated one that disagrees with it, or arms that disagree,
    # stop with one line before anything runs
    assert spec.resolve_asked_split({**spec.recipe.load_recipe(argv).hparams, "asked_split": "auto"}) == "person"
    with pytest.raises(SystemExit) as stop:
        spec.main(argv + ["--asked_split=fact"])
    assert stop.value.code == 2
    (tmp_path / "random_lm.yaml").write_text("seed: 1\nmini_corpus_spoken_facts: {seed: 1234, weight: 2.0, "
                                             "split: fact}\n")
    with pytest.raises(spec.recipe.RecipeConfigError, match="different fact splits"):
        spec.resolve_asked_split(spec.recipe.load_recipe(argv).hparams)


def importlib_module(name, path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its functions can then go to worker processes (the script's own --jobs)
    spec.loader.exec_module(module)
    return module
