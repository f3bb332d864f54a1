"""Retrieval recall, Spearman, AUROC and histograms against brute-force definitions."""

from __future__ import annotations

import builtins
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hyperet.alignment.metrics import (
    auroc,
    average_ranks,
    caption_relevance,
    chance_recall,
    plot_radius_histograms,
    radius_histogram,
    recall_at_k,
    retrieval_ranks,
    retrieval_recall,
    spearman,
)


def _brute_rank(scores: list[float], relevant: list[bool]) -> int:
    """Sort by score, ties placing irrelevant items first; rank of the first relevant item."""
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], relevant[j]))
    return 1 + next(pos for pos, j in enumerate(order) if relevant[j])


def test_ranks_match_a_sort_with_pessimistic_ties() -> None:
    rng = np.random.default_rng(0)
    sim = rng.integers(0, 4, size=(40, 25)).astype(float)  # many ties
    rel = rng.random((40, 25)) < 0.1
    rel[np.arange(40), rng.integers(0, 25, 40)] = True
    got = retrieval_ranks(sim, rel)
    want = [_brute_rank(sim[i].tolist(), rel[i].tolist()) for i in range(40)]
    assert got.tolist() == want
    rec = recall_at_k(got, (1, 5, 10))
    for k in (1, 5, 10):
        assert rec[f"R@{k}"] == sum(r <= k for r in want) / 40


def test_collapsed_scores_get_no_credit_from_ties() -> None:
    rel = np.eye(12, dtype=bool)
    out = retrieval_recall(np.zeros((12, 12)), rel)
    assert out["image_to_text"]["R@1"] == 0.0 and out["image_to_text"]["R@10"] == 0.0
    assert out["text_to_image"]["R@10"] == 0.0


def test_hand_case_with_several_and_duplicate_captions() -> None:
    captions = [["two objects.", "a red cube."], ["two objects.", "a blue ball."], ["one object."]]
    texts = ["two objects.", "a red cube.", "two objects.", "a blue ball.", "one object."]
    rel = caption_relevance(captions, texts)
    want_rel = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=bool)
    assert np.array_equal(rel, want_rel)
    sim = np.array(
        [
            [0.1, 0.2, 0.0, 0.9, 0.3],  # image 0: best relevant 0.2, beaten by 0.9, 0.3 -> rank 3
            [0.5, 0.1, 0.2, 0.4, 0.0],  # image 1: "two objects." (0.5) first -> rank 1
            [0.3, 0.2, 0.1, 0.0, 0.3],  # image 2: tie with an irrelevant 0.3 -> rank 2
        ]
    )
    out = retrieval_recall(sim, rel, ks=(1, 2, 3))
    assert out["image_to_text"] == {"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0}
    # text -> image: columns. t0 rel {0,1}: best 0.5 (img1) rank 1; t1 rel {0}: 0.2 vs 0.2 tie
    # with img2 -> rank 2; t2 rel {0,1}: 0.2 (img1) rank 1; t3 rel {1}: 0.4 < 0.9 -> rank 2;
    # t4 rel {2}: 0.3 = 0.3 (img0, irrelevant) -> rank 2.
    assert out["text_to_image"] == {"R@1": 2 / 5, "R@2": 1.0, "R@3": 1.0}


def test_chance_recall_against_all_rankings() -> None:
    """Average the hit rate over every permutation of 6 items (exact expectation)."""
    rel = np.array([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]], dtype=bool)
    perms = list(itertools.permutations(range(6)))
    for k in (1, 2, 4, 10):
        hits = [np.mean([any(row[j] for j in perm[:k]) for perm in perms]) for row in rel.tolist()]
        assert chance_recall(rel, (k,))[f"R@{k}"] == pytest.approx(float(np.mean(hits)), rel=1e-12)


def test_retrieval_rejects_queries_without_relevant_items() -> None:
    with pytest.raises(ValueError, match=r"^relevant:"):
        retrieval_ranks(np.zeros((2, 2)), np.array([[True, False], [False, False]]))
    with pytest.raises(ValueError, match=r"^similarity:"):
        retrieval_ranks(np.array([[np.nan, 0.0]]), np.array([[True, False]]))


def _brute_average_ranks(x: list[float]) -> list[float]:
    return [sum(v < xi for v in x) + (sum(v == xi for v in x) + 1) / 2 for xi in x]


def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def test_average_ranks_and_spearman_with_ties_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.integers(0, 5, 30).astype(float)
        y = (x + rng.integers(0, 3, 30)).astype(float)
        assert average_ranks(x).tolist() == _brute_average_ranks(x.tolist())
        want = _pearson(_brute_average_ranks(x.tolist()), _brute_average_ranks(y.tolist()))
        assert spearman(x, y) == pytest.approx(want, rel=1e-12)


def test_spearman_without_ties_is_the_textbook_formula() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.permutation(25).astype(float), rng.permutation(25).astype(float)
    n = 25
    d2 = float(((x - y) ** 2).sum())  # ranks are the values + 1
    assert spearman(x, y) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)), rel=1e-12)
    assert spearman(x, 3 * x + 1) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(n)))


def test_spearman_agrees_with_scipy_when_installed() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 6, 50), rng.integers(0, 6, 50)
    assert spearman(x, y) == pytest.approx(float(stats.spearmanr(x, y).statistic), rel=1e-12)


def test_auroc_against_pairwise_counting() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        s = rng.integers(0, 6, 40).astype(float)
        y = rng.random(40) < 0.4
        pos, neg = s[y].tolist(), s[~y].tolist()
        if not pos or not neg:
            continue
        pairs = list(itertools.product(pos, neg))
        want = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in pairs) / len(pairs)
        assert auroc(s, y) == pytest.approx(want, rel=1e-12)
    assert auroc([1.0, 2.0], [False, True]) == 1.0
    assert auroc([1.0, 1.0], [False, True]) == 0.5
    assert math.isnan(auroc([1.0, 2.0], [True, True]))


def test_radius_histogram_counts_every_value() -> None:
    r = np.array([0.5, 1.0, 1.5, 2.0, 2.0, 3.9])
    h = radius_histogram(r, bins=4, value_range=(0.0, 4.0))
    assert h["edges"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert h["counts"] == [1, 2, 2, 1]
    with pytest.raises(ValueError, match=r"^radii:"):
        radius_histogram([1.0, math.inf])


def test_histogram_png_is_skipped_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    path = tmp_path / "r.png"
    assert plot_radius_histograms({"image": [1.0, 2.0]}, path) is False
    assert not path.exists()


def test_histogram_png_is_written_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "r.png"
    assert plot_radius_histograms({"image": [1.0, 2.0, 2.5], "text": [0.5, 1.5]}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
