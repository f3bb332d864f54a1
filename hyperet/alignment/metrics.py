"""Retrieval and radius-uncertainty metrics (numpy only; scipy is not needed).

Retrieval. Queries are the rows of a similarity matrix (images for image-to-text, texts for
text-to-image after transposing). A query may have several relevant items: an image has one
caption per granularity level, and one caption string can describe several images ("two
objects."). :func:`caption_relevance` marks text ``j`` relevant to image ``i`` when the string
of ``j`` equals any caption of ``i``, so a duplicate caption counts as a hit for every image it
describes. With ``R_i`` the relevant items of query ``i``, its rank is that of its best
relevant item, with ties broken *against* the query:

.. math::

    \\operatorname{rank}_i = 1 + \\#\\{ j \\notin R_i : s_{ij} \\ge \\max_{k \\in R_i} s_{ik} \\},
    \\qquad \\mathrm{R@}k = \\frac{1}{Q} \\sum_i [\\operatorname{rank}_i \\le k],

so a collapsed model (all scores equal) gets no credit from ties.

Rank statistics. :func:`average_ranks` gives tied values the mean of the ranks they span;
Spearman's rho is Pearson's correlation of those ranks; AUROC is the Mann-Whitney statistic

.. math::

    \\mathrm{AUROC} = \\frac{\\sum_{p} R_p - n_+ (n_+ + 1) / 2}{n_+ n_-}
    = P(s_+ > s_-) + \\tfrac12 P(s_+ = s_-).

Both return ``nan`` where they are undefined (a constant input; a single class).

Hierarchy. :func:`hierarchy_pairs` lists the true ``(coarse, fine)`` caption pairs of each scene
(every pair of levels ``a < b``) and, for each, a false pair: the same two levels with the fine
caption taken from another scene (a seeded random permutation), dropped when either caption
string equals the true one (then the pair is true as well). An entailment score (``psi - Xi``:
positive inside the cone) is graded by :func:`auroc` and :func:`entailment_accuracy` (score
``>= 0`` predicts "entails").
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hyperet import _io

KS = (1, 5, 10)


def caption_relevance(
    captions_per_image: Sequence[Sequence[str]], texts: Sequence[str]
) -> NDArray[np.bool_]:
    """Relevance ``(I, T)``: ``texts[j]`` equals one of the captions of image ``i``."""
    owners: dict[str, set[int]] = {}
    for i, captions in enumerate(captions_per_image):
        for text in captions:
            owners.setdefault(text, set()).add(i)
    relevant = np.zeros((len(captions_per_image), len(texts)), dtype=bool)
    for j, text in enumerate(texts):
        for i in owners.get(text, ()):
            relevant[i, j] = True
    return relevant


def retrieval_ranks(similarity: ArrayLike, relevant: ArrayLike) -> NDArray[np.int64]:
    """1-based rank of the best relevant item of each row query (ties count against it)."""
    s = np.asarray(similarity, dtype=np.float64)
    r = np.asarray(relevant, dtype=bool)
    if s.ndim != 2 or s.shape != r.shape:
        raise ValueError(f"relevant: shape {r.shape} must equal similarity's {s.shape} (2-d)")
    if not np.isfinite(s).all():
        raise ValueError("similarity: contains NaN or infinity")
    if not r.any(axis=1).all():
        raise ValueError("relevant: every query needs at least one relevant item")
    best = np.where(r, s, -np.inf).max(axis=1, keepdims=True)  # (Q, 1)
    return 1 + ((s >= best) & ~r).sum(axis=1).astype(np.int64)


def recall_at_k(ranks: ArrayLike, ks: Sequence[int] = KS) -> dict[str, float]:
    """``{"R@k": fraction of queries with rank <= k}``."""
    rk = np.asarray(ranks)
    return {f"R@{k}": float(np.mean(rk <= k)) for k in ks}


def retrieval_recall(
    similarity: ArrayLike, relevant: ArrayLike, ks: Sequence[int] = KS
) -> dict[str, dict[str, float]]:
    """Recall@k both ways for an image-by-text ``similarity`` ``(I, T)`` and ``relevant`` mask."""
    s = np.asarray(similarity, dtype=np.float64)
    r = np.asarray(relevant, dtype=bool)
    return {
        "image_to_text": recall_at_k(retrieval_ranks(s, r), ks),
        "text_to_image": recall_at_k(retrieval_ranks(s.T, r.T), ks),
    }


def chance_recall(relevant: ArrayLike, ks: Sequence[int] = KS) -> dict[str, float]:
    """Expected Recall@k of a uniformly random ranking (rows are queries).

    A query with ``m`` relevant items among ``T`` misses its top ``k`` with probability
    :math:`\\binom{T - m}{k} / \\binom{T}{k} = \\prod_{i<k} (T - m - i) / (T - i)`.
    """
    r = np.asarray(relevant, dtype=bool)
    if r.ndim != 2:
        raise ValueError(f"relevant: expected a 2-d mask, got shape {r.shape}")
    total = r.shape[1]
    m = r.sum(axis=1).astype(np.float64)  # (Q,)
    out = {}
    for k in ks:
        miss = np.ones_like(m)
        for i in range(min(k, total)):
            miss *= np.clip(total - m - i, 0, None) / (total - i)
        out[f"R@{k}"] = float(np.mean(1 - miss))
    return out


def average_ranks(values: ArrayLike) -> NDArray[np.float64]:
    """1-based ranks of a 1-d array; tied values share the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values: expected a 1-d array, got shape {x.shape}")
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # first index of each group of equal values
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]  # one past the last
    group_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman's rank correlation (tie-aware); ``nan`` if either input is constant."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"y: shape {b.shape} must equal x's {a.shape} (1-d)")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x, y: contain NaN or infinity")
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denom if denom > 0 else math.nan


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` predicting boolean ``labels`` (ties count 1/2).

    ``nan`` when one class is empty.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"labels: shape {y.shape} must equal scores' {s.shape} (1-d)")
    if not np.isfinite(s).all():
        raise ValueError("scores: contain NaN or infinity")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(average_ranks(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def radius_histogram(
    radii: ArrayLike, *, bins: int = 20, value_range: tuple[float, float] | None = None
) -> dict[str, list[float] | list[int]]:
    """Histogram of radii as plain numbers: ``{"edges": [bins + 1], "counts": [bins]}``.

    Non-finite radii are rejected: a radius of ``inf`` (a point on the boundary) is reported by
    the stability monitors, not hidden in a bin.
    """
    r = np.asarray(radii, dtype=np.float64).ravel()
    if not np.isfinite(r).all():
        raise ValueError("radii: contain NaN or infinity")
    counts, edges = np.histogram(r, bins=bins, range=value_range)
    return {"edges": [float(e) for e in edges], "counts": [int(n) for n in counts]}


def plot_radius_histograms(
    groups: Mapping[str, ArrayLike], path: str | Path, *, bins: int = 30, title: str = "Rad(x)"
) -> bool:
    """Write overlaid radius histograms to a PNG; return False (nothing written) without matplotlib.

    matplotlib is the optional extra ``plot``; the numbers are always in :func:`radius_histogram`.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    values = {name: np.asarray(r, dtype=np.float64).ravel() for name, r in groups.items()}
    everything = np.concatenate([v for v in values.values() if v.size] or [np.zeros(1)])
    edges = np.histogram_bin_edges(everything, bins=bins)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, v in values.items():
        ax.hist(v, bins=edges, histtype="step", label=f"{name} (n={v.size})")
    ax.set_xlabel("hyperbolic radius Rad(x)")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _io.atomic_write_bytes(Path(path), buffer.getvalue())
    plt.close(fig)
    return True


class HierarchyPairs(NamedTuple):
    """Caption pairs: caption ``(coarse_level[p], coarse_scene[p])`` should entail caption
    ``(fine_level[p], fine_scene[p])`` exactly when ``label[p]``."""

    coarse_level: NDArray[np.int64]
    coarse_scene: NDArray[np.int64]
    fine_level: NDArray[np.int64]
    fine_scene: NDArray[np.int64]
    label: NDArray[np.bool_]


def hierarchy_pairs(captions_by_level: Sequence[Sequence[str]], *, seed: int = 0) -> HierarchyPairs:
    """True pairs (level ``a < b`` of one scene) and their false counterparts (module docstring).

    ``captions_by_level[l][i]`` is the caption of scene ``i`` at level ``l`` (coarse first).
    """
    levels = len(captions_by_level)
    n = len(captions_by_level[0]) if levels else 0
    perm = np.random.default_rng(seed).permutation(n)
    rows: list[tuple[int, int, int, int, bool]] = []
    for a in range(levels):
        for b in range(a + 1, levels):
            for i in range(n):
                rows.append((a, i, b, i, True))
                j = int(perm[i])
                same = (
                    captions_by_level[a][j] == captions_by_level[a][i]
                    or captions_by_level[b][j] == captions_by_level[b][i]
                )
                if not same:
                    rows.append((a, i, b, j, False))
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
    ints = [np.asarray(col, dtype=np.int64) for col in cols[:4]]
    return HierarchyPairs(ints[0], ints[1], ints[2], ints[3], np.asarray(cols[4], dtype=bool))


def entailment_accuracy(scores: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of pairs classified right by the sign of the score (``>= 0``: entails)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.size == 0:
        raise ValueError(f"scores: shape {s.shape} must equal labels' {y.shape} and be non-empty")
    return float(np.mean((s >= 0) == y))
