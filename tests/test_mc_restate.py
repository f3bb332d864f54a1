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


def _lm_mc_texts(drill: bool, seed: int = 0) -> tuple[list[str], list]:
    import dataclasses

    from hyperet.config import preset
    from hyperet.train.data import build_training_data

    config = preset("nano")
    config = dataclasses.replace(
        config, seed=seed, train=dataclasses.replace(config.train, lm_mc_drill=drill)
    )
    tok = Tokenizer.build()
    data = build_training_data(config, tok)
    mc = data.lm_texts[-len(data.split.mc) :]
    return [tok.decode(e.ids) for e in mc], data.split.mc


def test_the_lm_pointing_drill_points_every_option_at_its_own_letter_once() -> None:
    texts, items = _lm_mc_texts(drill=True)
    for text, (_, item) in zip(texts, items, strict=True):
        response = text.split("<sep>")[1].replace("<eos>", "").strip()
        pointed = [s.strip() for s in response.split("the answer is")]
        # "w0 . | l0 . w1 . | l1 . w2 ." : the word before each letter, and each letter
        words = [pointed[0].rstrip(" .")] + [p.split(".")[1].strip() for p in pointed[1:-1]]
        letters = [p.split(".")[0].strip() for p in pointed[1:]]
        assert sorted(letters) == sorted("abcd"[: len(item.options)])  # every option, once
        for word, letter in zip(words, letters, strict=True):
            assert item.options["abcd".index(letter)] == word
    # the orders vary between items (not always the options' own order)
    assert any(
        not t.split("<sep>")[1].strip().startswith(i.options[0])
        for t, (_, i) in zip(texts, items, strict=True)
    )


def test_the_lm_drill_replaces_only_the_multiple_choice_texts_and_is_seeded() -> None:
    drilled, _ = _lm_mc_texts(drill=True)
    plain, _ = _lm_mc_texts(drill=False)
    assert drilled == _lm_mc_texts(drill=True)[0]  # deterministic in the seed
    assert drilled != _lm_mc_texts(drill=True, seed=1)[0]
    for d, p in zip(drilled, plain, strict=True):
        assert d.split("<sep>")[0] == p.split("<sep>")[0]  # same prompt
