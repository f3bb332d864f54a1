"""Entailment objectives: MERU's Lorentz formulas equal the ball ops, the objectives train, the
hierarchy pairs and metrics match brute force, and both objectives run through the CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from hyperet.cli.main import main

from hyperet import ops
from hyperet.alignment import AlignerConfig, ImageTextAligner
from hyperet.alignment.entailment import (
    lorentz_expmap0,
    lorentz_time,
    lorentz_to_ball,
    pairwise_lorentz_dist,
)
from hyperet.alignment.metrics import entailment_accuracy, hierarchy_pairs

C = 0.7


def _space(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64) * 1.5


def test_meru_aperture_and_angle_are_the_ball_cones_through_the_isometry() -> None:
    """MERU (meru/lorentz.py) in Lorentz coordinates, written out here, vs our ball ops."""
    xs, ys = _space(16, 0), _space(16, 1)
    xt, yt = lorentz_time(xs, c=C).squeeze(-1), lorentz_time(ys, c=C).squeeze(-1)
    K = 0.1
    meru_aperture = torch.asin(2 * K / (math.sqrt(C) * xs.norm(dim=-1)))
    lin = C * ((xs * ys).sum(-1) - xt * yt)  # c <x, y>_L
    meru_angle = torch.acos((yt + lin * xt) / (xs.norm(dim=-1) * torch.sqrt(lin**2 - 1)))
    bx, by = lorentz_to_ball(xs, c=C), lorentz_to_ball(ys, c=C)
    torch.testing.assert_close(ops.entailment_aperture(bx, c=C, K=K), meru_aperture)
    torch.testing.assert_close(ops.entailment_angle(bx, by, c=C), meru_angle)


def test_lorentz_exp_map_is_the_ball_exp_map_of_half_the_vector() -> None:
    u = _space(8, 2) * 0.5
    torch.testing.assert_close(
        lorentz_to_ball(lorentz_expmap0(u, c=C), c=C), ops.expmap0(u / 2, c=C), rtol=1e-12, atol=0
    )
    assert torch.equal(lorentz_expmap0(torch.zeros(2, 5), c=C), torch.zeros(2, 5))


def test_pairwise_lorentz_distance_matches_the_op() -> None:
    a, b = _space(4, 3), _space(6, 4)
    got = pairwise_lorentz_dist(a, b, c=C)  # (4, 6)
    full = lambda s: torch.cat([lorentz_time(s, c=C), s], dim=-1)  # noqa: E731
    want = ops.lorentz_dist(full(a)[:, None], full(b)[None], c=C)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    same = pairwise_lorentz_dist(a, a, c=C).diagonal()
    assert torch.all(same.abs() < 1e-6)


def _aligner(objective: str) -> ImageTextAligner:
    config = AlignerConfig.for_objective(
        objective, vision_dim=12, vocab_size=30, width=16, embed_dim=8, num_queries=3, depth=1,
        heads=2, max_text_len=10, special_ids=(1, 2),
    )  # fmt: skip
    return ImageTextAligner(config)


@pytest.mark.parametrize("objective", ["hyperbolic-entail", "meru"])
def test_entailment_objectives_train_with_finite_gradients(objective: str) -> None:
    torch.manual_seed(0)
    aligner = _aligner(objective)
    assert aligner.config.entailment_weight == 0.2 and aligner.hyperbolic
    assert aligner.config.aperture_K == {"hyperbolic-entail": 0.05, "meru": 0.1}[objective]
    if objective == "meru":
        assert aligner.config.learn_curvature and aligner.config.curvature_bounds == (0.1, 10.0)
    vision = torch.randn(4, 7, 12)
    ids = torch.randint(3, 30, (4, 6))
    hierarchy = (torch.randint(3, 30, (4, 5)), torch.randint(3, 30, (4, 5)))
    out = aligner(vision, ids, hierarchy=hierarchy, generator=torch.Generator().manual_seed(1))
    assert out.entailment is not None and torch.isfinite(out.entailment)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in aligner.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    radius = aligner.radius(out.text.detach())
    ball = aligner.ball_points(out.text.detach())
    torch.testing.assert_close(radius, ops.dist0(ball, c=aligner.c()), rtol=1e-5, atol=1e-6)


def test_hyperbolic_entail_needs_the_caption_pairs() -> None:
    aligner = _aligner("hyperbolic-entail")
    with pytest.raises(ValueError, match=r"^hierarchy: "):
        aligner(torch.randn(2, 7, 12), torch.randint(3, 30, (2, 6)))


def test_hierarchy_pairs_match_brute_force() -> None:
    captions = [
        ["two", "two", "three", "two"],  # level 0: strings shared across scenes
        ["a b", "a c", "b c", "a b"],
        ["p", "q", "r", "s"],
    ]
    pairs = hierarchy_pairs(captions, seed=3)
    perm = np.random.default_rng(3).permutation(4)
    want = set()
    for a, b in itertools.combinations(range(3), 2):
        for i in range(4):
            want.add((a, i, b, i, True))
            j = int(perm[i])
            if captions[a][j] != captions[a][i] and captions[b][j] != captions[b][i]:
                want.add((a, i, b, j, False))
    columns = [p.tolist() for p in pairs]
    got = set(zip(*columns, strict=True))
    assert got == want
    assert pairs.label.sum() == 3 * 4


def test_entailment_accuracy_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal(50), rng.random(50) < 0.5
    scores[:3] = 0.0  # a zero score predicts entailment
    brute = sum((s >= 0) == y for s, y in zip(scores, labels, strict=True)) / 50
    assert entailment_accuracy(scores, labels) == brute


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("objective", ["hyperbolic-entail", "meru"])
def test_entailment_objectives_through_the_cli(objective: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _run("train", "--preset", "nano", "--objective", objective, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    alignment = metrics["stages"]["itc"]["alignment"]
    assert alignment["objective"] == objective
    assert alignment["aligner"]["entailment_weight"] == 0.2
    result = _run("eval", str(out), "--limit", "12", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)["alignment"]
    assert report["radius"]["kind"] == "hyperbolic"
    ent = report["entailment"]
    assert ent["true_pairs"] == 10 * 12 and 0 < ent["false_pairs"] <= ent["true_pairs"]
    assert 0.0 <= ent["auroc"] <= 1.0 and 0.0 <= ent["accuracy"] <= 1.0
    assert "hierarchy: entailment cones" in result.stderr


def _ball(shape: tuple[int, ...], seed: int, low: float = 0.3, high: float = 0.8) -> torch.Tensor:
    """Float64 ball points with norms in ``[low, high]`` (apexes outside the cone-free core)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    norm = low + (high - low) * torch.rand(*shape[:-1], 1, generator=g, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True) * norm


@pytest.mark.parametrize("image", [False, True])
def test_negative_entailment_is_the_mean_hinge_over_valid_pairs(image: bool) -> None:
    """Brute force over the pairs with the float64 reference energy."""
    from hyperet import reference
    from hyperet.alignment.entailment import negative_entailment

    B, K, m = 5, 0.1, 0.3
    apex = _ball((B, 4), 0)
    points = _ball((B, 3, 4) if image else (B, 4), 1, low=0.1, high=0.9)
    valid = torch.rand(B, B, generator=torch.Generator().manual_seed(2)) < 0.6
    got = negative_entailment(apex, points, valid.double(), c=C, K=K, margin=m)
    hinges = []
    for i, j in itertools.product(range(B), range(B)):
        if valid[i, j]:
            e = reference.entailment_energy(apex[i].numpy(), points[j].numpy(), c=C, K=K)
            hinges.append(np.mean(np.maximum(0.0, m - np.asarray(e))))
    assert got.item() == pytest.approx(np.mean(hinges), rel=1e-12)
    none = negative_entailment(apex, points, torch.zeros(B, B), c=C, K=K, margin=m)
    assert none.item() == 0.0


def test_masked_entailment_averages_the_masked_rows() -> None:
    from hyperet import reference
    from hyperet.alignment.entailment import masked_entailment

    apex, points = _ball((6, 4), 3), _ball((6, 4), 4, low=0.1, high=0.9)
    mask = torch.tensor([True, False, True, True, False, True])
    got = masked_entailment(apex, points, mask.double(), c=C, K=0.2)
    want = [
        float(reference.entailment_energy(apex[i].numpy(), points[i].numpy(), c=C, K=0.2))
        for i in range(6)
        if mask[i]
    ]
    assert got.item() == pytest.approx(np.mean(want), rel=1e-12)
    assert masked_entailment(apex, points, torch.zeros(6), c=C, K=0.2).item() == 0.0


def test_hierarchy_batch_negatives_and_parts_match_the_scenes() -> None:
    """The stage's negatives mask and object captions, checked against the caption strings."""
    from hyperet.batching import encode_text
    from hyperet.data import LEVELS, Tokenizer, build_split
    from hyperet.train.stages import _Captions, _hierarchy, _Parts

    tok = Tokenizer.build()
    split = build_split("train", n_scenes=30, seed=0)
    captions, parts = _Captions(split.captions, tok), _Parts(split.scenes, tok)
    config = AlignerConfig.for_objective(
        "hyperbolic-entail", vision_dim=8, vocab_size=tok.vocab_size, width=16, embed_dim=8,
        negative_weight=1.0, part_entailment=True,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    idx = rng.permutation(30)[:12]
    level = rng.integers(0, len(LEVELS), size=12)
    h = _hierarchy(ImageTextAligner(config), captions, parts, idx, level, rng)
    assert h.negatives is not None and h.parts is not None and h.part_in_fine is not None
    decode = lambda ids: tok.decode(ids.tolist(), skip_special=True)  # noqa: E731
    for i in range(12):
        coarse, fine = decode(h.coarse[i]), decode(h.fine[i])
        a = next(k for k, name in enumerate(LEVELS) if split.captions[name][idx[i]] == coarse)
        b = max(k for k, name in enumerate(LEVELS) if split.captions[name][idx[i]] == fine)
        assert a < b and {a, b} & {int(level[i])}
        for j in range(12):
            other = split.captions[LEVELS[a]][idx[j]]
            assert bool(h.negatives[i, j]) == (other != coarse)
        scene = split.scenes[idx[i]]
        names = [encode_text(tok, f"a {o.color} {o.shape}.").ids for o in scene.objects]
        part = h.parts[i][: len(names[0])].numpy()
        assert any(np.array_equal(part, n) for n in names)
        assert bool(h.part_in_fine[i]) == (b >= LEVELS.index("objects"))


def test_an_empty_negatives_mask_leaves_the_loss_unchanged() -> None:
    """negative_weight only acts through valid pairs: an all-false mask gives the plain loss."""
    vision, ids = torch.randn(4, 7, 12), torch.randint(3, 30, (4, 6))
    pairs = (torch.randint(3, 30, (4, 5)), torch.randint(3, 30, (4, 5)))

    def loss(negative_weight: float, mask: torch.Tensor | None) -> torch.Tensor:
        torch.manual_seed(0)
        config = AlignerConfig.for_objective(
            "hyperbolic-entail", vision_dim=12, vocab_size=30, width=16, embed_dim=8,
            num_queries=3, depth=1, heads=2, max_text_len=10, special_ids=(1, 2),
            negative_weight=negative_weight, negative_margin=3.5,  # > pi >= any energy
        )  # fmt: skip
        hierarchy = (*pairs, mask)
        return ImageTextAligner(config)(
            vision, ids, hierarchy=hierarchy, generator=torch.Generator().manual_seed(1)
        ).loss

    plain = loss(0.0, None)
    assert torch.equal(loss(2.0, torch.zeros(4, 4, dtype=torch.bool)), plain)
    assert loss(2.0, torch.ones(4, 4, dtype=torch.bool)) > plain


@pytest.mark.parametrize(
    "overrides",
    [{"negative_weight": -1.0}, {"negative_margin": 0.0}, {"part_entailment": True,
     "caption_entailment": False}],
)  # fmt: skip
def test_negative_and_part_settings_are_checked(overrides: dict[str, object]) -> None:
    config = AlignerConfig.for_objective(
        "hyperbolic-entail", vision_dim=12, vocab_size=30, width=16, embed_dim=8, **overrides
    )
    with pytest.raises(ValueError, match=r"^negative_weight, "):
        ImageTextAligner(config)
