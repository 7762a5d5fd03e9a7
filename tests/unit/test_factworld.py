"""The knowledge-retention fact world: deterministic, only in the LM's text, never in the speech corpus."""
import json

import pytest

from spectron_kit.data.factworld import PEOPLE, RELATIONS, fact_lines, fact_questions, fact_world, fact_world_text


def test_world_is_one_answer_per_person_and_relation_and_follows_its_seed():
    facts = fact_world(1234)
    assert len(facts) == len(PEOPLE) * len(RELATIONS) == 144
    assert len({(f["person"], f["relation"]) for f in facts}) == 144
    assert len({f["question"] for f in facts}) == 144  # a question names its fact
    assert all(f["answer"] in RELATIONS[f["relation"]][2] and f["answer"] in f["statement"] for f in facts)
    assert fact_world(1234) == facts and fact_world(7) != facts


def test_lines_state_every_fact_as_often_as_asked():
    facts = fact_world(1234)
    lines = fact_lines(facts, repeats=4, seed=1)
    assert len(lines) == 4 * 144
    for fact in facts:  # every fact appears in its own lines at least the asked number of times
        assert sum(fact["statement"] in line for line in lines) >= 4
    assert sum(line.startswith(f["question"]) for f in facts for line in lines) == 2 * 144  # half ask first
    with pytest.raises(ValueError, match="repeats=0 must be a positive integer"):
        fact_lines(facts, repeats=0)


def test_the_speech_corpus_never_states_a_fact_relation():
    from spectron_kit.data.minicorpus import sentences

    corpus = [s.transcript.lower() for s in sentences(6000, seed=3)]
    corpus += [s.transcript.lower() for s in sentences(2000, seed=3, heldout=True)]
    for relation, (question, statement, _) in RELATIONS.items():
        # the words that carry the relation ("lives near the", "has a pet", "likes X best" -> "best", ...)
        marker = statement.split("{p} ")[1].split(" {a}")[0].rstrip(".") or "best"
        marker = "best" if relation == "color" else marker
        assert not any(marker in line for line in corpus), (relation, marker)


def test_text_corpus_mixes_the_facts_in_and_keys_its_cache_on_them(tmp_path):
    from spectron_kit.data.minicorpus import ensure_text_corpus

    plain = ensure_text_corpus(tmp_path / "plain.txt", 200, seed=1, progress=False)
    mixed = ensure_text_corpus(tmp_path / "mixed.txt", 200, seed=1, progress=False,
                               extra=fact_world_text(1234, repeats=2))
    plain_lines, mixed_lines = plain.read_text().splitlines(), mixed.read_text().splitlines()
    assert len(plain_lines) == 200 and len(mixed_lines) == 200 + 2 * 144
    assert sorted(set(mixed_lines) - set(plain_lines))[0].isupper()  # transcript style, like the grammar lines
    assert "TOM LIVES NEAR THE" in mixed.read_text() and "LIVES NEAR" not in plain.read_text()
    record = json.loads((tmp_path / "mixed.txt.json").read_text())
    assert record["config"]["fact_world"] == {"seed": 1234, "repeats": 2}
    with pytest.raises(ValueError, match="give name, config and lines"):
        ensure_text_corpus(tmp_path / "bad.txt", 10, extra={"lines": ["x"]})


def test_questions_are_web_questions_records():
    records = fact_questions(fact_world(1234))
    assert len(records) == 144 and set(records[0]) == {"question", "answers", "url"}
    assert records[0]["question"].endswith("?") and records[0]["url"].startswith("factworld:home:")


def test_a_spoken_facts_corpus_asks_and_answers_only_the_spoken_half():
    """The knowledge-retention corpus: every name and every question form is heard, with the world's answers,
    for half of the facts (3 relations per person, 12 people per relation); the asked facts never occur."""
    import random
    from collections import Counter

    from spectron_kit.data.factworld import asked_facts, split_facts
    from spectron_kit.data.grammar import generate_sentence
    from spectron_kit.data.minicorpus import _config, spoken_facts_templates

    by_person = split_facts(1234, "person")
    assert set(Counter(f["person"] for f in by_person[0]).values()) == {6}  # 12 people, all their facts
    assert not {f["person"] for f in by_person[0]} & {f["person"] for f in by_person[1]}
    spoken, asked = split_facts(1234, "fact")
    assert len(spoken) == len(asked) == 72 and split_facts(1234, "fact") == (spoken, asked)
    assert split_facts(7, "fact") != (spoken, asked)
    assert not {(f["person"], f["relation"]) for f in spoken} & {(f["person"], f["relation"]) for f in asked}
    assert set(Counter(f["person"] for f in spoken).values()) == {3}
    assert set(Counter(f["relation"] for f in spoken).values()) == {12}
    assert asked_facts(1234, "fact") == asked
    with pytest.raises(ValueError, match="split='people': use one of person, fact"):
        split_facts(1234, "people")
    extra = spoken_facts_templates({"seed": 1234, "weight": 2.0, "split": "fact"})
    rng = random.Random(3)
    corpus = [generate_sentence(rng, None, extra) for _ in range(4000)]
    said = [s for s in corpus if s.template == "spoken_facts"]
    assert 0.07 < len(said) / len(corpus) < 0.16  # weight 2.0 beside the grammar's 15.5
    text = " ".join(s.transcript.lower() for s in said)
    heard = [f for f in spoken if f["question"].rstrip("?") in text]
    assert len(heard) > 60 and all(f["statement"].rstrip(".") in text for f in heard)  # the world's answers
    assert {f["person"] for f in heard} == set(PEOPLE) and {f["relation"] for f in heard} == set(RELATIONS)
    everything = " ".join(s.transcript.lower() for s in corpus)
    for fact in asked:  # never asked nor answered in speech
        assert fact["question"].rstrip("?") not in everything and fact["statement"].rstrip(".") not in everything
    # the plain corpus keeps its config hash (weight 0 is the plain corpus); a spoken-facts corpus gets its own
    assert _config("default", 1234, {"seed": 1234, "weight": 0.0}) == _config("default", 1234)
    assert _config("default", 1234)[1] != _config("default", 1234, {"seed": 1234, "weight": 2.0})[1]
    with pytest.raises(ValueError, match="give seed, weight and split"):
        spoken_facts_templates({"seed": 1234, "spoken": 12, "weight": 1.0})
    with pytest.raises(ValueError, match="weight=-1 must be a positive number"):
        spoken_facts_templates({"seed": 1234, "weight": -1})


def test_the_random_lm_arm_rehearses_the_grammar_without_the_fact_world(tmp_path):
    """The random-LM control with rehearsal's settings reads the grammar's text, never the facts under test."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "recipes" / "LibriLight"))
    import mini_prepare
    from spectron_kit import recipe

    arm = recipe.load_recipe([str(root / "recipes" / "SpokenQA" / "hparams" /
                                  "factworld_random_lm_rehearsal.yaml")]).hparams
    assert arm["w_text_rehearsal"] > 0 and arm["rehearsal_text"] == f"{arm['pretrained_folder']}/grammar_text.txt"
    folder = tmp_path / "pretrained"
    hparams = {"w_text_rehearsal": 1.0, "rehearsal_text": str(folder / "grammar_text.txt"),
               "pretrained_folder": str(folder), "text_lm_sentences": 150, "seed": 3}
    mini_prepare._grammar_rehearsal_text_if_missing(hparams)
    lines = (folder / "grammar_text.txt").read_text().splitlines()
    assert len(lines) == 150
    statements = {f["statement"].upper().rstrip(".") for f in fact_world(1234)}
    assert not statements & {line.rstrip(".") for line in lines}
    assert not any(" LIVES NEAR " in line or " HAS A PET " in line for line in lines)
    # any other missing file is not made (train.py refuses it with its name), and nothing is made when off
    for other in (dict(hparams, rehearsal_text=str(folder / "other.txt")),
                  dict(hparams, rehearsal_text=str(tmp_path / "off" / "grammar_text.txt"), w_text_rehearsal=0.0,
                       pretrained_folder=str(tmp_path / "off"))):
        mini_prepare._grammar_rehearsal_text_if_missing(other)
        assert not Path(other["rehearsal_text"]).exists()
