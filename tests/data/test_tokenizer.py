"""Tokenizer: closed over the generator, exact round trips, clear errors, JSON persistence."""

from __future__ import annotations

import json

import pytest

from hyperet.data.captions import LEVELS
from hyperet.data.dataset import build_split
from hyperet.data.multiple_choice import answer_text, format_prompt
from hyperet.data.tokenizer import SPECIALS, Tokenizer


def _texts(split) -> list[str]:
    texts = [t for level in LEVELS for t in split.captions[level]]
    texts += [t for _, qa in split.qa for t in (qa.question, qa.answer)]
    texts += [t for _, item in split.mc for t in (format_prompt(item), answer_text(item))]
    return texts


def test_every_generated_text_encodes_and_decodes_back(split, crowded_split) -> None:
    tok = Tokenizer.build()
    used: set[int] = set()
    for s in (split, crowded_split):
        for text in _texts(s):
            ids = tok.encode(text)
            used.update(ids)
            assert tok.decode(ids) == text.lower(), text
    unused = {tok.tokens[i] for i in range(tok.vocab_size) if i not in used} - set(SPECIALS)
    assert not unused, f"vocabulary words the generator never emitted: {sorted(unused)}"


def test_vocabulary_does_not_depend_on_data() -> None:
    before = Tokenizer.build()
    build_split("train", n_scenes=50, seed=1)
    assert Tokenizer.build() == before


def test_specials_come_first() -> None:
    tok = Tokenizer.build()
    assert tok.tokens[: len(SPECIALS)] == ["<pad>", "<bos>", "<eos>", "<image>", "<sep>"]
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.image_id, tok.sep_id) == (0, 1, 2, 3, 4)
    ids = tok.encode("<image> a red circle. <sep> two objects.", bos=True, eos=True)
    assert ids[:2] == [tok.bos_id, tok.image_id] and ids[-1] == tok.eos_id
    assert tok.sep_id in ids
    assert tok.decode(ids) == "<bos> <image> a red circle. <sep> two objects. <eos>"
    assert tok.decode([0, *ids, 0, 0], skip_special=True) == "a red circle. two objects."


def test_option_letters_and_punctuation_are_tokens() -> None:
    tok = Tokenizer.build()
    for token in ("a", "b", "c", "d", "(", ")", ".", ",", "?", ":", "\n", "n/a"):
        assert token in tok.ids
    assert tok.split("Options: (A) red (B) blue") == [
        "options", ":", "(", "a", ")", "red", "(", "b", ")", "blue",
    ]  # fmt: skip


@pytest.mark.parametrize("text", ["a mauve circle", "what colour is it?", "two objects!", "4"])
def test_out_of_vocabulary_raises_naming_the_word(text: str) -> None:
    tok = Tokenizer.build()
    with pytest.raises(ValueError, match=r"^text: out-of-vocabulary word '(mauve|colour|!|4)'"):
        tok.encode(text)


def test_json_round_trip() -> None:
    tok = Tokenizer.build()
    again = Tokenizer.from_json(tok.to_json())
    assert again == tok and again.tokens == tok.tokens
    assert json.loads(tok.to_json())["tokens"] == tok.tokens


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"format": "other", "tokens": []}),
        json.dumps({"format": "hyperet-word-tokenizer/1", "tokens": ["a", "b"]}),
        json.dumps({"format": "hyperet-word-tokenizer/1", "tokens": [*SPECIALS, "a", "a"]}),
        json.dumps({"format": "hyperet-word-tokenizer/1", "tokens": [*SPECIALS, 3]}),
    ],
)
def test_from_json_rejects_bad_documents(text: str) -> None:
    with pytest.raises(ValueError, match=r"^(text|tokens)"):
        Tokenizer.from_json(text)


def test_decode_rejects_ids_out_of_range() -> None:
    tok = Tokenizer.build()
    with pytest.raises(ValueError, match=r"^ids"):
        tok.decode([tok.vocab_size])
