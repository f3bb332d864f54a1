"""ScienceQA-style multiple-choice items: Question / Context / Options, answered "The answer is X.".

An item reuses a VQA question of a type belonging to its category, the correct answer and 1 to 3
distractors drawn from the same answer domain (e.g. other colours), 2 to 4 options in all, the
correct one at a uniformly random position. Half the items carry a text ``context`` - a caption of
the scene at a level that does not state the asked attribute (ScienceQA's "TXT" context) - and
half an empty one (shown as ``N/A``, ScienceQA's "NO" context).

>>> item = MCItem("what color is the circle?", "a circle and a square.", ("blue", "red"), 1,
...               "color")
>>> print(format_prompt(item))
Question: what color is the circle?
Context: a circle and a square.
Options: (A) blue (B) red
Answer:
>>> answer_text(item)
'The answer is B.'
>>> parse_answer("The answer is B."), parse_answer("the answer is (c)"), parse_answer("red")
(1, 2, None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .captions import NUMBER_WORDS, caption
from .questions import AnswerBalance, Pool, candidate_pool, draw_balanced
from .scenes import COLORS, MAX_OBJECTS, SHAPES, Scene

MC_CATEGORIES: tuple[str, ...] = ("counting", "color", "shape", "spatial", "comparison")

CATEGORY_TYPES: dict[str, tuple[str, ...]] = {
    "counting": ("count",),
    "color": ("color",),
    "shape": ("shape",),
    "spatial": ("position", "relation", "closest"),
    "comparison": ("compare",),
}
"""The VQA question types each category draws its questions from."""

CONTEXT_LEVEL: dict[str, str] = {
    "counting": "count",
    "color": "categories",
    "shape": "count",
    "spatial": "count",
    "comparison": "count",
}
"""The caption level used as a text context for each category."""

OPTION_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
NO_CONTEXT = "N/A"

WORDS: tuple[str, ...] = (
    "question", "context", "options", "answer", "the", "is", "n/a", ":", "(", ")", ".",
    *(letter.lower() for letter in OPTION_LETTERS),
)  # fmt: skip
"""Every token of the prompt layout and the answer sentence (the tokenizer lower-cases)."""

_ANSWER_PATTERN = re.compile(r"answer\s+is\s*\(?\s*([a-d])\s*\)?\s*(?:[.,;:!]|$)", re.IGNORECASE)
_BARE_PATTERN = re.compile(r"^\(?\s*([a-d])\s*\)?\s*\.?$", re.IGNORECASE)


@dataclass(frozen=True)
class MCItem:
    """A multiple-choice item; ``options[answer_index]`` is the correct option."""

    question: str
    context: str
    options: tuple[str, ...]
    answer_index: int
    category: str


def format_prompt(item: MCItem) -> str:
    """The LLaVA ScienceQA "QCM" prompt: question, context (``N/A`` when empty), options."""
    options = " ".join(f"({OPTION_LETTERS[i]}) {o}" for i, o in enumerate(item.options))
    context = item.context or NO_CONTEXT
    return f"Question: {item.question}\nContext: {context}\nOptions: {options}\nAnswer:"


def answer_text(item: MCItem, *, restate: bool = False) -> str:
    """The target answer sentence, ``"The answer is X."``.

    With ``restate`` the response first restates the chosen option, ``"red. The answer is B."``
    (LLaVA's ScienceQA formats with an explanation before the answer, in one word): the letter
    is then read off the options next to a word the model has just written.

    >>> answer_text(MCItem("what color is it?", "", ("blue", "red"), 1, "color"), restate=True)
    'red. The answer is B.'
    """
    letter = OPTION_LETTERS[item.answer_index]
    if restate:
        return f"{item.options[item.answer_index]}. The answer is {letter}."
    return f"The answer is {letter}."


def drill_text(item: MCItem, order: tuple[int, ...] | list[int]) -> str:
    """A text-only pointing drill: every option restated and pointed at, in ``order``.

    The letter of an option is a lookup in the prompt (the option's word is two tokens after
    its letter); one restated answer per item is a weak signal for learning that lookup, a drill
    over all options gives one per option (``train.lm_mc_drill``, LM pretraining only: without
    the image nothing tells which option is right, so every option is a valid response).

    >>> drill_text(MCItem("what color is it?", "", ("blue", "red"), 1, "color"), [1, 0])
    'red. The answer is B. blue. The answer is A.'
    """
    if sorted(order) != list(range(len(item.options))):
        raise ValueError(f"order: must be a permutation of range({len(item.options)}), got {order}")
    return " ".join(
        answer_text(
            MCItem(item.question, item.context, item.options, i, item.category), restate=True
        )
        for i in order
    )


def parse_answer(text: str, *, n_options: int | None = None) -> int | None:
    """The option index stated by ``text``, or ``None`` when it states none.

    Accepts ``"The answer is B."`` (any case, optional parentheses, trailing punctuation or end of
    text) anywhere in ``text``, or a bare letter such as ``"B"`` / ``"(b)"``. With ``n_options``,
    a letter past the last option counts as unparsable.
    """
    match = _ANSWER_PATTERN.search(text) or _BARE_PATTERN.match(text.strip())
    if match is None:
        return None
    index = "abcd".index(match.group(1).lower())
    if n_options is not None and index >= n_options:
        return None
    return index


def answer_domain(answer: str, *, max_objects: int = 4) -> tuple[str, ...]:
    """The options an answer competes with: the words of the same kind.

    Number words are limited to ``zero`` .. ``NUMBER_WORDS[max_objects]``.
    """
    for domain in (
        COLORS,
        SHAPES,
        ("small", "large"),
        ("left", "right"),
        ("top", "bottom"),
        ("yes", "no"),
        NUMBER_WORDS[: max_objects + 1],
    ):
        if answer in domain:
            return domain
    raise ValueError(f"answer: {answer!r} belongs to no answer domain")


def mc_for(
    scene: Scene,
    rng: np.random.Generator,
    *,
    max_per_scene: int,
    max_objects: int = 4,
    balance: AnswerBalance | None = None,
) -> list[MCItem]:
    """Up to ``max_per_scene`` multiple-choice items about ``scene``, of different categories.

    With ``balance`` (shared across a dataset, updated in place; its ``types`` count categories)
    the scene gets the categories used least so far and each the answer used least so far.
    """
    if max_per_scene < 0:
        raise ValueError(f"max_per_scene: must be >= 0, got {max_per_scene}")
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"max_objects: must be in [1, {MAX_OBJECTS}], got {max_objects}")

    def pool(category: str) -> Pool:
        """The questions of one question type of ``category``, drawn among those it supports."""
        qtypes = [t for t in CATEGORY_TYPES[category] if candidate_pool(scene, t)]
        if not qtypes:
            return {}
        return candidate_pool(scene, qtypes[rng.integers(len(qtypes))])

    drawn = draw_balanced(list(MC_CATEGORIES), pool, rng, n=max_per_scene, balance=balance)
    return [_make_item(scene, rng, q, a, cat, max_objects) for cat, a, q in drawn]


def _make_item(
    scene: Scene,
    rng: np.random.Generator,
    question: str,
    answer: str,
    category: str,
    max_objects: int,
) -> MCItem:
    domain = answer_domain(answer, max_objects=max_objects)
    n_options = int(rng.integers(2, min(4, len(domain)) + 1))
    others = [d for d in domain if d != answer]
    distractors = [others[i] for i in rng.choice(len(others), n_options - 1, replace=False)]
    answer_index = int(rng.integers(n_options))
    options = (*distractors[:answer_index], answer, *distractors[answer_index:])
    context = caption(scene, CONTEXT_LEVEL[category]) if rng.random() < 0.5 else ""
    return MCItem(question, context, options, answer_index, category)
