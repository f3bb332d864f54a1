"""ITC losses against hand-computed float64 values, their c -> 0 limits, RQS statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hyperet import ops
from hyperet.alignment.losses import (
    ContrastiveLoss,
    aggregate_queries,
    duplicate_positives,
    info_nce,
    random_query_mask,
    select_queries,
    similarity_matrix,
)

F64 = torch.float64


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def _poincare(a: list[float], b: list[float], c: float) -> float:
    """d_c(a, b) = arcosh(1 + 2c|a-b|^2 / ((1-c|a|^2)(1-c|b|^2))) / sqrt(c), written out."""
    d2 = sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    wa = 1 - c * sum(x * x for x in a)
    wb = 1 - c * sum(y * y for y in b)
    return math.acosh(1 + 2 * c * d2 / (wa * wb)) / math.sqrt(c)


def _symmetric_ce(logits: list[list[float]], pos: list[list[bool]], eps: float) -> float:
    """Symmetric InfoNCE written with explicit loops (targets: positives share 1-eps, eps/N)."""

    def one_way(rows: list[list[float]], p: list[list[bool]]) -> float:
        total = 0.0
        for row, prow in zip(rows, p, strict=True):
            lse = math.log(sum(math.exp(v) for v in row))
            npos = sum(prow)
            for v, is_pos in zip(row, prow, strict=True):
                target = (1 - eps) * (1.0 / npos if is_pos else 0.0) + eps / len(row)
                total -= target * (v - lse)
        return total / len(rows)

    cols = [list(col) for col in zip(*logits, strict=True)]
    pcols = [list(col) for col in zip(*pos, strict=True)]
    return 0.5 * (one_way(logits, pos) + one_way(cols, pcols))


IMG = [[0.3, -0.2, 0.1], [0.05, 0.4, -0.3], [-0.25, 0.1, 0.2]]
TXT = [[0.2, -0.1, 0.3], [0.1, 0.35, -0.2], [-0.3, -0.05, 0.1]]


def test_cosine_similarity_matches_the_explicit_formula() -> None:
    got = similarity_matrix(
        torch.tensor(IMG, dtype=F64), torch.tensor(TXT, dtype=F64), kind="cosine"
    )
    want = [[_cos(a, b) for b in TXT] for a in IMG]
    torch.testing.assert_close(got, torch.tensor(want, dtype=F64), rtol=1e-14, atol=1e-15)


def test_poincare_similarity_is_the_negative_distance() -> None:
    c = 0.7
    got = similarity_matrix(
        torch.tensor(IMG, dtype=F64), torch.tensor(TXT, dtype=F64), kind="poincare", c=c
    )
    want = [[-_poincare(a, b, c) for b in TXT] for a in IMG]
    torch.testing.assert_close(got, torch.tensor(want, dtype=F64), rtol=1e-12, atol=1e-14)


def test_query_similarities_have_shape_b_k_n() -> None:
    image = torch.randn(4, 3, 5, dtype=F64) * 0.1
    text = torch.randn(6, 5, dtype=F64) * 0.1
    for kind in ("cosine", "poincare", "euclidean"):
        sim = similarity_matrix(image, text, kind=kind, c=1.0)  # type: ignore[arg-type]
        assert sim.shape == (4, 3, 6)
        flat = similarity_matrix(image[:, 1], text, kind=kind, c=1.0)  # type: ignore[arg-type]
        torch.testing.assert_close(sim[:, 1], flat)


def test_poincare_similarity_needs_the_curvature() -> None:
    with pytest.raises(ValueError, match=r"^c:"):
        similarity_matrix(torch.zeros(2, 3), torch.zeros(2, 3), kind="poincare")
    with pytest.raises(ValueError, match=r"^c:"):
        similarity_matrix(torch.zeros(2, 3), torch.zeros(2, 3), kind="lorentz")
    with pytest.raises(ValueError, match=r"^kind:"):
        similarity_matrix(torch.zeros(2, 3), torch.zeros(2, 3), kind="klein")  # type: ignore[arg-type]


@pytest.mark.parametrize("c", [1e-6, 1e-2, 0.3, 1.0, 10.0, 1e3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosine_in_the_ball_equals_the_euclidean_cosine_for_every_c(
    c: float, dtype: torch.dtype
) -> None:
    """expmap0(u) = (tanh(sqrt(c)|u|) / (sqrt(c)|u|)) u is a positive multiple of u, so the
    cosine of two ball points is the cosine of their tangent vectors - also when float32
    saturates the radius (sqrt(c)|u| up to 50 here)."""
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(16, 8, generator=gen, dtype=F64)
    v = torch.randn(12, 8, generator=gen, dtype=F64)
    u = u * (torch.logspace(-3, math.log10(50), 16, dtype=F64) / c**0.5 / u.norm(dim=-1)).unsqueeze(
        -1
    )
    x, y = ops.expmap0(u.to(dtype), c=c), ops.expmap0(v.to(dtype), c=c)
    ball = similarity_matrix(x, y, kind="cosine")
    want = torch.tensor([[_cos(a, b) for b in v.tolist()] for a in u.tolist()], dtype=F64)
    tol = 1e-13 if dtype == F64 else 2e-6
    torch.testing.assert_close(ball.to(F64), want, rtol=0, atol=tol)


def test_poincare_distance_tends_to_twice_the_euclidean_distance_as_c_to_0() -> None:
    """d_c(expmap0 u, expmap0 v) = 2|u - v| + O(c): the relative gap shrinks linearly in c."""
    gen = torch.Generator().manual_seed(1)
    u, v = torch.randn(5, 4, generator=gen, dtype=F64), torch.randn(7, 4, generator=gen, dtype=F64)
    flat = 2 * torch.cdist(u, v)
    gaps = []
    for c in (1e-2, 1e-4, 1e-6):
        d = -similarity_matrix(ops.expmap0(u, c=c), ops.expmap0(v, c=c), kind="poincare", c=c)
        gaps.append(float(((d - flat).abs() / flat).max()))
    assert gaps[0] < 0.5
    assert gaps[1] < gaps[0] * 2e-2 and gaps[2] < gaps[1] * 2e-2, gaps


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_info_nce_matches_a_hand_computed_case(eps: float) -> None:
    logits = [[2.0, 0.5, -1.0], [0.1, 1.5, 0.3], [-0.4, 0.2, 0.9]]
    eye = [[i == j for j in range(3)] for i in range(3)]
    got = info_nce(torch.tensor(logits, dtype=F64), label_smoothing=eps)
    assert float(got) == pytest.approx(_symmetric_ce(logits, eye, eps), rel=1e-14)
    # and against torch's own label-smoothed cross-entropy
    t = torch.tensor(logits, dtype=F64)
    ref = 0.5 * (
        F.cross_entropy(t, torch.arange(3), label_smoothing=eps)
        + F.cross_entropy(t.T, torch.arange(3), label_smoothing=eps)
    )
    assert float(got) == pytest.approx(float(ref), rel=1e-14)


def test_info_nce_spreads_the_target_over_duplicate_positives() -> None:
    logits = [[1.0, 0.8, -0.2], [0.7, 1.1, 0.0], [0.3, -0.5, 2.0], [0.9, 0.6, 0.1]]  # 4 images
    pos = [[True, True, False], [True, True, False], [False, False, True], [False, True, False]]
    got = info_nce(
        torch.tensor(logits, dtype=F64), positives=torch.tensor(pos), label_smoothing=0.1
    )
    assert float(got) == pytest.approx(_symmetric_ce(logits, pos, 0.1), rel=1e-14)


def test_duplicate_positives_match_equal_keys() -> None:
    keys = torch.tensor([[3, 4, 0], [5, 0, 0], [3, 4, 0], [3, 4, 1]])
    want = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(duplicate_positives(keys), want)


def test_info_nce_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^positives:"):
        info_nce(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"^positives:"):
        info_nce(torch.zeros(2, 2), positives=torch.tensor([[True, False], [True, False]]))
    with pytest.raises(ValueError, match=r"^label_smoothing:"):
        info_nce(torch.zeros(2, 2), label_smoothing=1.0)


def test_query_aggregation_and_selection_against_loops() -> None:
    gen = torch.Generator().manual_seed(2)
    sim = torch.randn(5, 4, 3, generator=gen, dtype=F64)
    mask = torch.rand(5, 4, generator=gen) < 0.5
    mask[:, 0] = True
    best = select_queries(sim, mask)
    for b in range(5):
        for n in range(3):
            chosen = [float(sim[b, k, n]) for k in range(4) if mask[b, k]]
            assert float(best[b, n]) == max(chosen)
            assert float(aggregate_queries(sim, how="max")[b, n]) == max(sim[b, :, n].tolist())
            assert float(aggregate_queries(sim, how="mean")[b, n]) == pytest.approx(
                sum(sim[b, :, n].tolist()) / 4, rel=1e-15
            )


def test_random_query_selection_statistics_per_sample() -> None:
    """Each row keeps exactly `num` queries; each query is kept with probability num/K."""
    batch, k, num = 4000, 8, 2
    mask = random_query_mask(
        batch, k, num=num, per="sample", generator=torch.Generator().manual_seed(3)
    )
    assert mask.shape == (batch, k) and bool((mask.sum(1) == num).all())
    p = num / k
    sigma = math.sqrt(p * (1 - p) / batch)
    freq = mask.double().mean(0)
    assert float((freq - p).abs().max()) < 5 * sigma, freq
    # rows are not all the same draw
    assert len({tuple(row.tolist()) for row in mask[:50]}) > 10


def test_random_query_selection_statistics_per_batch() -> None:
    gen = torch.Generator().manual_seed(4)
    k, num, draws = 8, 3, 3000
    counts = torch.zeros(k, dtype=F64)
    for _ in range(draws):
        mask = random_query_mask(16, k, num=num, per="batch", generator=gen)
        assert bool((mask == mask[0]).all()) and int(mask[0].sum()) == num
        counts += mask[0].double()
    p = num / k
    sigma = math.sqrt(p * (1 - p) / draws)
    assert float((counts / draws - p).abs().max()) < 5 * sigma


def test_random_query_selection_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match=r"^num:"):
        random_query_mask(2, 4, num=5)
    with pytest.raises(ValueError, match=r"^per:"):
        random_query_mask(2, 4, num=1, per="token")  # type: ignore[arg-type]


def test_contrastive_loss_train_and_eval_aggregation() -> None:
    gen = torch.Generator().manual_seed(5)
    image = ops.expmap0(torch.randn(6, 4, 8, generator=gen), c=1.0)
    text = ops.expmap0(torch.randn(6, 8, generator=gen), c=1.0)
    loss = ContrastiveLoss(label_smoothing=0.0, rqs_queries=4, eval_aggregation="mean")
    loss.train()  # RQS keeping all K queries is the max
    want_max = aggregate_queries(similarity_matrix(image, text, kind="cosine"), how="max")
    torch.testing.assert_close(loss.scores(image, text, c=1.0), want_max)
    loss.eval()
    want_mean = aggregate_queries(similarity_matrix(image, text, kind="cosine"), how="mean")
    torch.testing.assert_close(loss.scores(image, text, c=1.0), want_mean)
    out = loss(image, text, c=1.0)
    torch.testing.assert_close(out.logits, want_mean / 0.07)
    assert out.loss.item() == pytest.approx(
        _symmetric_ce((want_mean / 0.07).double().tolist(), torch.eye(6).bool().tolist(), 0.0),
        rel=1e-5,
    )


def test_poincare_itc_tends_to_the_flat_distance_loss_as_c_to_0() -> None:
    """Loss with logits -s d_c(expmap0 u, expmap0 v) -> loss with logits -2 s |u - v|."""
    gen = torch.Generator().manual_seed(6)
    u, v = torch.randn(4, 3, generator=gen, dtype=F64), torch.randn(4, 3, generator=gen, dtype=F64)
    s = 1 / 0.07
    flat_logits = (-2 * s * torch.cdist(u, v)).tolist()
    want = _symmetric_ce(flat_logits, torch.eye(4).bool().tolist(), 0.1)
    loss = ContrastiveLoss(similarity="poincare", label_smoothing=0.1).double().eval()
    errors = [
        abs(loss(ops.expmap0(u, c=c), ops.expmap0(v, c=c), c=c).loss.item() - want)
        for c in (1e-3, 1e-5, 1e-7)
    ]
    assert errors[2] < 1e-4 * max(1.0, want) and errors[2] < errors[1] < errors[0], errors


def test_logit_scale_is_capped_and_clamp_hits_are_counted() -> None:
    loss = ContrastiveLoss()
    assert loss.logit_scale().item() == pytest.approx(1 / 0.07, rel=1e-6)
    with torch.no_grad():
        loss.logit_scale.log_value.fill_(math.log(500.0))
    assert loss.logit_scale().item() == pytest.approx(100.0, rel=1e-6)
    assert loss.logit_scale.clamp_() == 1 and loss.logit_scale.clamp_() == 0
    assert loss.logit_scale.log_value.item() == pytest.approx(math.log(100.0), rel=1e-6)


@pytest.mark.parametrize(
    ("similarity", "top"), [("cosine", 12.0), ("euclidean", 12.0), ("poincare", 7.0)]
)
def test_gradients_are_finite_near_the_boundary_in_float32(similarity: str, top: float) -> None:
    """Tangent norms sqrt(c)|u| from 1 to ``top`` put points near the boundary: 1 - r = 2e-6 at
    7 (still representable in float32) and rounding to the boundary at 12. The cosine losses
    must keep finite, non-zero gradients there; the Poincaré loss finite ones up to 1 - r = 2e-6
    (on the boundary its distances are infinite: see the monitor tests)."""
    gen = torch.Generator().manual_seed(7)
    c = 1.0
    u0 = torch.randn(8, 2, 16, generator=gen)
    v0 = torch.randn(8, 16, generator=gen)
    radii = torch.linspace(1.0, top, 8)
    u = (u0 / u0.norm(dim=-1, keepdim=True) * radii.view(8, 1, 1)).requires_grad_()
    v = (v0 / v0.norm(dim=-1, keepdim=True) * radii.flip(0).view(8, 1)).requires_grad_()
    loss_fn = ContrastiveLoss(similarity=similarity)  # type: ignore[arg-type]
    if similarity == "euclidean":
        x, y = u, v
    else:
        x, y = ops.expmap0(u, c=c), ops.expmap0(v, c=c)
        assert float(1 - x.detach().norm(dim=-1).max()) < (1e-6 if top > 9 else 1e-5)
    out = loss_fn(x, y, c=c, generator=torch.Generator().manual_seed(8))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert u.grad is not None and v.grad is not None
    assert bool(torch.isfinite(u.grad).all() and torch.isfinite(v.grad).all())
    assert float(u.grad.norm()) > 0 and float(v.grad.norm()) > 0
