"""Vision pretraining on the caption mixture: the pool and the captions a step really uses."""

from __future__ import annotations

from collections import Counter

import numpy as np

from hyperet.batching import collate
from hyperet.config import preset, with_overrides
from hyperet.data import Tokenizer
from hyperet.data.mixture import CAPTION_MIXTURE, CaptionMixture
from hyperet.train import Context, build_model, build_training_data, vision_stage

CONFIG = with_overrides(preset("nano"), vision_level="mixture")


def test_mixture_pool_holds_every_level_and_shares_ids_of_equal_text() -> None:
    tok = Tokenizer.build()
    data = build_training_data(CONFIG, tok)
    n = len(data.images)
    levels = data.vision_mixture.levels
    assert len(data.vision_captions) == len(data.vision_caption_ids) == len(levels) * n
    texts = [c for level in levels for c in data.split.captions[level]]
    for row in range(0, len(texts), 37):
        assert tok.encode(texts[row], bos=True, eos=True) == data.vision_captions[row].ids.tolist()
    ids = data.vision_caption_ids
    for a in range(0, len(texts), 11):
        for b in range(0, len(texts), 13):
            assert (ids[a] == ids[b]) == (texts[a] == texts[b])


def test_a_vision_step_uses_the_drawn_levels(monkeypatch) -> None:
    tok = Tokenizer.build()
    data = build_training_data(CONFIG, tok)
    model = build_model(CONFIG, tok)
    task = vision_stage(Context(config=CONFIG, data=data, model=model))
    seen: list[np.ndarray] = []
    real = CaptionMixture.draw

    def spy(self: CaptionMixture, seed: list[int], step: int, n: int) -> np.ndarray:
        seen.append(real(self, seed, step, n))
        return seen[-1]

    monkeypatch.setattr(CaptionMixture, "draw", spy)
    captured = []
    import hyperet.train.stages as train_module

    def collate_spy(examples):
        captured.append([e.ids.tolist() for e in examples])
        return collate(examples)

    monkeypatch.setattr(train_module, "collate", collate_spy)
    counts: Counter[int] = Counter()
    for step in range(40):
        task.loss(step, 16)
        levels = seen[-1]
        counts.update(levels.tolist())
        rows = captured[-1]
        # each row is the caption of some image at the drawn level
        level_texts = [
            {tuple(tok.encode(c, bos=True, eos=True)) for c in data.split.captions[lv]}
            for lv in data.vision_mixture.levels
        ]
        assert all(tuple(r) in level_texts[k] for r, k in zip(rows, levels, strict=True))
    assert set(counts) == set(range(len(CAPTION_MIXTURE)))  # 640 draws reach every level
