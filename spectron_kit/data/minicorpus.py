"""A small synthetic multi-speaker English corpus in LibriSpeech layout.

Sentences come from a hand-written grammar whose second half follows from
the first (a story keeps its subject and its place, a count goes on, a
recipe follows its steps, a list is repeated), so a 3 s prompt says a lot
about the continuation. Speech comes from espeak-ng (:mod:`spectron_kit.data.espeak`)
with one fixed voice setting per speaker. Everything is a function of the
seed: the same seed gives the same files, byte for byte.

Layout under ``root``::

    <split>/<speaker>/<chapter>/<speaker>-<chapter>-<nnnn>.flac   16 kHz, 16 bit
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt     <utt-id> UPPER CASE TEXT
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.words.json    utt-id -> [[WORD, start_s, end_s], ...]
    SPEAKERS.TXT                                                  LibriSpeech-style speaker table
    minicorpus.json                                               completion marker, config and stats

Splits: ``train`` and ``valid`` share the training speakers; ``test`` has
its own speakers (voice variants never used in training) and only sentences
whose slot combination (see :func:`is_heldout`) never occurs in ``train``,
``valid`` or the text corpus of :func:`ensure_text_corpus`.

Example:
    >>> root = ensure_mini_corpus("data/mini", size="tiny")  # doctest: +SKIP
    >>> [row["utterances"] for row in corpus_summary(root)]  # doctest: +SKIP
    [24, 8, 8]
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from spectron_kit.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "Sentence", "Speaker", "SPEAKERS", "SIZES", "SPLITS", "SAMPLE_RATE",
    "generate_sentence", "sentences", "is_heldout", "template_names",
    "ensure_mini_corpus", "corpus_summary", "ensure_text_corpus",
]

GENERATOR_VERSION = 2  # bump whenever the grammar, speakers or audio processing change (2: torchaudio resampling)
SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test")
MIN_SECONDS, MAX_SECONDS = 4.5, 9.0  # prompt (3 s) + at least 1.5 s of continuation
MARKER = "minicorpus.json"
PARTIAL_MARKER = "minicorpus.partial.json"

#: utterances per split, and utterances per chapter
SIZES = {
    "tiny": {"train": 24, "valid": 8, "test": 8, "chapter": 8},
    "default": {"train": 2400, "valid": 120, "test": 120, "chapter": 50},
}


# =============================================================================
# Sentence grammar
# =============================================================================
@dataclasses.dataclass(frozen=True)
class Sentence:
    """One generated utterance text.

    Arguments:
        text: written form read by the synthesiser (capitals, punctuation).
        template: grammar template that produced it.
        key: its slot combination; held-out keys are kept for the test split.
    """

    text: str
    template: str
    key: str

    @property
    def words(self) -> list:
        """Upper-case words, as in the transcript."""
        from spectron_kit.data.espeak import tokenize
        return [w.upper() for w, _, _ in tokenize(self.text)]

    @property
    def transcript(self) -> str:
        """LibriSpeech-style transcript: upper case, no punctuation."""
        return " ".join(self.words)

    @property
    def heldout(self) -> bool:
        """Whether the slot combination is reserved for the test split."""
        return is_heldout(self.key)


_BOYS = ["Tom", "Ben", "Jack", "Sam", "Max", "Leo", "Paul", "Oscar", "Hugo", "Peter", "Adam", "Dan"]
_GIRLS = ["Anna", "Lucy", "Mary", "Emma", "Lily", "Rose", "Kate", "Nina", "Ella", "Grace", "Sara", "Julia"]

_NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
            "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number(n: int) -> str:
    """English words for 0..100 (``_number(42) == 'forty two'``)."""
    if n < 20:
        return _NUMBERS[n]
    if n == 100:
        return "one hundred"
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else " " + _NUMBERS[ones])


def _person(rng):
    if rng.random() < 0.5:
        return rng.choice(_BOYS), "he", "his"
    return rng.choice(_GIRLS), "she", "her"


def _join(*sentences):
    """Capitalise each sentence and join them."""
    return " ".join(s[0].upper() + s[1:] for s in sentences)


def _series(items):
    """'a, b and c'."""
    return ", ".join(items[:-1]) + " and " + items[-1]


# -- story: a subject goes to a place and does what one does there -------------------
_ANIMALS = ["fox", "rabbit", "bear", "duck", "goat", "mouse", "horse", "cat", "dog", "owl",
            "frog", "deer", "wolf", "pig", "sheep", "cow", "hen", "squirrel", "turtle", "donkey"]
_ANIMAL_ADJ = ["little", "big", "old", "young", "brown", "white", "gray", "black", "happy",
               "sleepy", "hungry", "clever", "tired", "small", "curious", "shy"]
_GO = ["walked", "ran", "went", "hurried", "wandered"]
_PLACES = {
    "river": ["drank the cold water", "watched the fish swim by", "washed its dusty feet"],
    "garden": ["ate the green leaves", "smelled the red roses", "dug a small hole"],
    "forest": ["looked for sweet berries", "rested under a tall tree", "listened to the birds"],
    "hill": ["looked down at the whole valley", "rolled down the soft grass", "watched the white clouds"],
    "barn": ["slept on the warm hay", "found some yellow corn", "hid from the rain"],
    "lake": ["swam in the clear water", "watched the boats go by", "sat on a flat rock"],
    "field": ["ran through the tall grass", "chased a yellow butterfly", "ate some fresh clover"],
    "beach": ["played in the warm sand", "looked at the big waves", "found a pretty shell"],
    "mountain": ["saw the white snow", "felt the cold wind", "looked at the tiny houses below"],
    "village": ["said hello to the baker", "drank from the old well", "sat in the quiet square"],
}
_STORY_END = ["went back home", "fell asleep", "sang a happy song", "waited for its friends",
              "ran home for dinner", "told its mother all about it"]


def _story(rng):
    animal, place = rng.choice(_ANIMALS), rng.choice(sorted(_PLACES))
    action = rng.choice(_PLACES[place])
    text = _join(f"the {rng.choice(_ANIMAL_ADJ)} {animal} {rng.choice(_GO)} to the {place}.",
                 f"there the {animal} {action}, and then it {rng.choice(_STORY_END)}.")
    return text, f"story:{animal}:{place}"


# -- counting: a sequence that goes on -----------------------------------------------
_COUNTED = ["apples", "stars", "sheep", "birds", "boats", "trees", "stones", "cookies",
            "chickens", "flowers", "books", "coins", "shells", "buttons"]
_COUNTDOWNS = [("the rocket is ready on the launch pad", "lift off!"),
               ("the race is about to begin", "go!"),
               ("the children play hide and seek", "ready or not, here I come!"),
               ("the old year is almost over", "happy new year!")]


def _counting(rng):
    form = rng.choice(["up", "by", "down"])
    if form == "up":
        name, _, _ = _person(rng)
        start, n, noun = rng.randint(1, 9), rng.randint(5, 8), rng.choice(_COUNTED)
        nums = [_number(k) for k in range(start, start + n)]
        text = _join(f"{name} counted the {noun}.", ", ".join(nums) + ".")
        return text, f"count:up:{start}:{noun}"
    if form == "by":
        step = rng.choice([2, 5, 10])
        n = rng.randint(5, 7)
        label = {2: "twos", 5: "fives", 10: "tens"}[step]
        name, _, _ = _person(rng)
        nums = [_number(step * k) for k in range(1, n + 1)]
        text = _join(f"{name} can count by {label}.", ", ".join(nums) + ".")
        return text, f"count:by:{step}:{name}"
    start = rng.randint(5, 9)
    intro, shout = rng.choice(_COUNTDOWNS)
    nums = [_number(k) for k in range(start, 0, -1)]
    text = _join(f"{intro}.", ", ".join(nums) + ", " + shout)
    return text, f"count:down:{start}:{intro.split()[1]}"


# -- calendar: days, months and seasons in order ---------------------------------------
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]
_SEASONS = {"winter": "it is cold and the snow covers the ground",
            "spring": "the flowers open and the birds come back",
            "summer": "the days are long and the sun is hot",
            "autumn": "the leaves turn brown and fall from the trees"}
_SEASON_ORDER = ["winter", "spring", "summer", "autumn"]


def _calendar(rng):
    form = rng.choice(["today", "yesterday", "week", "months", "seasons"])
    d = rng.randrange(7)
    day = lambda k: _DAYS[(d + k) % 7]  # noqa: E731
    name, _, _ = _person(rng)
    if form == "today":
        text = _join(f"{name} says that today is {day(0)}.",
                     f"tomorrow will be {day(1)}, and the day after tomorrow will be {day(2)}.")
        return text, f"days:today:{day(0)}:{name}"
    if form == "yesterday":
        text = _join(f"{name} knows that yesterday was {day(-1)}, so today is {day(0)}.",
                     f"tomorrow will be {day(1)}.")
        return text, f"days:yesterday:{day(0)}:{name}"
    if form == "week":
        text = _join(f"{name} works every day of the week.",
                     f"on {day(0)}, on {day(1)}, on {day(2)} and on {day(3)}.")
        return text, f"days:week:{day(0)}:{name}"
    if form == "months":
        m = rng.randrange(12)
        month = lambda k: _MONTHS[(m + k) % 12]  # noqa: E731
        text = _join(f"the birthday of {name} is in {month(0)}.",
                     f"after {month(0)} comes {month(1)}, and after {month(1)} comes {month(2)}.")
        return text, f"months:{month(0)}:{name}"
    s = rng.randrange(4)
    now, nxt = _SEASON_ORDER[s], _SEASON_ORDER[(s + 1) % 4]
    text = _join(f"{name} likes {now}, because in {now} {_SEASONS[now]}.",
                 f"after {now} comes {nxt}, and in {nxt} {_SEASONS[nxt]}.")
    return text, f"seasons:{now}:{name}"


# -- recipe: a fixed sequence of steps per dish ------------------------------------------
_DISHES = {
    "tea": ["boil some water", "put the tea leaves in the pot", "pour the hot water over the leaves",
            "wait for three minutes"],
    "soup": ["wash the vegetables", "cut them into small pieces", "cook them in a big pot",
             "add a little salt"],
    "bread": ["mix the flour with water", "knead the soft dough", "let it rest for an hour",
              "bake it in the hot oven"],
    "a salad": ["wash the green lettuce", "cut the tomatoes", "add some oil and lemon",
                "mix everything in a bowl"],
    "pancakes": ["mix the eggs with milk and flour", "heat a pan with some butter",
                 "pour in the batter", "turn them over"],
    "rice": ["wash the rice", "put it in a pot of water", "cook it for twenty minutes",
             "let it rest a little"],
    "lemonade": ["squeeze the lemons", "add cold water and sugar", "stir it with a spoon",
                 "put in some ice"],
    "a sandwich": ["take two slices of bread", "spread some butter on them",
                   "put cheese between the slices", "cut it in half"],
    "porridge": ["pour the oats into a pot", "add some milk", "stir it over a low fire",
                 "put honey on top"],
    "an omelet": ["break three eggs into a bowl", "beat them with a fork",
                  "pour them into a hot pan", "fold it in half"],
}
_COOKS = ["we", "you", "I"]


def _recipe(rng):
    dish, who = rng.choice(sorted(_DISHES)), rng.choice(_COOKS)
    steps = _DISHES[dish]
    if rng.random() < 0.4:
        name, _, _ = _person(rng)
        text = _join(f"{name} and I make {dish} together.", f"first we {steps[0]}.",
                     f"then we {steps[1]}, and after that we {steps[2]}.")
        return text, f"recipe:{dish}:{name}"
    if rng.random() < 0.6:
        text = _join(f"to make {dish}, first {who} {steps[0]}.",
                     f"then {who} {steps[1]}, and after that {who} {steps[2]}.")
        return text, f"recipe:{dish}:{who}:3"
    text = _join(f"to make {dish}, {who} {steps[0]}.",
                 f"then {who} {steps[1]}.", f"next {who} {steps[2]}, and {who} {steps[3]}.")
    return text, f"recipe:{dish}:{who}:4"


# -- lists: a list is named, then repeated in order -------------------------------------
_FRAMES = [
    ("went to the market and bought", "at home {p} put the {items} on the table",
     ["apples", "bread", "milk", "eggs", "cheese", "carrots", "onions", "rice", "fish", "butter",
      "lemons", "potatoes", "tomatoes", "honey", "beans", "oranges", "plums", "grapes", "pears"]),
    ("packed a bag with", "at the park {p} took out the {items}",
     ["a book", "an apple", "a ball", "a hat", "a kite", "a blanket", "a cup", "a map", "a pencil",
      "a towel", "a sandwich", "a whistle"]),
    ("planted", "in the summer {p} picked the {items}",
     ["carrots", "beans", "peas", "onions", "tomatoes", "potatoes", "pumpkins", "melons",
      "strawberries", "cabbages"]),
]


def _lists(rng):
    name, pron, _ = _person(rng)
    f = rng.randrange(len(_FRAMES))
    first, second, pool = _FRAMES[f]
    items = rng.sample(pool, 3)
    bare = [i.split(" ", 1)[-1] if i.startswith(("a ", "an ")) else i for i in items]
    again = "the " + ", the ".join(bare[:-1]) + " and the " + bare[-1]
    text = _join(f"{name} {first} {_series(items)}.",
                 second.format(p=pron, items=again[4:]) + ".")
    return text, f"list:{f}:{bare[0]}:{bare[1]}"


# -- jobs: what a worker does every day ---------------------------------------------------
_JOBS = {
    "baker": ("bakes fresh bread", "sells cakes to the children"),
    "farmer": ("feeds the cows and the pigs", "works in the field"),
    "teacher": ("walks to the school", "helps the children read"),
    "doctor": ("visits the sick people", "gives them medicine"),
    "fisher": ("takes the boat out to sea", "sells the fish at the market"),
    "driver": ("drives the big bus to town", "washes the bus"),
    "painter": ("paints the old houses", "cleans the brushes"),
    "gardener": ("waters the flowers", "cuts the grass in the park"),
    "cook": ("makes breakfast for everyone", "cooks a big dinner"),
    "nurse": ("helps the doctor", "takes care of the children"),
    "singer": ("sings in the old theater", "practices new songs"),
    "tailor": ("cuts the cloth", "sews new shirts and coats"),
}


def _jobs(rng):
    job = rng.choice(sorted(_JOBS))
    name, pron, _ = _person(rng)
    morning, afternoon = _JOBS[job]
    text = _join(f"{name} is a {job}.",
                 f"every morning {pron} {morning}, and in the afternoon {pron} {afternoon}.")
    return text, f"job:{job}:{name}"


# -- questions with fixed answers -----------------------------------------------------------
_COLORS = {"the sky": "blue", "the grass": "green", "snow": "white", "the sun": "yellow",
           "coal": "black", "milk": "white", "a lemon": "yellow", "a tomato": "red",
           "a leaf": "green", "the sea": "blue", "a banana": "yellow", "chocolate": "brown",
           "a crow": "black", "a cherry": "red"}
_LEGS = {"a dog": "four", "a bird": "two", "a spider": "eight", "an ant": "six", "a cat": "four",
         "a duck": "two", "a horse": "four", "a fish": "no", "a snake": "no", "a chicken": "two"}
_SOUNDS = {"the cow": "moo", "the dog": "woof", "the cat": "meow", "the duck": "quack",
           "the sheep": "baa", "the pig": "oink", "the owl": "hoot", "the lion": "roar"}


def fact_questions():
    """Every question of the corpus's fact world with its answer: ``[(question, answer)]``.

    The mini corpus speaks these facts ("how many legs does a bird have? a bird
    has two legs."), so they make an in-domain spoken-QA check of a mini model
    (``recipes/SpokenQA``): can it answer when it hears only the question?
    """
    out = [(f"what color is {thing}?", colour) for thing, colour in _COLORS.items()]
    out += [(f"how many legs does {thing} have?", legs) for thing, legs in _LEGS.items()]
    out += [(f"what does {thing} say?", sound) for thing, sound in _SOUNDS.items()]
    return out


def _facts(rng):
    kind = rng.choice(["color", "legs", "sound"])
    table = {"color": _COLORS, "legs": _LEGS, "sound": _SOUNDS}[kind]
    a, b = rng.sample(sorted(table), 2)
    parts = []
    for thing in (a, b):
        if kind == "color":
            parts += [f"what color is {thing}?", f"{thing} is {table[thing]}."]
        elif kind == "legs":
            parts += [f"how many legs does {thing} have?", f"{thing} has {table[thing]} legs."]
        else:
            parts += [f"what does {thing} say?", f"{thing} says {table[thing]}."]
    return _join(*parts), f"facts:{kind}:{a.split()[-1]}:{b.split()[-1]}"


# -- small sums: a trip, an age -----------------------------------------------------------
_VEHICLES = ["train", "bus", "boat", "plane", "car"]


def _sums(rng):
    if rng.random() < 0.5:
        vehicle = rng.choice(_VEHICLES)
        h, d = rng.randint(1, 9), rng.randint(1, 3)
        hours = "one hour" if d == 1 else f"{_number(d)} hours"
        text = _join(f"the {vehicle} left at {_number(h)} o'clock, and the trip took {hours}.",
                     f"so the {vehicle} arrived at {_number(h + d)} o'clock.")
        return text, f"trip:{vehicle}:{h}:{d}"
    name, pron, _ = _person(rng)
    n = rng.randint(3, 15)
    text = _join(f"{name} is {_number(n)} years old.",
                 f"next year {pron} will be {_number(n + 1)}, and the year after that "
                 f"{pron} will be {_number(n + 2)}.")
    return text, f"age:{n}:{name}"


# -- opposites: a fixed contrast per pair --------------------------------------------------
_OPPOSITES = [("an elephant is big", "a mouse is small"), ("a rabbit is fast", "a turtle is slow"),
              ("fire is hot", "ice is cold"), ("the day is bright", "the night is dark"),
              ("a feather is light", "a stone is heavy"), ("a giraffe is tall", "a puppy is short"),
              ("the desert is dry", "the sea is wet"), ("a lion is loud", "a fish is quiet"),
              ("a full cup is heavy", "an empty cup is light"), ("summer is warm", "winter is cold"),
              ("a bear is strong", "a kitten is weak"), ("the sun is high", "the grass is low"),
              ("honey is sweet", "a lemon is sour"), ("a tree is old", "a seed is young"),
              ("a road is long", "a step is short"), ("a river is wide", "a path is narrow")]


def _opposites(rng):
    i, j = rng.sample(range(len(_OPPOSITES)), 2)
    name, _, _ = _person(rng)
    text = _join(f"{name} learned that {_OPPOSITES[i][0]}, but {_OPPOSITES[i][1]}.",
                 f"{_OPPOSITES[j][0]}, but {_OPPOSITES[j][1]}.")
    return text, f"opposites:{i}:{j}:{name}"


# -- exchange: what A does to B, B does back to A --------------------------------------------
_EXCHANGES = [("threw the ball to {b}", "threw the ball back to {a}"),
              ("said good morning to {b}", "said good morning to {a}"),
              ("wrote a letter to {b}", "wrote a letter back to {a}"),
              ("waved to {b}", "waved back to {a}"),
              ("gave a red flower to {b}", "gave a yellow flower to {a}")]


def _exchange(rng):
    (a, _, _), (b, _, _) = _person(rng), _person(rng)
    while b == a:
        b, _, _ = _person(rng)
    k = rng.randrange(len(_EXCHANGES))
    there, back = _EXCHANGES[k]
    text = _join(f"{a} {there.format(b=b)}, and then {b} {back.format(a=a)}.",
                 f"after that {a} and {b} went home together.")
    return text, f"exchange:{k}:{a}:{b}"


_TEMPLATES = {
    "story": (_story, 3.0), "counting": (_counting, 1.5), "calendar": (_calendar, 1.5),
    "recipe": (_recipe, 2.0), "lists": (_lists, 1.5), "jobs": (_jobs, 1.5), "facts": (_facts, 1.5),
    "sums": (_sums, 1.0), "opposites": (_opposites, 1.0), "exchange": (_exchange, 1.0),
}


def template_names() -> list:
    """Names of the grammar templates.

    Returns:
        List such as ``['story', 'counting', ...]``.
    """
    return list(_TEMPLATES)


def is_heldout(key: str) -> bool:
    """Whether a slot combination is reserved for the test split (about one in eight).

    Arguments:
        key: :attr:`Sentence.key`, e.g. ``"story:fox:river"``.
    Returns:
        True for held-out combinations; fixed for all seeds.

    Example:
        >>> is_heldout("story:fox:river") in (True, False)
        True
    """
    digest = hashlib.sha1(f"spectron-minicorpus/{key}".encode()).digest()
    return digest[0] % 8 == 0


def generate_sentence(rng: random.Random, heldout: bool | None = False) -> Sentence:
    """Draw one utterance text from the grammar.

    Arguments:
        rng: the random source (``random.Random(seed)``).
        heldout: False draws only training combinations, True only held-out
            (test) ones, None either.
    Returns:
        A :class:`Sentence`.

    Example:
        >>> generate_sentence(random.Random(0)).text == generate_sentence(random.Random(0)).text
        True
    """
    if heldout not in (True, False, None):
        raise ValueError(f"heldout must be True, False or None, got {heldout!r}")
    names = list(_TEMPLATES)
    weights = [_TEMPLATES[n][1] for n in names]
    for _ in range(10000):
        name = rng.choices(names, weights)[0]
        text, key = _TEMPLATES[name][0](rng)
        if heldout is None or is_heldout(key) == heldout:
            return Sentence(text, name, key)
    raise RuntimeError("the grammar produced no sentence of the requested kind")  # pragma: no cover


def sentences(n: int, seed: int = 1234, heldout: bool | None = False) -> list:
    """``n`` sentences from a seeded stream (text only, fast).

    Arguments:
        n: how many.
        seed: stream seed.
        heldout: as in :func:`generate_sentence`.
    Returns:
        List of :class:`Sentence`.

    Example:
        >>> [s.text for s in sentences(3, seed=7)] == [s.text for s in sentences(3, seed=7)]
        True
    """
    if int(n) < 0:
        raise ValueError(f"n={n!r} must be >= 0")
    rng = random.Random(f"sentences/{seed}")
    return [generate_sentence(rng, heldout) for _ in range(int(n))]


# =============================================================================
# Speakers
# =============================================================================
@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a fixed espeak-ng voice setting.

    Arguments:
        id: LibriSpeech-style numeric speaker id.
        group: ``"train"`` (train and valid splits) or ``"test"``.
        voice: espeak-ng ``base+variant`` voice.
        pitch, pitch_range, rate: espeak-ng settings (0-100, 0-100, words per minute).
        gain_db: peak level of the written audio in dBFS.
        sex: ``"M"`` or ``"F"`` for SPEAKERS.TXT.
    """

    id: int
    group: str
    voice: str
    pitch: int
    pitch_range: int
    rate: int
    gain_db: float
    sex: str


#: 12 training speakers and 2 test speakers (test variants m7/f4 appear nowhere in training)
SPEAKERS = (
    Speaker(101, "train", "en-us+m1", 40, 50, 165, -2.0, "M"),
    Speaker(102, "train", "en-us+f2", 62, 60, 170, -3.0, "F"),
    Speaker(103, "train", "en+m3", 45, 40, 155, -1.5, "M"),
    Speaker(104, "train", "en+f1", 58, 55, 160, -4.0, "F"),
    Speaker(105, "train", "en-gb-scotland+m2", 35, 45, 150, -2.5, "M"),
    Speaker(106, "train", "en-gb-x-rp+f3", 66, 70, 175, -3.5, "F"),
    Speaker(107, "train", "en-029+m4", 48, 55, 170, -2.0, "M"),
    Speaker(108, "train", "en-gb-x-gbclan+f5", 55, 45, 160, -5.0, "F"),
    Speaker(109, "train", "en-us+klatt3", 50, 50, 180, -3.0, "M"),
    Speaker(110, "train", "en-gb-x-gbcwmd+m6", 38, 60, 165, -1.0, "M"),
    Speaker(111, "train", "en-us+Annie", 60, 65, 155, -4.5, "F"),
    Speaker(112, "train", "en+klatt6", 45, 35, 175, -2.5, "M"),
    Speaker(901, "test", "en-us-nyc+m7", 42, 55, 160, -2.0, "M"),
    Speaker(902, "test", "en-gb-x-rp+f4", 64, 60, 165, -3.0, "F"),
)


def _split_speakers(split):
    group = "test" if split == "test" else "train"
    return [s for s in SPEAKERS if s.group == group]


# =============================================================================
# Corpus generation
# =============================================================================
def _config(size, seed):
    if size not in SIZES:
        raise ValueError(f"unknown corpus size {size!r}; use one of: {', '.join(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    config = {"version": GENERATOR_VERSION, "size": size, "counts": SIZES[size], "seed": seed,
              "sample_rate": SAMPLE_RATE, "seconds": [MIN_SECONDS, MAX_SECONDS],
              "speakers": [dataclasses.asdict(s) for s in SPEAKERS]}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return config, digest


def _chapter_jobs(size):
    """Chapters to write: (split, speaker, chapter id, [(index in split, nnnn)])."""
    counts = SIZES[size]
    per_chapter = counts["chapter"]
    jobs = []
    for split in SPLITS:
        speakers = _split_speakers(split)
        chapters = {}
        for i in range(counts[split]):
            spk = speakers[i % len(speakers)]
            j = i // len(speakers)
            chapter = spk.id * 100 + (50 if split == "valid" else 0) + j // per_chapter
            chapters.setdefault((spk.id, chapter), []).append((i, j % per_chapter))
        for (spk_id, chapter), utts in chapters.items():
            jobs.append((split, spk_id, chapter, utts))
    return jobs


def _pick_utterance(seed, split, index, speaker):
    """Synthesise sentences for one utterance until one lasts 4.5-9 s (deterministic)."""
    from spectron_kit.data.espeak import synthesize

    rng = random.Random(f"minicorpus/{seed}/{split}/{index}")
    best = None
    for attempt in range(50):
        sentence = generate_sentence(rng, heldout=(split == "test"))
        out = synthesize(sentence.text, voice=speaker.voice, rate=speaker.rate, pitch=speaker.pitch,
                         pitch_range=speaker.pitch_range, volume=70, sample_rate=SAMPLE_RATE,
                         seed=rng.randrange(2 ** 31))
        miss = max(MIN_SECONDS - out.duration, out.duration - MAX_SECONDS, 0.0)
        if best is None or miss < best[0]:
            best = (miss, sentence, out)
        if miss == 0.0:
            break
    _, sentence, out = best
    peak = float(np.max(np.abs(out.wav))) or 1.0
    wav = out.wav * (10.0 ** (speaker.gain_db / 20.0) / peak)
    pcm = np.clip(np.round(wav * 32767.0), -32768, 32767).astype(np.int16)
    words = [[w.word.upper(), round(w.start, 3), round(w.end, 3)] for w in out.words]
    return sentence, pcm, words


def _write_atomic(path, data: str):
    tmp = f"{path}.{os.getpid()}.tmp"  # private name: concurrent builders never share it
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


def _alignment_json(table):
    lines = [f"  {json.dumps(uid)}: {json.dumps(words)}" for uid, words in table.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _single_thread_blas():
    """Keep numpy's BLAS on one thread: threaded BLAS crawls on a busy machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, "blas")


def _make_chapter(root, seed, job):
    """Write one chapter (skips finished chapters and finished audio files)."""
    with _single_thread_blas():
        return _write_chapter(root, seed, job)


def _write_chapter(root, seed, job):
    import soundfile as sf

    split, spk_id, chapter, utts = job
    speaker = next(s for s in SPEAKERS if s.id == spk_id)
    folder = Path(root) / split / str(spk_id) / str(chapter)
    trans_path = folder / f"{spk_id}-{chapter}.trans.txt"
    words_path = folder / f"{spk_id}-{chapter}.words.json"
    if trans_path.exists() and words_path.exists():
        samples = sum(sf.info(str(folder / f"{spk_id}-{chapter}-{n:04d}.flac")).frames
                      for _, n in utts)
        return len(utts), samples, True
    folder.mkdir(parents=True, exist_ok=True)
    trans, align, samples = [], {}, 0
    for index, n in utts:
        uid = f"{spk_id}-{chapter}-{n:04d}"
        sentence, pcm, words = _pick_utterance(seed, split, index, speaker)
        flac = folder / f"{uid}.flac"
        if not flac.exists():
            tmp = folder / f"{uid}.{os.getpid()}.tmp.flac"
            sf.write(str(tmp), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            os.replace(tmp, flac)
        trans.append(f"{uid} {sentence.transcript}")
        align[uid] = words
        samples += len(pcm)
    _write_atomic(words_path, _alignment_json(align))
    _write_atomic(trans_path, "\n".join(trans) + "\n")  # written last: marks the chapter done
    return len(utts), samples, False


def _speakers_txt(seconds):
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for s in SPEAKERS:
        subset = "train, valid" if s.group == "train" else "test"
        minutes = seconds.get(s.id, 0.0) / 60.0
        lines.append(f"{s.id:<5}| {s.sex} | {subset:<16} | {minutes:5.2f} | espeak-ng {s.voice} "
                     f"pitch={s.pitch} range={s.pitch_range} rate={s.rate}")
    return "\n".join(lines) + "\n"


def ensure_mini_corpus(root, size: str = "default", seed: int = 1234, workers: int = 1,
                       progress: bool = True) -> Path:
    """Generate the mini corpus under ``root`` unless it is already complete.

    A finished corpus holds ``minicorpus.json`` with its config hash: a second
    call returns at once. An interrupted run resumes: finished chapters and
    audio files are kept.

    Arguments:
        root: output folder (created).
        size: ``"tiny"`` (40 utterances, for tests) or ``"default"`` (2640).
        seed: corpus seed; the same seed gives identical files.
        workers: processes to use (each loads its own espeak-ng).
        progress: show a rich progress bar.
    Returns:
        ``Path(root)``.

    Example:
        >>> ensure_mini_corpus("data/mini", size="tiny", seed=1)  # doctest: +SKIP
        PosixPath('data/mini')
    """
    config, digest = _config(size, seed)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be an integer >= 1")
    root = Path(root)
    marker, partial = root / MARKER, root / PARTIAL_MARKER
    for path in (marker, partial):
        if path.exists():
            found = json.loads(path.read_text())
            older = dict(found.get("config", {}), version=GENERATOR_VERSION) == config
            if older and path == marker:  # same corpus from an older generator: usable, slightly different audio
                logger.warning("%s was built by mini-corpus generator version %s (now %s); it is used as is "
                               "(delete the folder to rebuild it with the current audio processing)", root,
                               found["config"].get("version"), GENERATOR_VERSION)
                return root
            if found.get("config_hash") != digest:
                raise ValueError(
                    f"{root} already holds a mini corpus built with size={found['config']['size']!r}, "
                    f"seed={found['config']['seed']!r} (config {found.get('config_hash')}); "
                    f"pick another root or delete that folder")
            if path == marker:
                return root
    root.mkdir(parents=True, exist_ok=True)
    _write_atomic(partial, json.dumps({"config_hash": digest, "config": config}, indent=1) + "\n")
    jobs = _chapter_jobs(size)
    stats = {split: {"speakers": len({j[1] for j in jobs if j[0] == split}),
                     "utterances": 0, "samples": 0} for split in SPLITS}
    speaker_samples = {}
    started = time.perf_counter()
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task(f"mini corpus ({size})", total=sum(len(j[3]) for j in jobs))

        def done(job, result):
            n, samples, _ = result
            stats[job[0]]["utterances"] += n
            stats[job[0]]["samples"] += samples
            speaker_samples[job[1]] = speaker_samples.get(job[1], 0) + samples
            bar.advance(task, n)

        if workers == 1:
            for job in jobs:
                done(job, _make_chapter(str(root), seed, job))
        else:
            import multiprocessing
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(_make_chapter, str(root), seed, job): job for job in jobs}
                for future in as_completed(futures):
                    done(futures[future], future.result())
    for row in stats.values():
        row["seconds"] = row.pop("samples") / SAMPLE_RATE
    speaker_seconds = {k: v / SAMPLE_RATE for k, v in speaker_samples.items()}
    _write_atomic(root / "SPEAKERS.TXT", _speakers_txt(speaker_seconds))
    record = {"config_hash": digest, "config": config, "splits": stats,
              "build_seconds": round(time.perf_counter() - started, 1)}
    _write_atomic(marker, json.dumps(record, indent=1) + "\n")
    partial.unlink(missing_ok=True)
    return root


def corpus_summary(root) -> list:
    """Per-split statistics of a finished mini corpus.

    Arguments:
        root: a folder made by :func:`ensure_mini_corpus`.
    Returns:
        One dict per split: ``split``, ``speakers``, ``utterances``, ``hours``.
    """
    marker = Path(root) / MARKER
    if not marker.exists():
        raise FileNotFoundError(f"{marker} not found; build the corpus first with "
                                f"ensure_mini_corpus({str(root)!r})")
    record = json.loads(marker.read_text())
    return [{"split": split, "speakers": row["speakers"], "utterances": row["utterances"],
             "hours": row["seconds"] / 3600.0} for split, row in record["splits"].items()]


# =============================================================================
# Text-only corpus for language-model pre-training
# =============================================================================
def ensure_text_corpus(path, n_sentences: int = 50000, seed: int = 1234,
                       style: str = "transcript", progress: bool = True, extra=None) -> Path:
    """Write ``n_sentences`` grammar sentences, one a line, unless already written.

    Held-out slot combinations (every test utterance) are left out.
    ``extra`` (``{"name": ..., "config": {...}, "lines": [...]}``) mixes more
    written lines in, e.g. a synthetic fact world
    (:func:`spectron_kit.data.factworld.fact_world_text`, for the
    knowledge-retention experiment); its name and config key the cache.

    Arguments:
        path: output text file.
        n_sentences: number of lines.
        seed: stream seed.
        style: ``"transcript"`` (UPPER CASE, no punctuation, like trans.txt) or
            ``"written"`` (capitals and punctuation).
        progress: show a rich progress bar.
    Returns:
        ``Path(path)``; a ``<path>.json`` sidecar records the config.
    """
    if style not in ("transcript", "written"):
        raise ValueError(f"style={style!r}; use 'transcript' or 'written'")
    if isinstance(n_sentences, bool) or not isinstance(n_sentences, int) or n_sentences < 1:
        raise ValueError(f"n_sentences={n_sentences!r} must be a positive integer")
    path = Path(path)
    config = {"version": GENERATOR_VERSION, "n_sentences": n_sentences, "seed": seed, "style": style}
    if extra:
        missing = sorted({"name", "config", "lines"} - set(extra))
        if missing:
            raise ValueError(f"extra lacks {missing}: give name, config and lines")
        config[extra["name"]] = extra["config"]
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    sidecar = path.with_name(path.name + ".json")
    if path.exists() and sidecar.exists():
        if json.loads(sidecar.read_text()).get("config_hash") == digest:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"text-corpus/{seed}")
    lines = []
    with progress_bar(disable=not progress) as bar:
        task = bar.add_task("text corpus", total=n_sentences)
        for i in range(n_sentences):
            s = generate_sentence(rng, heldout=False)
            lines.append(s.transcript if style == "transcript" else s.text)
            if (i + 1) % 1000 == 0 or i + 1 == n_sentences:
                bar.advance(task, 1000 if (i + 1) % 1000 == 0 else (i + 1) % 1000)
    if extra:
        from spectron_kit.data.espeak import tokenize

        more = list(extra["lines"])
        if style == "transcript":
            more = [" ".join(w.upper() for w, _, _ in tokenize(line)) for line in more]
        lines += more
        random.Random(f"text-corpus-mix/{seed}").shuffle(lines)
    _write_atomic(path, "\n".join(lines) + "\n")
    _write_atomic(sidecar, json.dumps({"config_hash": digest, "config": config}, indent=1) + "\n")
    return path
