"""Adversarial input families for the Poincaré-ball operations (numerics notes, section 6).

Deterministic given ``seed`` (numpy only).  Each :class:`Case` is one batch of inputs for one
operation; ``cases(op)`` lists the valid families that apply to ``op`` and
``invalid_cases(op)`` gives family L (inputs that must raise ``ValueError``).

Families:

==========  ==================================================================================
``random``  random points across radii (Rad uniform up to 36/sqrt(c)) and curvatures 1e-6..1e3
``A``       points with ``sqrt(c)|x| = 1 - 10**-k``, k = 1..16 (Rad up to 37.4/sqrt(c))
``B``       tiny norms 1e-8 ... 1e-300
``C``       subnormal components (5e-324 and friends)
``D``       exact zero vectors (exact limits)
``E``       huge tangent vectors, ``sqrt(c)|u|`` = 5, 19.1, 25, 1e10, 1e154, 1e300
``F``       curvature sweep 1e-12 ... 1e3 at fixed geometry
``G``       antipodal pairs near the boundary
``H``       nearly equal points, y = x (1 + delta), delta = 1e-4 ... 1e-15, incl. near boundary
``I``       pairs of near-boundary points in random directions
``J``       scalar multiplication with r = 0, +-1, 1e3, 1e6
``K``       matrix products: M = 0, x in ker M, orthogonal M, gain 1e8, structured layouts
``N``       entailment cones: y near the axis through x (beyond x, between 0 and x), offsets
            1e-3 ... 1e-300 relative, and exactly on it
``R``       entailment cones: apex at ``sqrt(c)|x| = r_in + (1 - r_in) 10**-k`` (aperture
            near pi/2), K = 0.1, 1, 10
``L``       invalid input (see :func:`invalid_cases`)

The cone ops take an apex (kind ``X``: a point with ``sqrt(c)|x| >= r_in`` for the case's ``K``)
and the Lorentz ops hyperboloid points (kind ``Q``: ``to_lorentz`` of ball points, rounded).
==========  ==================================================================================

Points are always strictly inside the ball at their float64 values (checked with the
reference's compensated co-norm); a target radius that rounds onto the boundary is pulled in
by whole ulps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hyperet.oracle.spec import FAMILY_OPS, SPECS
from hyperet.reference._careful import conorm, scaled

Array = NDArray[np.float64]

__all__ = [
    "FAMILIES",
    "OPS",
    "Case",
    "InvalidCase",
    "ball_points",
    "cases",
    "invalid_cases",
    "lorentz_points",
    "random_points",
    "unit_vectors",
]

FAMILIES: dict[str, str] = {
    "random": "random radii and curvatures",
    "A": "sqrt(c)|x| = 1 - 10^-k, k = 1..16",
    "B": "tiny norms 1e-8 ... 1e-300",
    "C": "subnormal components",
    "D": "zero vectors",
    "E": "huge tangent vectors (sqrt(c)|u| up to 1e300)",
    "F": "curvature sweep 1e-12 ... 1e3",
    "G": "antipodal pairs near the boundary",
    "H": "nearly equal points, delta 1e-4 ... 1e-15",
    "I": "pairs of near-boundary points",
    "J": "scalar r = 0, +-1, 1e3, 1e6",
    "K": "M = 0, ker M, orthogonal, gain 1e8, structured",
    "N": "near the axis of a cone (offsets 1e-3 ... 1e-300, and 0)",
    "R": "cone apex near r_in (aperture near pi/2), K = 0.1, 1, 10",
}

# argument kinds: P point, T tangent vector (any size), V vector (gyration z, transport v,
# project x), S per-point scalar, M dense matrices, W diagonal, B blocks, N bands, X cone apex
# (a point with sqrt(c)|x| >= r_in), Q Lorentz point (time first)
SIGNATURES: dict[str, str] = {op: SPECS[op].kinds for op in FAMILY_OPS}
OPS: tuple[str, ...] = FAMILY_OPS

#: Aperture scale of the cone cases (Ganea et al.'s default; family R varies it).
CONE_K = 0.1
# op categories, read off the argument kinds of the registry
_CONE_OPS = {op for op, kinds in SIGNATURES.items() if kinds.startswith("X")}
_LORENTZ_OPS = {"to_lorentz", "from_lorentz", "lorentz_dist"}
_PAIR_OPS = {op for op, kinds in SIGNATURES.items() if kinds[:2] in ("PP", "XP", "QQ")}
_MATVEC_OPS = {op for op, kinds in SIGNATURES.items() if kinds[:1] in "MWBN" and kinds[1:] == "P"}
_DENSE_OPS = {op for op, kinds in SIGNATURES.items() if kinds in ("W", "B", "N")}


@dataclass(frozen=True)
class Case:
    """One batch of valid inputs: ``getattr(reference, op)(*args, c=c, **kwargs)``."""

    op: str
    family: str
    label: str
    args: tuple[Any, ...]
    c: float
    kwargs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class InvalidCase:
    """Inputs that must raise ``ValueError`` whose message starts with ``argument``."""

    op: str
    label: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    argument: str


# --------------------------------------------------------------------------- building blocks


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> Array:
    """``n`` random unit vectors in R^d (Gaussian directions), shape ``(n, d)``."""
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _pull_inside(x: Array, c: float) -> Array:
    """Pull every row on or outside the ball inside: rows far outside are first rescaled onto
    the sphere, then all are shrunk by whole ulps (factor ``1 - j 2**-53``)."""
    x = np.array(x, dtype=np.float64)
    far = conorm(scaled(x), c).hi < -1e-12  # well outside: first rescale onto the sphere
    x[far] = x[far] / (math.sqrt(c) * np.linalg.norm(x[far], axis=-1, keepdims=True))
    for _ in range(10_000):
        bad = conorm(scaled(x), c).hi <= 0.0
        if not bad.any():
            return x
        x[bad] = x[bad] * np.nextafter(1.0, 0.0)
    raise RuntimeError("could not pull points inside the ball")  # pragma: no cover


def ball_points(directions: Array, one_minus_r: Array | float, c: float) -> Array:
    """Points ``(1 - one_minus_r) / sqrt(c) * direction`` (rows of unit ``directions``),
    strictly inside the ball at their float64 values."""
    r = 1.0 - np.asarray(one_minus_r, dtype=np.float64)
    x = directions * (np.reshape(r, (-1, 1)) / math.sqrt(c))
    return _pull_inside(x, c)


def random_points(
    rng: np.random.Generator, n: int, d: int, c: float, rad_max: float = 36.0
) -> Array:
    """Points with hyperbolic radius uniform in ``[0, rad_max / sqrt(c)]`` (``sqrt(c)|x| =
    tanh(Rad sqrt(c) / 2)``)."""
    rad = rng.uniform(0.0, rad_max, n)
    one_minus_r = 2.0 / (np.exp(rad) + 1.0)  # 1 - tanh(rad / 2), relatively accurate
    return ball_points(unit_vectors(rng, n, d), one_minus_r, c)


def _tangents(rng: np.random.Generator, n: int, d: int, c: float, size: Array | float) -> Array:
    """Tangent vectors with ``sqrt(c)|u| = size``."""
    return unit_vectors(rng, n, d) * (
        np.reshape(np.asarray(size, dtype=np.float64), (-1, 1)) / math.sqrt(c)
    )


def _const(value: Array) -> Callable[[], Array]:
    """A filler that returns ``value`` (fixed before the case is built)."""
    return lambda: value


def _subnormal_vectors(n: int, d: int) -> Array:
    tiny = np.array([5e-324, -1e-320, 2.5e-310, 0.0, -5e-324, 1e-315, 0.0, 3e-322])
    out = np.resize(tiny, (n, d)).astype(np.float64)
    out[1::2] = np.roll(out[1::2], 1, axis=-1)
    return out


# --------------------------------------------------------------------------- argument fillers


class _Filler:
    """Fills each argument kind of an op for one family batch."""

    def __init__(self, rng: np.random.Generator, n: int, d: int, c: float) -> None:
        self.rng, self.n, self.d, self.c = rng, n, d, c

    def point(self) -> Array:
        return random_points(self.rng, self.n, self.d, self.c)

    def tangent(self) -> Array:
        size = 10.0 ** self.rng.uniform(-3, 1.3, self.n)
        return _tangents(self.rng, self.n, self.d, self.c, size)

    def vector(self) -> Array:
        return self.rng.standard_normal((self.n, self.d)) * 10.0 ** self.rng.uniform(
            -3, 3, (self.n, 1)
        )

    def scalar(self) -> Array:
        return self.rng.standard_normal(self.n) * 3.0

    def matrix(self) -> Array:
        return self.rng.standard_normal((self.n, self.d, self.d)) / math.sqrt(self.d)

    def diagonal(self) -> Array:
        return self.rng.standard_normal((self.n, self.d))

    def blocks(self) -> Array:
        b = 4 if self.d % 4 == 0 else 1
        return self.rng.standard_normal((self.d // b, b, b)) / 2.0

    def bands(self) -> Array:
        return self.rng.standard_normal((5, self.d)) / 2.0

    def apex(self, K: float = CONE_K) -> Array:
        """Points with ``sqrt(c)|x|`` from ``r_in(K)`` to the boundary (radius uniform)."""
        r_in = 2.0 * K / (1.0 + math.sqrt(1.0 + 4.0 * K * K))
        rad_in = 2.0 * math.atanh(r_in)
        rad = self.rng.uniform(rad_in * (1 + 1e-9), 36.0, self.n)
        return ball_points(
            unit_vectors(self.rng, self.n, self.d), 2.0 / (np.exp(rad) + 1.0), self.c
        )

    def lorentz(self) -> Array:
        return lorentz_points(random_points(self.rng, self.n, self.d, self.c), self.c)

    def fill(self, kind: str) -> Array:
        return {
            "X": self.apex,
            "Q": self.lorentz,
            "P": self.point,
            "T": self.tangent,
            "V": self.vector,
            "S": self.scalar,
            "M": self.matrix,
            "W": self.diagonal,
            "B": self.blocks,
            "N": self.bands,
        }[kind]()


def _default_args(op: str, f: _Filler, **override: Callable[[], Array]) -> tuple[Array, ...]:
    out = []
    seen: dict[str, int] = {}
    for kind in SIGNATURES[op]:
        seen[kind] = seen.get(kind, 0) + 1
        key = f"{kind}{seen[kind]}"
        maker = override.get(key) or override.get(kind)
        out.append(maker() if maker is not None else f.fill(kind))
    return tuple(out)


def lorentz_points(x: Array, c: float) -> Array:
    """Hyperboloid points (time first) of ball points ``x`` (float64, via the reference)."""
    from hyperet.reference.lorentz import to_lorentz

    return to_lorentz(x, c=c)


def _kwargs(op: str, rng: np.random.Generator) -> dict[str, float]:
    if op in ("entailment_aperture", "entailment_energy"):
        return {"K": CONE_K}
    if op == "project":
        return {"eps": float(rng.choice([0.0, 1e-15, 1e-5, 0.1]))}
    return {}


# --------------------------------------------------------------------------- families


def _family_cases(op: str, family: str, rng: np.random.Generator, n: int, d: int) -> list[Case]:
    sig = SIGNATURES[op]
    out: list[Case] = []

    def add(
        label: str,
        c: float,
        kwargs: dict[str, float] | None = None,
        **override: Callable[[], Array],
    ) -> None:
        f = _Filler(rng, n, d, c)
        args = _default_args(op, f, **override)
        out.append(Case(op, family, label, args, c, _kwargs(op, rng) if kwargs is None else kwargs))

    if op in _CONE_OPS or op in _LORENTZ_OPS:
        _geometry_family(op, family, rng, n, d, add)
        return out

    if op in _DENSE_OPS:
        if family == "random":
            add("random", 1.0)
        elif family == "D":
            add(
                "zeros",
                1.0,
                W=lambda: np.zeros((n, d)),
                B=lambda: np.zeros((d // 4, 4, 4)),
                N=lambda: np.zeros((5, d)),
            )
        return out

    if family == "random":
        for c in (1.0, 1e-6, 1e-2, 0.37, 10.0, 1e3):
            add(f"c={c:g}", c)
    elif family == "A":
        for k in range(1, 17):
            c = 1.0

            def boundary(k: int = k, c: float = c) -> Array:
                return ball_points(unit_vectors(rng, n, d), 10.0**-k, c)

            def to_boundary(k: int = k, c: float = c) -> Array:
                return _tangents(rng, n, d, c, np.arctanh(1.0 - 10.0**-k) if k < 16 else 19.0)

            def big_vec(k: int = k, c: float = c) -> Array:
                return unit_vectors(rng, n, d) * (1.0 - 10.0**-k) / math.sqrt(c)

            add(f"k={k}", c, P=boundary, T=to_boundary, V=big_vec)
    elif family == "B":
        for e in (8, 20, 50, 100, 200, 300):

            def tiny(e: int = e) -> Array:
                return unit_vectors(rng, n, d) * 10.0**-e

            add(f"|x|=1e-{e}", 1.0, P=tiny, T=tiny, V=tiny)
    elif family == "C":
        for c in (1.0, 1e-6):
            sub = lambda: _subnormal_vectors(n, d)  # noqa: E731
            add(f"subnormal c={c:g}", c, P1=sub, T=sub, V=sub)
            if "P" in sig and sig.count("P") > 1:
                add(f"subnormal pair c={c:g}", c, P=sub)
    elif family == "D":
        zero = lambda: np.zeros((n, d))  # noqa: E731
        add("all zero", 1.0, P=zero, T=zero, V=zero, S=lambda: np.zeros(n))
        if len(sig) > 1 and "P" in sig:
            add("first point zero", 1.0, P1=zero)
            add("second argument zero", 1.0, P2=zero, T=zero, V=zero)
    elif family == "E":
        if not set(sig) & {"T", "V", "S"}:
            return out
        for size in (5.0, 19.1, 25.0, 1e10, 1e154, 1e300):
            for c in (1.0, 1e3):

                def huge(size: float = size, c: float = c) -> Array:
                    # transport scales by lambda_x / lambda_y (up to ~1e16 here): stay finite
                    return _tangents(rng, n, d, c, min(size, 1e290) if op == "transport" else size)

                add(
                    f"sqrt(c)|u|={size:g} c={c:g}",
                    c,
                    T=huge,
                    V=huge,
                    S=_const(np.full(n, size)),
                )
    elif family == "F":
        for c in (1e-12, 1e-9, 1e-6, 1e-3, 1.0, 10.0, 1e3):
            add(f"c={c:g}", c)
    elif family == "G":
        if op not in _PAIR_OPS and op != "expmap":
            return out
        for k in (2, 5, 8, 12, 15, 16):
            dirs = unit_vectors(rng, n, d)
            x = ball_points(dirs, 10.0**-k, 1.0)
            if op == "expmap":
                add(f"k={k}", 1.0, P=_const(x), T=_const(-x * 1e3))
            else:
                add(f"k={k}", 1.0, P1=_const(x), P2=_const(-x))
    elif family == "H":
        if op not in _PAIR_OPS:
            return out
        for delta in (1e-4, 1e-8, 1e-12, 1e-15):
            for k in (1, 8, 15):
                x = ball_points(unit_vectors(rng, n, d), 10.0**-k, 1.0)
                y = _pull_inside(x * (1.0 + delta * rng.standard_normal((n, d))), 1.0)
                add(f"delta={delta:g} 1-r=1e-{k}", 1.0, P1=_const(x), P2=_const(y))
    elif family == "I":
        if op not in _PAIR_OPS and op != "expmap":
            return out
        for k in (4, 8, 12, 15):

            def near(k: int = k) -> Array:
                return ball_points(unit_vectors(rng, n, d), 10.0**-k * rng.uniform(1, 9, n), 1.0)

            add(
                f"1-r=1e-{k}",
                1.0,
                P=near,
                T=lambda: _tangents(rng, n, d, 1.0, 10.0 ** rng.uniform(-16, -8, n)),
            )
    elif family == "J":
        if op != "mobius_scalar_mul":
            return out
        for r in (0.0, 1.0, -1.0, 0.5, 1e3, -1e3, 1e6):
            for k in (3, 15):
                x = ball_points(unit_vectors(rng, n, d), 10.0**-k, 1.0)
                add(f"r={r:g} 1-r=1e-{k}", 1.0, S=_const(np.full(n, r)), P=_const(x))
    elif family == "K":
        if op not in _MATVEC_OPS:
            return out
        _matrix_family(op, rng, n, d, add)
    return out


def _geometry_family(
    op: str,
    family: str,
    rng: np.random.Generator,
    n: int,
    d: int,
    add: Callable[..., None],
) -> None:
    """The families that apply to the cone and Lorentz ops (their domains differ: an apex is
    never 0 nor inside ``r_in``, ``y != x``; Lorentz points are ``to_lorentz`` of ball points)."""
    lorentz = op in _LORENTZ_OPS
    kw = {"K": CONE_K} if op in ("entailment_aperture", "entailment_energy") else {}

    def as_arg(x: Array, c: float) -> Array:
        return lorentz_points(x, c) if op in ("from_lorentz", "lorentz_dist") else x

    def pair(x: Array, y: Array, c: float, label: str) -> None:
        """A case from ball points: the apex / first point ``x`` and second point ``y``."""
        if op == "lorentz_dist":
            add(label, c, kw, Q1=_const(lorentz_points(x, c)), Q2=_const(lorentz_points(y, c)))
        elif op == "from_lorentz":
            add(label, c, kw, Q=_const(lorentz_points(x, c)))
        elif op in ("entailment_angle", "entailment_energy"):
            add(label, c, kw, X=_const(x), P=_const(y))
        else:
            add(label, c, kw, X=_const(x), P=_const(x))

    if family in ("random", "F"):
        sweep = (
            (1.0, 1e-6, 1e-2, 0.37, 10.0, 1e3) if family == "random" else (1e-12, 1e-6, 1.0, 1e3)
        )
        for c in sweep:
            add(f"c={c:g}", c, kw)
    elif family == "A":
        for k in (1, 4, 8, 12, 15, 16):
            x = ball_points(unit_vectors(rng, n, d), 10.0**-k, 1.0)
            y = ball_points(unit_vectors(rng, n, d), 10.0**-k * rng.uniform(1, 9, n), 1.0)
            pair(x, y, 1.0, f"1-r=1e-{k}")
    elif family == "B":
        for e in (8, 50, 150):
            tiny = unit_vectors(rng, n, d) * 10.0**-e
            if op in _PAIR_OPS:
                pair(_Filler(rng, n, d, 1.0).apex(), tiny, 1.0, f"|y|=1e-{e}")
            elif lorentz:
                pair(tiny, tiny, 1.0, f"|x|=1e-{e}")
    elif family == "D":
        zero = np.zeros((n, d))
        if op in _PAIR_OPS:
            pair(_Filler(rng, n, d, 1.0).apex(), zero, 1.0, "y = 0")
        elif lorentz:
            pair(zero, zero, 1.0, "origin")
    elif family == "G" and op in _PAIR_OPS:
        for k in (2, 8, 15):
            x = ball_points(unit_vectors(rng, n, d), 10.0**-k, 1.0)
            pair(x, -x, 1.0, f"antipodal 1-r=1e-{k}")
    elif family == "H" and op in _PAIR_OPS:
        for delta in (1e-4, 1e-8, 1e-12, 1e-15):
            for k in (1, 8, 15):
                x = ball_points(unit_vectors(rng, n, d), 10.0**-k, 1.0)
                y = _pull_inside(x * (1.0 + delta * rng.standard_normal((n, d))), 1.0)
                y[np.all(y == x, axis=-1)] *= 1 - 2.0**-52  # never y = x exactly
                pair(x, _pull_inside(y, 1.0), 1.0, f"delta={delta:g} 1-r=1e-{k}")
    elif family == "N" and op in _PAIR_OPS:
        for offset in (1e-3, 1e-8, 1e-15, 1e-30, 1e-300, 0.0):
            for scale in (0.3, 1.5):
                x = ball_points(unit_vectors(rng, n, d), rng.uniform(0.05, 0.6, n), 1.0)
                perp = rng.standard_normal((n, d))
                perp -= np.sum(perp * x, -1, keepdims=True) / np.sum(x * x, -1, keepdims=True) * x
                y = _pull_inside(scale * x + offset * perp, 1.0)
                pair(x, y, 1.0, f"axis offset {offset:g} scale {scale:g}")
    elif family == "R" and op in ("entailment_aperture", "entailment_energy"):
        for K in (0.1, 1.0, 10.0):
            r_in = 2.0 * K / (1.0 + math.sqrt(1.0 + 4.0 * K * K))
            for k in (1, 4, 8, 12, 15):
                x = _outside_core(unit_vectors(rng, n, d) * (r_in + (1.0 - r_in) * 10.0**-k), K)
                y = random_points(rng, n, d, 1.0)
                kwr = {"K": K}
                if op in _PAIR_OPS:
                    add(f"K={K:g} r=r_in+(1-r_in)1e-{k}", 1.0, kwr, X=_const(x), P=_const(y))
                else:
                    add(f"K={K:g} r=r_in+(1-r_in)1e-{k}", 1.0, kwr, X=_const(x))


def _outside_core(x: Array, K: float) -> Array:
    """Push rows whose rounded radius fell inside ``r_in`` out by whole ulps."""
    from hyperet.reference.cones import entailment_aperture

    x = np.array(x, dtype=np.float64)
    for i in range(x.shape[0]):
        for _ in range(64):
            try:
                entailment_aperture(x[i], c=1.0, K=K)
                break
            except ValueError:
                x[i] *= 1.0 + 2.0**-52
    return x


def _matrix_family(
    op: str, rng: np.random.Generator, n: int, d: int, add: Callable[..., None]
) -> None:
    """Family K for the dense and structured Möbius products."""
    zero_m = {
        "mobius_matvec": lambda: np.zeros((n, d, d)),
        "diagonal_matvec": lambda: np.zeros((n, d)),
        "block_diagonal_matvec": lambda: np.zeros((d // 4, 4, 4)),
        "banded_matvec": lambda: np.zeros((5, d)),
    }[op]
    kind = SIGNATURES[op][0]
    add("M = 0", 1.0, **{kind: zero_m})
    if op == "mobius_matvec":
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        add("orthogonal", 1.0, M=lambda: np.broadcast_to(q, (n, d, d)).copy())
        # x in ker M: M has rows orthogonal to x (dyadic entries so Mx = 0 exactly)
        x = np.zeros((n, d))
        x[:, 0] = 0.25
        x[:, 1] = -0.25
        m = np.zeros((n, d, d))
        m[:, :, 0] = 1.0
        m[:, :, 1] = 1.0
        m[:, :, 2:] = 0.0
        add("x in ker M", 1.0, M=lambda: m, P=lambda: x)
        add("gain 1e8", 1.0, M=lambda: rng.standard_normal((n, d, d)) * 1e8)
        add("gain 1e-8", 1.0, M=lambda: rng.standard_normal((n, d, d)) * 1e-8)
        add("n != d (n = 3)", 1.0, M=lambda: rng.standard_normal((n, 3, d)))
        add(
            "boundary x, contraction",
            1.0,
            M=lambda: rng.standard_normal((n, d, d)) * 1e-3,
            P=lambda: ball_points(unit_vectors(rng, n, d), 1e-15, 1.0),
        )
    elif op == "diagonal_matvec":
        add("gain 1e8", 1.0, W=lambda: rng.standard_normal((n, d)) * 1e8)
        add("signs (orthogonal)", 1.0, W=lambda: rng.choice([-1.0, 1.0], (n, d)))
        add(
            "boundary x",
            1.0,
            W=lambda: rng.uniform(0.5, 1.5, (n, d)),
            P=lambda: ball_points(unit_vectors(rng, n, d), 1e-12, 1.0),
        )
    elif op == "block_diagonal_matvec":
        add("gain 1e8", 1.0, B=lambda: rng.standard_normal((d // 4, 4, 4)) * 1e8)
        add("b = 1", 1.0, B=lambda: rng.standard_normal((d, 1, 1)))
        add("b = d", 1.0, B=lambda: rng.standard_normal((1, d, d)))
    else:
        add("gain 1e8", 1.0, N=lambda: rng.standard_normal((5, d)) * 1e8)
        add("k = 0", 1.0, N=lambda: rng.standard_normal((1, d)))
        add("k = d - 1", 1.0, N=lambda: rng.standard_normal((2 * d - 1, d)))


def cases(
    op: str,
    *,
    seed: int = 0,
    n: int = 4,
    d: int = 8,
    families: tuple[str, ...] | None = None,
) -> list[Case]:
    """Every valid case of ``op`` over ``families`` (default: all that apply).

    Parameters
    ----------
    op : str
        A name from :data:`OPS`.
    seed : int
        Seed of the generator; the same seed gives the same cases.
    n : int
        Points per case (the batch size).
    d : int
        Vector dimension (a multiple of 4, for the block layouts).
    families : tuple of str, optional
        Subset of :data:`FAMILIES` keys.
    """
    if op not in SIGNATURES:
        raise ValueError(f"op: unknown operation {op!r}")
    if d % 4:
        raise ValueError(f"d: must be a multiple of 4, got {d}")
    out: list[Case] = []
    for i, family in enumerate(families or tuple(FAMILIES)):
        if family not in FAMILIES:
            raise ValueError(f"families: unknown family {family!r}")
        rng = np.random.default_rng([seed, i, OPS.index(op)])
        out.extend(_family_cases(op, family, rng, n, d))
    return out


# --------------------------------------------------------------------------- family L


def invalid_cases(op: str, *, d: int = 4) -> list[InvalidCase]:
    """Family L for ``op``: every argument in turn made invalid (and ``c`` itself)."""
    if op not in SIGNATURES:
        raise ValueError(f"op: unknown operation {op!r}")
    rng = np.random.default_rng(0)
    f = _Filler(rng, 2, d, 1.0)
    base = _default_args(op, f)
    names = _ARG_NAMES[op]
    kw: dict[str, Any] = {} if op in _DENSE_OPS else {"c": 1.0}
    if op == "project":
        kw["eps"] = 0.0
    if op in ("entailment_aperture", "entailment_energy"):
        kw["K"] = CONE_K
    out: list[InvalidCase] = []

    def with_arg(i: int, value: Any) -> tuple[Any, ...]:
        return tuple(value if j == i else a for j, a in enumerate(base))

    for i, (kind, name) in enumerate(zip(SIGNATURES[op], names, strict=True)):
        a = np.array(base[i], dtype=np.float64)
        for bad_value, what in ((np.nan, "NaN"), (np.inf, "inf")):
            bad = a.copy()
            bad.flat[0] = bad_value
            out.append(InvalidCase(op, f"{name} contains {what}", with_arg(i, bad), kw, name))
        out.append(
            InvalidCase(op, f"{name} integer dtype", with_arg(i, a.astype(np.int64)), kw, name)
        )
        out.append(
            InvalidCase(op, f"{name} complex dtype", with_arg(i, a.astype(np.complex128)), kw, name)
        )
        if kind in "PX":
            on = np.zeros_like(a)
            on[..., 0] = 1.0  # exactly on the boundary for c = 1
            out.append(InvalidCase(op, f"{name} on the boundary", with_arg(i, on), kw, name))
            out.append(InvalidCase(op, f"{name} outside the ball", with_arg(i, 2.0 * on), kw, name))
        if kind in "PTVXQ" and i > 0 and SIGNATURES[op][0] in "PTVXQ":
            short = a[..., :-1]
            out.append(InvalidCase(op, f"{name} wrong vector length", with_arg(i, short), kw, name))
    if "c" in kw:
        for bad_c in (0.0, -1.0, math.nan, math.inf):
            out.append(InvalidCase(op, f"c = {bad_c}", base, {**kw, "c": bad_c}, "c"))
    if op == "project":
        for bad_eps in (-0.1, 1.0, math.nan):
            out.append(InvalidCase(op, f"eps = {bad_eps}", base, {**kw, "eps": bad_eps}, "eps"))
    out.extend(_geometry_invalid(op, base, kw, d))
    return out


def _geometry_invalid(
    op: str, base: tuple[Any, ...], kw: dict[str, Any], d: int
) -> list[InvalidCase]:
    """Domain errors of the cone and Lorentz ops: apex 0 or inside r_in, y = x, bad K; a
    Lorentz point with a non-positive or inconsistent time component."""
    out: list[InvalidCase] = []
    if op in _CONE_OPS:
        x = np.array(base[0], dtype=np.float64)
        rest = base[1:]
        out.append(InvalidCase(op, "apex x = 0", (np.zeros_like(x), *rest), kw, "x"))
        core = unit_vectors(np.random.default_rng(1), x.shape[0], d) * 0.05  # r_in(0.1) = 0.099
        if op != "entailment_angle":
            out.append(InvalidCase(op, "apex inside r_in", (core, *rest), kw, "x"))
            for bad_k in (0.0, -1.0, math.nan):
                out.append(InvalidCase(op, f"K = {bad_k}", base, {**kw, "K": bad_k}, "K"))
        if len(base) > 1:
            out.append(InvalidCase(op, "y = x", (x, x.copy()), kw, "y"))
    if op in ("from_lorentz", "lorentz_dist"):
        v = np.array(base[0], dtype=np.float64)
        name = _ARG_NAMES[op][0]
        for label, t in (("time <= 0", -v[..., 0]), ("time inconsistent", 2.0 * v[..., 0])):
            bad = v.copy()
            bad[..., 0] = t
            out.append(InvalidCase(op, f"{name} {label}", (bad, *base[1:]), kw, name))
    return out


_ARG_NAMES: dict[str, tuple[str, ...]] = {
    "conformal_factor": ("x",),
    "mobius_add": ("x", "y"),
    "mobius_scalar_mul": ("r", "x"),
    "mobius_matvec": ("m", "x"),
    "expmap0": ("u",),
    "logmap0": ("x",),
    "expmap": ("x", "u"),
    "logmap": ("x", "y"),
    "dist": ("x", "y"),
    "dist0": ("x",),
    "gyration": ("a", "b", "z"),
    "transport": ("x", "y", "v"),
    "project": ("x",),
    "diagonal_matvec": ("w", "x"),
    "block_diagonal_matvec": ("blocks", "x"),
    "banded_matvec": ("bands", "x"),
    "diagonal_to_dense": ("w",),
    "block_diagonal_to_dense": ("blocks",),
    "banded_to_dense": ("bands",),
    "entailment_aperture": ("x",),
    "entailment_angle": ("x", "y"),
    "entailment_energy": ("x", "y"),
    "to_lorentz": ("x",),
    "from_lorentz": ("v",),
    "lorentz_dist": ("u", "v"),
}
