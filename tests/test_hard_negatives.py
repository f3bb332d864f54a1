"""Hard-negative captions (NegCLIP) for vision pretraining: the captions, the loss, the stage."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from hyperet.config import preset, with_overrides
from hyperet.data import Tokenizer, build_split
from hyperet.data.captions import LEVELS, NUMBER_WORDS, caption
from hyperet.data.hard_negatives import EDITS, hard_negative
from hyperet.data.scenes import COLORS, SHAPES, SIZES, Scene
from hyperet.model.clip import ContrastiveHead, hard_negative_infonce, multi_positive_infonce
from hyperet.train import Context, build_model, build_training_data, vision_stage

SCENES = build_split("val", n_scenes=120, seed=3).scenes


def _single_edits(scene: Scene, level: str) -> dict[str, set[str]]:
    """Brute force: the caption of every scene one allowed edit away, by edit kind."""
    out: dict[str, set[str]] = {edit: set() for edit in EDITS[level]}
    objs = scene.objects
    for edit in EDITS[level]:
        if edit == "count":
            for m in (len(objs) - 1, len(objs) + 1):
                if 1 <= m <= 6:
                    out[edit].add(f"{NUMBER_WORDS[m]} {'object' if m == 1 else 'objects'}.")
            continue
        if edit == "swap":
            for i, j in itertools.combinations(range(len(objs)), 2):
                if objs[i].color != objs[j].color and objs[i].shape != objs[j].shape:
                    new = list(objs)
                    new[i] = dataclasses.replace(objs[i], color=objs[j].color)
                    new[j] = dataclasses.replace(objs[j], color=objs[i].color)
                    out[edit].add(caption(Scene(tuple(new), scene.image_size), level))
            continue
        values = {"shape": SHAPES, "color": COLORS, "size": SIZES}[edit]
        for k, obj in enumerate(objs):
            for v in values:
                if v != getattr(obj, edit):
                    new = list(objs)
                    new[k] = dataclasses.replace(obj, **{edit: v})
                    out[edit].add(caption(Scene(tuple(new), scene.image_size), level))
    return out


@pytest.mark.parametrize("level", LEVELS)
def test_a_hard_negative_is_one_allowed_edit_away_and_false(level: str) -> None:
    rng = np.random.default_rng(0)
    kinds: Counter[str] = Counter()
    for scene in SCENES:
        text = hard_negative(scene, level, rng)
        assert text != caption(scene, level)
        edits = _single_edits(scene, level)
        matched = [edit for edit, texts in edits.items() if text in texts]
        assert matched, f"{text!r} is not one edit from {caption(scene, level)!r}"
        kinds[matched[0]] += 1
    # every allowed edit kind occurs (the draw is uniform among those available)
    assert set(kinds) == set(EDITS[level])


def test_edit_kinds_are_drawn_uniformly() -> None:
    """Scenes where every edit is available and distinguishable: kinds within binomial 4 sigma."""
    scene = next(
        s
        for s in SCENES
        if len({o.shape for o in s.objects}) == len(s.objects) == len({o.color for o in s.objects})
        and len(s.objects) >= 2
    )
    edits = _single_edits(scene, "detailed")
    assert not any(edits[a] & edits[b] for a, b in itertools.combinations(edits, 2))
    rng = np.random.default_rng(1)
    n = 4000
    drawn = [hard_negative(scene, "detailed", rng) for _ in range(n)]
    counts = Counter(next(e for e, texts in edits.items() if text in texts) for text in drawn)
    p = 1 / len(EDITS["detailed"])
    for edit in EDITS["detailed"]:
        assert abs(counts[edit] - n * p) < 4 * math.sqrt(n * p * (1 - p)), counts


def test_hard_negative_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^level"):
        hard_negative(SCENES[0], "words", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^scene"):
        hard_negative(Scene(()), "count", np.random.default_rng(0))


def test_hard_negative_infonce_matches_a_loop() -> None:
    torch.manual_seed(0)
    b, extra = 5, 4
    logits = torch.randn(b, b, dtype=torch.float64)
    negative = torch.randn(b, extra, dtype=torch.float64)
    ids = [3, 1, 3, 2, 7]
    negative_ids = [9, 1, 8, 10]  # the second equals pair 1's caption: a positive of row 1
    total = 0.0
    for i in range(b):
        row = [math.exp(v) for v in [*logits[i].tolist(), *negative[i].tolist()]]
        pos = [j for j, key in enumerate([*ids, *negative_ids]) if key == ids[i]]
        total -= sum(math.log(row[j] / sum(row)) for j in pos) / len(pos)
        col = [math.exp(v) for v in logits[:, i].tolist()]
        pos = [j for j in range(b) if ids[j] == ids[i]]
        total -= sum(math.log(col[j] / sum(col)) for j in pos) / len(pos)
    got = hard_negative_infonce(logits, negative, torch.tensor(ids), torch.tensor(negative_ids))
    assert got.item() == pytest.approx(total / (2 * b), rel=1e-12)


def test_no_negatives_is_the_plain_loss() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 4, dtype=torch.float64)
    ids = torch.tensor([0, 1, 0, 2])
    empty = torch.zeros(4, 0, dtype=torch.float64)
    got = hard_negative_infonce(logits, empty, ids, torch.zeros(0, dtype=torch.int64))
    torch.testing.assert_close(got, multi_positive_infonce(logits, ids))


def test_hard_negative_infonce_rejects_bad_shapes() -> None:
    z = torch.zeros(3, 3)
    ids = torch.arange(3)
    with pytest.raises(ValueError, match=r"^logits"):
        hard_negative_infonce(torch.zeros(3, 2), z, ids, ids)
    with pytest.raises(ValueError, match=r"^negative_logits"):
        hard_negative_infonce(z, torch.zeros(2, 3), ids, ids)
    with pytest.raises(ValueError, match=r"^caption_ids"):
        hard_negative_infonce(z, z, torch.arange(2), ids)
    with pytest.raises(ValueError, match=r"^negative_ids"):
        hard_negative_infonce(z, z, ids, torch.arange(2))
    with pytest.raises(ValueError, match=r"^negative_ids"):
        ContrastiveHead()(z, z, ids, negative_emb=z)


def _config(on: bool):
    base = with_overrides(preset("nano"), vision_level="mixture")
    return dataclasses.replace(
        base, train=dataclasses.replace(base.train, vision_hard_negatives=on)
    )


def test_the_pool_holds_a_negative_per_caption_with_shared_ids() -> None:
    tok = Tokenizer.build()
    data = build_training_data(_config(True), tok)
    assert data.vision_negatives is not None and data.vision_negative_ids is not None
    n = len(data.images)
    levels = data.vision_mixture.levels
    assert len(data.vision_negatives) == len(data.vision_negative_ids) == len(levels) * n
    texts = [c for level in levels for c in data.split.captions[level]]
    negatives = [tok.decode(e.ids.tolist(), skip_special=True) for e in data.vision_negatives]
    rng = np.random.default_rng(0)
    for row in rng.choice(len(texts), 60, replace=False):
        scene = data.split.scenes[row % n]
        level = levels[row // n]
        assert data.vision_negatives[row].ids.tolist() != data.vision_captions[row].ids.tolist()
        assert negatives[row] in set().union(*_single_edits(scene, level).values())
        # a negative shares the id of an equal true caption, and only of an equal one
        for other in rng.choice(len(texts), 20, replace=False):
            same = data.vision_negative_ids[row] == data.vision_caption_ids[other]
            assert same == (negatives[row] == texts[other])
    off = build_training_data(_config(False), tok)
    assert off.vision_negatives is None and off.vision_negative_ids is None
    assert [e.ids.tolist() for e in off.vision_captions] == [
        e.ids.tolist() for e in data.vision_captions
    ]


def test_a_vision_step_ranks_the_negatives_of_its_pairs() -> None:
    """The stage's loss equals the head's loss on the rows it drew, negatives included."""
    tok = Tokenizer.build()
    config = _config(True)
    data = build_training_data(config, tok)
    model = build_model(config, tok)
    task = vision_stage(Context(config=config, data=data, model=model))
    seen: list[list[int]] = []
    real = model.clip_head.forward

    def spy(image_emb, text_emb, caption_ids, negative_emb=None, negative_ids=None):
        assert negative_emb is not None and negative_ids is not None
        seen.append(negative_ids.tolist())
        return real(image_emb, text_emb, caption_ids, negative_emb, negative_ids)

    model.clip_head.forward = spy  # type: ignore[method-assign]
    loss = task.loss(0, 8)
    assert torch.isfinite(loss) and len(seen) == 1 and len(seen[0]) == 8
    assert set(seen[0]) <= set(data.vision_negative_ids.tolist())
