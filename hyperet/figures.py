"""The figures of docs/tutorial.md, drawn from :mod:`hyperet.reference` with matplotlib.

Every point, curve and label position is computed by the float64 reference (nothing is drawn
from a hand-written formula), so the pictures show what the library computes. matplotlib is an
optional dependency (``pip install 'hyperet[plot]'``)::

    python -m hyperet.figures docs/figures      # or: nox -s figures

writes one PNG per entry of :data:`FIGURES`; the committed copies live in docs/figures/.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hyperet import reference as ref

#: Curvature of every figure: the unit disk.
C = 1.0
_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"


def geodesic(x: np.ndarray, y: np.ndarray, n: int = 200) -> np.ndarray:
    """``(n, 2)`` points of the geodesic from ``x`` to ``y``: ``x (+) (t (x) ((-x) (+) y))``."""
    step = ref.mobius_add(-x, y, c=C)  # (2,)
    t = np.linspace(0.0, 1.0, n)  # (n,)
    along = ref.mobius_scalar_mul(t, np.broadcast_to(step, (n, step.size)), c=C)  # (n, 2)
    return ref.mobius_add(np.broadcast_to(x, along.shape), along, c=C)


def _disk(ax: Any, title: str) -> None:
    import matplotlib.pyplot as plt

    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="black", lw=1.2))
    ax.set_xlim(-1.08, 1.08)
    ax.set_ylim(-1.08, 1.08)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=11)
    for side in ax.spines.values():
        side.set_visible(False)


def _radius_circle(ax: Any, rad: float, **style: Any) -> None:
    """The circle of hyperbolic radius ``rad`` around the origin."""
    u = np.array([rad / 2, 0.0])  # |expmap0(u)| = tanh(|u|) at c = 1, and Rad = 2 |u|
    rho = float(np.linalg.norm(ref.expmap0(u, c=C)))
    theta = np.linspace(0, 2 * math.pi, 300)
    ax.plot(rho * np.cos(theta), rho * np.sin(theta), **style)


def figure_ball(fig: Any) -> None:
    """Geodesics of the disk; points one unit of distance apart; a binary tree that fits."""
    ax1, ax2 = fig.subplots(1, 2)
    _disk(ax1, "geodesics, and points 1 apart")
    pairs = [((-0.9, 0.1), (0.6, 0.7)), ((-0.5, -0.8), (0.7, -0.6)), ((0.1, 0.95), (0.2, -0.95))]
    for a, b in pairs:
        curve = geodesic(np.array(a), np.array(b))
        ax1.plot(curve[:, 0], curve[:, 1], color=_BLUE, lw=1.5)
    ax1.plot([-1, 1], [0, 0], color=_BLUE, lw=1.5)
    marks = np.array([[ref.expmap0(np.array([k / 2, 0.0]), c=C)[0], 0.0] for k in range(-5, 6)])
    ax1.plot(marks[:, 0], marks[:, 1], "o", color=_ORANGE, ms=4)
    ax1.text(0, -0.12, "d = 1 between dots", ha="center", fontsize=8, color=_ORANGE)

    _disk(ax2, "a binary tree, every edge of length 1.2")
    depth, edge = 7, 1.2
    points = np.zeros((3, 2))  # the nodes of the current level
    headings = math.pi / 2 + 2 * math.pi * np.arange(3) / 3
    spread = math.pi / 3.5
    t = np.linspace(0.0, 1.0, 30)[None, :]  # (1, 30)
    for level in range(depth):
        first = level == 0  # the root's three edges leave straight, then each node forks
        headings = headings if first else np.concatenate([headings - spread, headings + spread])
        parents = points if first else np.concatenate([points, points])
        spread = spread if first else spread / 2
        # walk `edge` along the geodesic leaving each parent in its heading
        scale = edge / ref.conformal_factor(parents, c=C)[:, None]
        children = ref.expmap(
            parents, scale * np.stack([np.cos(headings), np.sin(headings)], 1), c=C
        )
        # each edge: parent (+) t (x) ((-parent) (+) child), all edges and t at once
        step = ref.mobius_add(-parents, children, c=C)[:, None, :]  # (k, 1, 2)
        shape = (parents.shape[0], t.shape[1], 2)
        along = ref.mobius_scalar_mul(
            np.broadcast_to(t, shape[:2]), np.broadcast_to(step, shape), c=C
        )
        curves = ref.mobius_add(np.broadcast_to(parents[:, None, :], shape), along, c=C)
        for curve in curves:
            ax2.plot(curve[:, 0], curve[:, 1], color=_GREEN, lw=max(0.4, 1.6 - 0.2 * level))
        points = children
    ax2.plot([0], [0], "o", color="black", ms=4)


def figure_conformal(fig: Any) -> None:
    """lambda_x against |x|, and discs of one hyperbolic size drawn where they lie."""
    ax1, ax2 = fig.subplots(1, 2)
    r = np.linspace(0.0, 0.995, 400)
    lam = ref.conformal_factor(np.stack([r, np.zeros_like(r)], axis=1), c=C)
    ax1.semilogy(r, lam, color=_BLUE)
    ax1.set_xlabel("|x|")
    ax1.set_ylabel(r"$\lambda_x = 2 / (1 - |x|^2)$")
    ax1.set_title("the conformal factor", fontsize=11)
    ax1.grid(alpha=0.3)

    _disk(ax2, "discs of hyperbolic radius 0.25")
    theta = np.linspace(0, 2 * math.pi, 120)
    for rad in (0.0, 1.0, 2.0, 3.0, 4.0):
        for angle in np.linspace(0, 2 * math.pi, 7)[:-1] if rad else [0.0]:
            centre = ref.expmap0(np.array([math.cos(angle), math.sin(angle)]) * rad / 2, c=C)
            # the boundary of the disc: expmap at the centre of tangent vectors of length 0.25
            lam_c = float(ref.conformal_factor(centre, c=C))
            u = np.stack([np.cos(theta), np.sin(theta)], axis=1) * (0.25 / lam_c)
            ring = ref.expmap(np.broadcast_to(centre, u.shape), u, c=C)
            ax2.fill(ring[:, 0], ring[:, 1], color=_ORANGE, alpha=0.8, lw=0)


def figure_mobius(fig: Any) -> None:
    """x (+) y and y (+) x differ by a rotation: the gyration gyr[x, y]."""
    ax1, ax2 = fig.subplots(1, 2)
    x, y = np.array([0.7, 0.1]), np.array([0.05, 0.8])
    xy, yx = ref.mobius_add(x, y, c=C), ref.mobius_add(y, x, c=C)
    _disk(ax1, r"$x \oplus y \ne y \oplus x$")
    for point, label, colour in [
        (x, "x", "black"),
        (y, "y", "black"),
        (xy, r"$x \oplus y$", _BLUE),
        (yx, r"$y \oplus x$", _RED),
    ]:
        ax1.plot(*point, "o", color=colour, ms=5)
        ax1.annotate(label, point, textcoords="offset points", xytext=(6, 4), color=colour)
    for start, end, colour in [(x, xy, _BLUE), (y, yx, _RED)]:
        curve = geodesic(start, end)
        ax1.plot(curve[:, 0], curve[:, 1], color=colour, lw=1.3)
    rot = np.linalg.norm(xy)
    arc = np.linspace(math.atan2(yx[1], yx[0]), math.atan2(xy[1], xy[0]), 50)
    ax1.plot(rot * np.cos(arc), rot * np.sin(arc), "--", color=_GREY, lw=1)
    ax1.text(0.0, -0.35, r"$x \oplus y = \mathrm{gyr}[x, y]\,(y \oplus x)$", ha="center")

    _disk(ax2, r"gyr[x, y] rotates every vector by the same angle")
    angles = np.linspace(0, 2 * math.pi, 9)[:-1]
    z = 0.6 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    gz = ref.gyration(np.broadcast_to(x, z.shape), np.broadcast_to(y, z.shape), z, c=C)
    for before, after in zip(z, gz, strict=True):
        ax2.annotate("", after, before, arrowprops={"arrowstyle": "->", "color": _GREY})
        ax2.plot([0, before[0]], [0, before[1]], color="black", lw=0.6)
        ax2.plot([0, after[0]], [0, after[1]], color=_RED, lw=0.6)
    ax2.plot(z[:, 0], z[:, 1], "o", color="black", ms=4, label="z")
    ax2.plot(gz[:, 0], gz[:, 1], "o", color=_RED, ms=4, label="gyr[x, y] z")
    ax2.legend(loc="lower right", fontsize=8)


def figure_scalar(fig: Any) -> None:
    """r (x) x stays on the ray of x; its hyperbolic radius is |r| Rad(x) (Theorem 1)."""
    ax1, ax2 = fig.subplots(1, 2)
    x = np.array([0.3, 0.2])
    rs = np.linspace(0.0, 6.0, 25)
    points = ref.mobius_scalar_mul(rs, np.broadcast_to(x, (rs.size, 2)), c=C)
    _disk(ax1, r"$r \otimes x$ for r = 0 ... 6")
    ax1.plot(points[:, 0], points[:, 1], "o", color=_BLUE, ms=3)
    ax1.plot(*x, "o", color=_RED, ms=6)
    ax1.annotate("x (r = 1)", x, textcoords="offset points", xytext=(-62, 4), color=_RED)
    rad = ref.dist0(points, c=C)
    ax2.plot(rs, rad, color=_BLUE, label=r"Rad$(r \otimes x)$")
    ax2.plot(rs, np.linalg.norm(points, axis=1) * 10, color=_ORANGE, label=r"$10\,|r \otimes x|$")
    ax2.set_xlabel("r")
    ax2.set_title(r"Rad grows linearly, $|r \otimes x|$ saturates below 1", fontsize=11)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)


def figure_exp_log(fig: Any) -> None:
    """A square grid of tangent vectors and its image under expmap0."""
    ax1, ax2 = fig.subplots(1, 2)
    ticks = np.linspace(-3, 3, 13)
    line = np.linspace(-3, 3, 200)
    ax1.set_title(r"tangent space $T_0$ (flat)", fontsize=11)
    _disk(ax2, r"its image under $\exp_0$")
    for t in ticks:
        for u in (
            np.stack([line, np.full_like(line, t)], 1),
            np.stack([np.full_like(line, t), line], 1),
        ):
            ax1.plot(u[:, 0], u[:, 1], color=_GREY, lw=0.6)
            x = ref.expmap0(u, c=C)
            ax2.plot(x[:, 0], x[:, 1], color=_GREY, lw=0.6)
    ax1.set_aspect("equal")
    ax1.set_xlim(-3.2, 3.2)
    ax1.set_ylim(-3.2, 3.2)
    u = np.array([2.0, 1.0])
    ax1.annotate("u", u, textcoords="offset points", xytext=(4, 4), color=_RED)
    ax1.plot(*u, "o", color=_RED)
    x = ref.expmap0(u, c=C)
    ax2.plot(*x, "o", color=_RED)
    ax2.annotate(r"$\exp_0(u)$", x, textcoords="offset points", xytext=(-30, 8), color=_RED)


def figure_hra(fig: Any) -> None:
    """HRA in 2-D: W = diag(2.2, 0.5) pushes the x-spread points out and pulls the y-spread in."""
    ax1, ax2 = fig.subplots(1, 2)
    rng = np.random.default_rng(0)
    u = rng.normal(size=(60, 2)) * 0.45  # tangent features of an encoder
    w = np.array([2.2, 0.5])
    before = ref.expmap0(u, c=C)
    after = ref.diagonal_matvec(w, before, c=C)  # W (x) expmap0(u)
    _disk(ax1, r"before (blue) and after $W \otimes$ (orange)")
    ax1.plot(before[:, 0], before[:, 1], "o", color=_BLUE, ms=3, alpha=0.7)
    ax1.plot(after[:, 0], after[:, 1], "o", color=_ORANGE, ms=3, alpha=0.7)
    for k in range(60):
        ax1.annotate(
            "", after[k], before[k], arrowprops={"arrowstyle": "->", "color": _GREY, "lw": 0.6}
        )
    rad_before, rad_after = ref.dist0(before, c=C), ref.dist0(after, c=C)
    bins = np.linspace(0, max(rad_before.max(), rad_after.max()), 16)
    ax2.hist(rad_before, bins, alpha=0.6, color=_BLUE, label="before")
    ax2.hist(rad_after, bins, alpha=0.6, color=_ORANGE, label="after")
    ax2.set_xlabel("hyperbolic radius Rad")
    ax2.set_title("radii, moved by the structured matrix", fontsize=11)
    ax2.legend(fontsize=8)


#: file stem -> (drawing function, figure size in inches)
FIGURES: dict[str, tuple[Callable[[Any], None], tuple[float, float]]] = {
    "ball": (figure_ball, (9.0, 4.6)),
    "conformal": (figure_conformal, (9.0, 4.2)),
    "mobius": (figure_mobius, (9.0, 4.6)),
    "scalar": (figure_scalar, (9.0, 4.2)),
    "exp_log": (figure_exp_log, (9.0, 4.4)),
    "hra": (figure_hra, (9.0, 4.4)),
}


def make_figures(directory: Path, names: tuple[str, ...] = tuple(FIGURES)) -> list[Path]:
    """Draw the named figures into ``directory/<name>.png``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        draw, size = FIGURES[name]
        fig = plt.figure(figsize=size, layout="constrained")
        draw(fig)
        path = directory / f"{name}.png"
        # fixed metadata: the same drawing writes the same bytes (no date stamp)
        fig.savefig(path, dpi=90, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """``python -m hyperet.figures DIRECTORY [NAME ...]``."""
    parser = argparse.ArgumentParser(description="Draw the tutorial's figures.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of {', '.join(FIGURES)}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    for path in make_figures(args.directory, tuple(args.names) or tuple(FIGURES)):
        print(path)


if __name__ == "__main__":
    main()
