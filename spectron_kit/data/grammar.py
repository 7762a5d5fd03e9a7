"""The mini corpus's sentence grammar: sentences whose second half follows from the first.

A story keeps its subject and its place, a count goes on, a recipe follows its
steps, a list is repeated, so a 3 s prompt says a lot about the continuation.
Every sentence is a function of the random stream it is drawn from; slot
combinations that :func:`is_heldout` reserves appear only in the test split.
Used by :mod:`spectron_kit.data.minicorpus` (speech) and its text corpus.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random

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


def generate_sentence(rng: random.Random, heldout: bool | None = False, extra_templates=None) -> Sentence:
    """Draw one utterance text from the grammar.

    Arguments:
        rng: the random source (``random.Random(seed)``).
        heldout: False draws only training combinations, True only held-out
            (test) ones, None either.
        extra_templates: ``{name: (function, weight)}`` drawn beside the
            grammar's own; ``function(rng)`` returns ``(text, key)`` (e.g.
            :func:`spectron_kit.data.factworld.spoken_fact_sentence`).
    Returns:
        A :class:`Sentence`.

    Example:
        >>> generate_sentence(random.Random(0)).text == generate_sentence(random.Random(0)).text
        True
    """
    if heldout not in (True, False, None):
        raise ValueError(f"heldout must be True, False or None, got {heldout!r}")
    templates = dict(_TEMPLATES, **(extra_templates or {}))
    names = list(templates)
    weights = [templates[n][1] for n in names]
    for _ in range(10000):
        name = rng.choices(names, weights)[0]
        text, key = templates[name][0](rng)
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
