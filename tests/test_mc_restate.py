"""``train.mc_restate``: the supervised tokens of a restated multiple-choice response, and the
generation budget of the evaluation covering the longest one."""

from __future__ import annotations

from hyperet.batching import encode_mc, mc_answer
from hyperet.data import Tokenizer, build_split
from hyperet.evaluate import mc_answer_budget
from hyperet.model import IGNORE


def test_restated_responses_supervise_option_then_plain_answer() -> None:
    tok = Tokenizer.build()
    split = build_split("val", n_scenes=40, seed=3)
    for _, item in split.mc:
        plain = encode_mc(tok, item)
        restated = encode_mc(tok, item, restate=True)
        prompt = len(plain.ids) - len(mc_answer(tok, item))
        # same prompt, unsupervised
        assert list(restated.ids[:prompt]) == list(plain.ids[:prompt])
        assert set(restated.labels[:prompt].tolist()) == {IGNORE}
        # the answer: the option's word and "." before the plain answer sentence
        option = tok.encode(item.options[item.answer_index])
        want = [*option, *tok.encode("."), *plain.ids[prompt:].tolist()]
        assert restated.ids[prompt:].tolist() == want
        assert restated.labels[prompt:].tolist() == want


def test_the_generation_budget_covers_the_longest_answer() -> None:
    tok = Tokenizer.build()
    split = build_split("val", n_scenes=200, seed=4)
    for restate in (False, True):
        longest = max(len(mc_answer(tok, item, restate=restate)) for _, item in split.mc)
        assert longest <= mc_answer_budget(restate)  # answer tokens + <eos>
