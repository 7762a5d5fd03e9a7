"""A synthetic "fact world" for the knowledge-retention experiment (recipes/SpokenQA).

Spectron's second claim is that a model trained only on speech continuation
keeps what its pre-trained LM knew. At mini scale that needs knowledge the LM
has and the speech corpus never speaks: this module invents it. Each of the
mini corpus's 24 people gets a home, a pet, a colour, an instrument, a fruit
and a swimming day, drawn with a seed. The facts go only into the text the mini LM
is pre-trained on (:func:`fact_lines`); the questions about them
(:func:`fact_questions`) are spoken by espeak-ng for the evaluation.

The people are the corpus's own names, so that the speech model can hear the
question: a test of knowledge, not of hearing new words. Hearing also needs the
question's sentence forms: a speech corpus made with ``spoken_facts``
(:func:`spoken_fact_sentence`) asks and answers half of the facts
(:func:`split_facts`: every fact of half of the people, or three relations
of every person), so that the speech model hears the question forms; the
other half are *asked* only in the evaluation (:func:`asked_facts`), and
they are in the LM's text alone. The relations are
ones the corpus never states about people (it does give them random ages and
birthday months, so those are not relations here), phrased in ways it never uses (``tests/unit/test_factworld.py``
checks it), so the speech corpus cannot teach or contradict them.
"""
import functools
import random

from spectron_kit.data.grammar import _BOYS, _GIRLS

PEOPLE = [name.lower() for name in _BOYS + _GIRLS]

#: relation -> (question, statement, possible answers); ``{p}`` is the person, ``{a}`` the answer
RELATIONS = {
    "home": ("where does {p} live?", "{p} lives near the {a}.",
             ["river", "forest", "lake", "hill", "beach", "mountain", "village", "garden", "field", "barn"]),
    "pet": ("what pet does {p} have?", "{p} has a pet {a}.",
            ["fox", "rabbit", "bear", "duck", "goat", "mouse", "horse", "cat", "dog", "owl",
             "frog", "deer", "wolf", "pig", "sheep", "cow", "hen", "squirrel", "turtle", "donkey"]),
    "color": ("what color does {p} like?", "{p} likes {a} best.",
              ["red", "blue", "green", "yellow", "white", "black", "brown", "gray", "pink", "orange"]),
    "instrument": ("what does {p} play?", "{p} plays the {a}.",
                   ["piano", "violin", "guitar", "drum", "flute", "harp", "trumpet", "cello"]),
    "fruit": ("what fruit does {p} love?", "{p} loves {a}.",
              ["apples", "pears", "plums", "peaches", "bananas", "cherries", "lemons", "grapes", "melons", "figs"]),
    "day": ("what day does {p} swim?", "{p} swims on {a}.",
            ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]),
}


def fact_world(seed: int = 1234) -> list:
    """Every fact of the world: ``[{"person", "relation", "answer", "question", "statement"}]``.

    One answer per (person, relation), drawn uniformly with ``seed``; the same
    seed gives the same world. 24 people x 6 relations = 144 facts.
    """
    rng = random.Random(f"fact-world/{seed}")
    facts = []
    for relation, (question, statement, answers) in RELATIONS.items():
        for person in PEOPLE:
            answer = rng.choice(answers)
            facts.append({"person": person, "relation": relation, "answer": answer,
                          "question": question.format(p=person),
                          "statement": statement.format(p=person, a=answer)})
    return facts


def fact_lines(facts, repeats: int = 20, seed: int = 1234) -> list:
    """LM pre-training lines that state the facts, ``repeats`` lines per fact, shuffled.

    Half the lines ask and answer (``"where does tom live? tom lives near the
    lake."``, the question-answer form of the corpus's own fact sentences), the
    other half state the fact, alone or after another fact of the same person,
    so the LM learns the facts and not only one sentence about each.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a positive integer (lines per fact)")
    rng = random.Random(f"fact-lines/{seed}")
    by_person = {}
    for fact in facts:
        by_person.setdefault(fact["person"], []).append(fact)
    lines = []
    for fact in facts:
        for k in range(repeats):
            if k % 2 == 0:
                lines.append(f"{fact['question']} {fact['statement']}")
            else:
                other = rng.choice([f for f in by_person[fact["person"]] if f is not fact] or [fact])
                pair = [fact["statement"], other["statement"]]
                rng.shuffle(pair)
                lines.append(" ".join(pair) if k % 4 == 1 else fact["statement"])
    rng.shuffle(lines)
    return lines


def fact_world_text(seed: int = 1234, repeats: int = 20, line_seed: int = 1234) -> dict:
    """The fact world as extra lines of the LM's text corpus (``ensure_text_corpus(extra=...)``)."""
    config = {"seed": int(seed), "repeats": int(repeats)}
    return {"name": "fact_world", "config": config, "lines": fact_lines(fact_world(seed), repeats, line_seed)}


def fact_questions(facts) -> list:
    """The spoken-QA records of the facts, in the WebQuestions JSON form ``{question, answers, url}``."""
    return [{"question": f["question"], "answers": [f["answer"]],
             "url": f"factworld:{f['relation']}:{f['person']}"} for f in facts]


#: how :func:`split_facts` halves the facts
SPLITS = ("person", "fact")


def split_facts(seed: int = 1234, by: str = "person") -> tuple:
    """``(spoken, asked)``: the facts a speech corpus may state, and the facts asked about only (72 each).

    ``by="person"``: every fact of 12 people (a seeded draw) is spoken, the
    other 12 people are asked about. ``by="fact"``: every person has 3 spoken
    and 3 asked relations, and every relation is spoken for 12 people (a
    seeded checkerboard of people x relations), so the speech says every name
    in every question form. Either way no asked fact is ever spoken.
    """
    if by not in SPLITS:
        raise ValueError(f"split={by!r}: use one of {', '.join(SPLITS)}")
    people, relations = list(PEOPLE), list(RELATIONS)
    if by == "person":
        random.Random(f"fact-people/{seed}").shuffle(people)
        said = set(people[:len(people) // 2])

        def is_spoken(fact):
            return fact["person"] in said
    else:
        rng = random.Random(f"fact-split/{seed}")
        rng.shuffle(people)
        rng.shuffle(relations)

        def is_spoken(fact):  # a checkerboard of people x relations
            return (people.index(fact["person"]) + relations.index(fact["relation"])) % 2 == 0
    spoken, asked = [], []
    for fact in fact_world(seed):
        (spoken if is_spoken(fact) else asked).append(fact)
    return spoken, asked


@functools.lru_cache(maxsize=8)
def _spoken_facts(seed, by):
    by_person = {}
    for fact in split_facts(seed, by)[0]:
        by_person.setdefault(fact["person"], []).append(fact)
    return tuple(sorted((person, tuple(facts)) for person, facts in by_person.items()))


def _capitalise(text):
    """Each sentence of ``text`` starts with a capital (as the grammar writes for espeak-ng)."""
    out, start = [], True
    for word in text.split(" "):
        out.append(word[0].upper() + word[1:] if start and word else word)
        start = word.endswith((".", "?"))
    return " ".join(out)


def spoken_fact_sentence(rng, seed: int = 1234, by: str = "person") -> tuple:
    """A speech-corpus utterance that asks and answers two *spoken* facts of one person.

    ``"What pet does Tom have? Tom has a pet fox. Where does Tom live? Tom lives
    near the lake."``: the question forms the evaluation asks, answered as the
    LM's text answers them, for the facts of ``split_facts(seed, by)[0]`` only; the
    asked facts are never spoken. Returns ``(text, key)`` like a grammar
    template (the key ``factworld:<relation>:<person>`` of the first fact
    decides held-out).
    """
    person, facts = rng.choice(_spoken_facts(seed, by))
    first, second = rng.sample(list(facts), 2)
    text = " ".join(_capitalise(f"{f['question']} {f['statement']}".replace(person, person.capitalize()))
                    for f in (first, second))
    return text, f"factworld:{first['relation']}:{person}"


def asked_facts(seed: int = 1234, by: str = "person") -> list:
    """The *asked* facts (``split_facts(seed, by)[1]``, 72): never in a ``spoken_facts`` corpus."""
    return split_facts(seed, by)[1]
