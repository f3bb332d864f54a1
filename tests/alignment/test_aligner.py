"""Connector, text encoder, ball projection and the composed aligner."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hyperet.alignment.aligner import AlignerConfig, ImageTextAligner
from hyperet.alignment.connector import (
    BallProjection,
    BoundedLogScalar,
    QueryConnector,
    TextEncoder,
)
from hyperet.alignment.losses import duplicate_positives
from hyperet.alignment.metrics import retrieval_recall
from hyperet.config import ITC_OBJECTIVES as OBJECTIVES

F64 = torch.float64


def test_bounded_log_scalar_clamps_in_forward_and_in_place() -> None:
    s = BoundedLogScalar(2.0, low=0.5, high=4.0, learnable=True)
    assert s.forward().item() == pytest.approx(2.0)
    assert [n for n, _ in s.named_parameters()] == ["log_value"]
    with torch.no_grad():
        s.log_value.fill_(math.log(10.0))
    assert s.forward().item() == pytest.approx(4.0, rel=1e-6)
    assert s.clamp_() == 1 and s.clamp_() == 0
    fixed = BoundedLogScalar(1.0, low=0.1, high=10.0, learnable=False)
    assert list(fixed.parameters()) == [] and "log_value" in fixed.state_dict()
    with pytest.raises(ValueError, match=r"^value:"):
        BoundedLogScalar(20.0, low=0.1, high=10.0, learnable=True)
    with pytest.raises(ValueError, match=r"^low, high:"):
        BoundedLogScalar(1.0, low=0.0, high=10.0, learnable=True)


def test_gradient_of_a_clamped_scalar_vanishes_outside_its_range() -> None:
    s = BoundedLogScalar(1.0, low=0.5, high=2.0, learnable=True)
    s.forward().backward()
    assert s.log_value.grad is not None and s.log_value.grad.item() == pytest.approx(1.0)
    with torch.no_grad():
        s.log_value.fill_(5.0)
    s.log_value.grad = None
    s.forward().backward()
    assert s.log_value.grad is not None and s.log_value.grad.item() == 0.0


def test_query_connector_shape_and_key_permutation_invariance() -> None:
    torch.manual_seed(0)
    qc = QueryConnector(12, 16, num_queries=5, depth=2, heads=4).double().eval()
    tokens = torch.randn(3, 7, 12, dtype=F64)
    out = qc(tokens)
    assert out.shape == (3, 5, 16)
    # cross-attention reads the vision tokens as a set: their order does not matter
    torch.testing.assert_close(qc(tokens[:, torch.randperm(7)]), out, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    assert qc.queries.grad is not None and float(qc.queries.grad.abs().sum()) > 0


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_encoder_ignores_trailing_padding(pooling: str) -> None:
    torch.manual_seed(1)
    enc = TextEncoder(30, 16, max_len=12, depth=2, heads=2, pooling=pooling).double().eval()  # type: ignore[arg-type]
    ids = torch.tensor([[1, 7, 8, 9, 2], [1, 5, 2, 0, 0]])
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    out = enc(ids)
    assert out.shape == (2, 16)
    torch.testing.assert_close(enc(padded), out, rtol=1e-12, atol=1e-12)
    # the second caption equals itself without its padding
    torch.testing.assert_close(enc(ids[1:, :3]), out[1:], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"^ids:"):
        enc(torch.ones(1, 13, dtype=torch.long))


def test_ball_projection_is_expmap0_of_the_scaled_linear_map() -> None:
    torch.manual_seed(2)
    proj = BallProjection(6, 4, scale=0.7).double()
    alpha = proj.scale().item()  # 0.7 up to the float32 rounding of log(0.7)
    h = torch.randn(5, 6, dtype=F64) * 3
    c = 2.5
    x = proj(h, c=torch.tensor(c, dtype=F64))
    w = proj.linear.weight.detach()
    for row, point in zip(h.tolist(), x.detach().tolist(), strict=True):
        u = [alpha * sum(w[i, j].item() * row[j] for j in range(6)) for i in range(4)]
        s = math.sqrt(c) * math.sqrt(sum(t * t for t in u))
        want = [math.tanh(s) / s * t for t in u]
        assert point == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert bool((math.sqrt(c) * x.norm(dim=-1) < 1).all())
    flat = BallProjection(6, 4, scale=0.7, to_ball=False).double()
    flat.linear.weight.data.copy_(w)
    torch.testing.assert_close(flat(h, c=torch.tensor(c)), alpha * h @ w.T)


def _config(objective: str, **kw: object) -> AlignerConfig:
    base: dict[str, object] = dict(
        vision_dim=8,
        vocab_size=40,
        width=32,
        embed_dim=16,
        num_queries=4,
        depth=1,
        heads=2,
        max_text_len=8,
        special_ids=(1, 2),
    )
    base.update(kw)
    return AlignerConfig.for_objective(objective, **base)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_aligner_forward_backward_and_scalar_bookkeeping(objective: str) -> None:
    torch.manual_seed(3)
    model = ImageTextAligner(_config(objective, learn_curvature=True))
    tokens = torch.randn(6, 5, 8)
    ids = torch.randint(3, 40, (6, 6))
    ids[:, 0], ids[:, -1] = 1, 2
    # the coarse/fine caption pairs of hyperbolic-entail's caption-caption cones
    hierarchy = (ids, ids.flip(0)) if model.config.caption_entailment else None
    out = model(tokens, ids, generator=torch.Generator().manual_seed(0), hierarchy=hierarchy)
    assert (
        out.logits.shape == (6, 6) and out.image.shape == (6, 4, 16) and out.text.shape == (6, 16)
    )
    assert torch.isfinite(out.loss)
    if model.uses_ball:
        assert bool((out.c.sqrt() * out.image.norm(dim=-1) < 1).all())
    out.loss.backward()
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {
        "curvature.log_value",
        "image_proj.scale.log_value",
        "text_proj.scale.log_value",
        "loss.logit_scale.log_value",
    }
    assert model.no_weight_decay() <= set(names)
    for name in (
        "connector.queries",
        "text_encoder.transformer.token_embedding.weight",
        "image_proj.linear.weight",
    ):
        grad = names[name].grad
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    with torch.no_grad():
        model.image_proj.scale.log_value.fill_(3.0)  # scale e^3 > 1: out of range
    assert model.clamp_scalars_() == 1
    assert model.scalars()["image_scale"] == pytest.approx(1.0)


def test_fixed_curvature_is_not_a_parameter() -> None:
    model = ImageTextAligner(_config("hyperbolic-itc"))
    assert "curvature.log_value" not in dict(model.named_parameters())
    assert "curvature.log_value" not in model.no_weight_decay()
    assert model.c().item() == pytest.approx(1.0)


def test_config_round_trips_through_json() -> None:
    cfg = _config("poincare-itc", rqs_per="batch", text_prune_rate=0.3)
    again = AlignerConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match=r"^objective:"):
        AlignerConfig.for_objective("lm", vision_dim=8, vocab_size=40)
    with pytest.raises(ValueError, match=r"^rqs_queries:"):
        ImageTextAligner(_config("hyperbolic-itc", rqs_queries=5))  # K = 4


def test_randomness_only_in_training_and_reproducible_with_a_generator() -> None:
    torch.manual_seed(4)
    model = ImageTextAligner(_config("hyperbolic-itc", text_prune_rate=0.5))
    tokens, ids = torch.randn(6, 5, 8), torch.randint(3, 40, (6, 7))
    losses = [
        model(tokens, ids, generator=torch.Generator().manual_seed(s)).loss.item()
        for s in (0, 0, 1)
    ]
    assert losses[0] == losses[1] != losses[2]
    model.eval()
    a = model(tokens, ids, generator=torch.Generator().manual_seed(0)).loss.item()
    b = model(tokens, ids, generator=torch.Generator().manual_seed(1)).loss.item()
    assert a == b


def _toy_batch(
    classes: int, n: int, gen: torch.Generator, protos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` noisy vision-token sets of random classes (every class present when n >= 2 classes)
    and their captions ``<bos> word(class) word(class % 4) <eos>``."""
    label = torch.cat(
        [torch.arange(classes), torch.randint(0, classes, (n - classes,), generator=gen)]
    )
    tokens = protos[label] + 0.3 * torch.randn(n, 4, 8, generator=gen)  # (n, T=4, Dv=8)
    ones = torch.ones_like(label)
    ids = torch.stack([ones, 3 + label, 3 + classes + label % 4, 2 * ones], 1)  # (n, 4)
    return tokens, ids, label


def _train(objective: str, steps: int, classes: int = 16) -> tuple[ImageTextAligner, torch.Tensor]:
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(5)
    protos = torch.randn(classes, 4, 8, generator=gen)
    model = ImageTextAligner(_config(objective, text_prune_rate=0.2))
    decay = model.no_weight_decay()
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [p for n, p in params.items() if n not in decay], "weight_decay": 0.01},
            {"params": [params[n] for n in sorted(decay)], "weight_decay": 0.0},
        ],
        lr=3e-3,
    )
    for _ in range(steps):
        tokens, ids, label = _toy_batch(classes, 32, gen, protos)
        out = model(tokens, ids, positives=duplicate_positives(label), generator=gen)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.clamp_scalars_()
    return model.eval(), protos


def test_toy_alignment_learns_retrieval_well_above_chance() -> None:
    """16 classes of noisy vision tokens with a 2-word caption each: after 60 steps the
    Recall@1 on fresh samples is far above the 1/16 chance level, both ways."""
    classes = 16
    model, protos = _train("hyperbolic-itc", 60, classes)
    tokens, ids, label = _toy_batch(classes, 64, torch.Generator().manual_seed(99), protos)
    with torch.no_grad():
        sim = model.loss.scores(
            model.encode_image(tokens), model.encode_text(ids[:classes]), c=model.c()
        )
    relevant = (label.unsqueeze(1) == torch.arange(classes).unsqueeze(0)).numpy()
    recall = retrieval_recall(sim.numpy(), relevant)
    assert recall["image_to_text"]["R@1"] > 0.5 and recall["text_to_image"]["R@1"] > 0.5, recall


def test_cosine_in_the_ball_trains_exactly_like_the_euclidean_cosine() -> None:
    """The parity behind the stable recipe: from the same seed, hyperbolic-ITC (cosine of ball
    points) and Euclidean ITC see the same logits at every step, so they train the same
    directions; only the radius (free under this loss) tells them apart."""
    hyp, protos = _train("hyperbolic-itc", 8)
    euc, _ = _train("euclidean-itc", 8)
    tokens, ids, _ = _toy_batch(16, 32, torch.Generator().manual_seed(7), protos)
    with torch.no_grad():
        a = hyp.loss.scores(hyp.encode_image(tokens), hyp.encode_text(ids), c=hyp.c())
        b = euc.loss.scores(euc.encode_image(tokens), euc.encode_text(ids), c=euc.c())
        rad = hyp.radius(hyp.encode_image(tokens))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert bool((rad > 0).all())


def test_every_itc_objective_has_a_recipe_and_nothing_else_does() -> None:
    from hyperet.alignment.aligner import RECIPES

    assert set(RECIPES) == set(OBJECTIVES)
    with pytest.raises(ValueError, match=r"^objective:"):
        AlignerConfig.for_objective("lm", vision_dim=8, vocab_size=40)
