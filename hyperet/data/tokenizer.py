"""A word-level tokenizer closed over everything the data generator can emit.

The vocabulary is built from the generator's constants (colours, shapes, sizes, number words and
each module's ``WORDS``), never by scanning a dataset, so any text the generator produces encodes.
Text is lower-cased and split into words, ``n/a``, newlines and single punctuation characters;
special tokens are written ``<name>``. The option letters ``a`` to ``d`` are ordinary words (the
letter ``a`` shares its token with the article, as it does in lower-cased text).

>>> tok = Tokenizer.build()
>>> ids = tok.encode("The answer is B.", bos=True, eos=True)
>>> ids[0] == tok.bos_id, ids[-1] == tok.eos_id
(True, True)
>>> tok.decode(ids, skip_special=True)
'the answer is b.'
>>> tok.encode("a mauve circle")
Traceback (most recent call last):
...
ValueError: text: out-of-vocabulary word 'mauve'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from . import captions, multiple_choice, questions
from .scenes import COLORS, SHAPES, SIZES

SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<image>", "<sep>")
"""Special tokens; ``<pad>`` has id 0 and the others follow in this order."""

NEWLINE = "\n"
_TOKEN_PATTERN = re.compile(r"<[a-z]+>|n/a|[a-z]+|\n|\S")
_NO_SPACE_BEFORE = frozenset({".", ",", "?", ":", ")", NEWLINE})
_NO_SPACE_AFTER = frozenset({"(", NEWLINE})


def generator_words() -> list[str]:
    """Every word and punctuation token the generator can emit, sorted, without specials."""
    words = {
        *COLORS, *SHAPES, *SIZES, *captions.WORDS, *questions.WORDS, *multiple_choice.WORDS,
        NEWLINE,
    }  # fmt: skip
    return sorted(words)


class Tokenizer:
    """Word-level tokenizer over a fixed token list (``tokens[i]`` has id ``i``).

    Parameters
    ----------
    tokens : sequence of str
        Must start with ``SPECIALS`` in order and hold no duplicates.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"tokens: must start with {SPECIALS}, got {tokens[: len(SPECIALS)]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("tokens: duplicate tokens")
        self.tokens: list[str] = tokens
        self.ids: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.image_id, self.sep_id = range(len(SPECIALS))

    @classmethod
    def build(cls) -> Tokenizer:
        """The tokenizer over ``SPECIALS`` followed by ``generator_words()``."""
        return cls([*SPECIALS, *generator_words()])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def split(self, text: str) -> list[str]:
        """The tokens of ``text`` (lower-cased), without checking the vocabulary."""
        return _TOKEN_PATTERN.findall(text.lower())

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of ``text``; an out-of-vocabulary word raises ``ValueError`` naming it."""
        ids = [self.bos_id] if bos else []
        for word in self.split(text):
            token_id = self.ids.get(word)
            if token_id is None:
                raise ValueError(f"text: out-of-vocabulary word {word!r}")
            ids.append(token_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        """The text of ``ids``: words joined by spaces, none before ``. , ? : )`` or after ``(``.

        ``<pad>`` is always dropped; the other specials are dropped when ``skip_special``.
        """
        out: list[str] = []
        previous = NEWLINE
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"ids: id {i} outside [0, {len(self.tokens)})")
            token = self.tokens[i]
            if i == self.pad_id or (skip_special and token in SPECIALS):
                continue
            if token not in _NO_SPACE_BEFORE and previous not in _NO_SPACE_AFTER:
                out.append(" ")
            out.append(token)
            previous = token
        return "".join(out)

    def to_json(self) -> str:
        """A JSON document ``{"format": "hyperet-word-tokenizer/1", "tokens": [...]}``."""
        return json.dumps({"format": "hyperet-word-tokenizer/1", "tokens": self.tokens})

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        """The tokenizer saved by ``to_json``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"text: not JSON ({error})") from error
        if not isinstance(data, dict) or data.get("format") != "hyperet-word-tokenizer/1":
            raise ValueError("text: not a hyperet word tokenizer document")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError("text: 'tokens' must be a list of strings")
        return cls(tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(tuple(self.tokens))

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"
