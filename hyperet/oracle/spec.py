"""The oracle's op registry: every op it knows, declared once.

Each :class:`OpSpec` says what one op is to the oracle: its name (the golden file stem and the
results key), its inputs in call order and their per-case shapes (its arity), which of them the
op takes as keywords, the argument kinds the adversarial families draw
(:mod:`hyperet.oracle.families`), the formula and parameter layout written into every golden
file, and the per-case conditioning allowance of the contract (:mod:`hyperet.oracle.contract`).

Every list of ops elsewhere derives from :data:`SPECS`:

- :data:`GOLDEN_OPS` (golden files, the contract, ``hyperet oracle`` commands): the
  reference's ops plus ``hra_*``, the HRA adapter's function ``u -> logmap0(M (x) expmap0(u))``
  for the three structures;
- :data:`FAMILY_OPS` (adversarial families, ``python -m hyperet.oracle.report``): the
  reference's ops, ``*_to_dense`` included, ``hra_*`` excluded;

The implementations are found by name: :meth:`OpSpec.reference` calls ``hyperet.reference``'s
function of the same name (the HRA chain through ``*_to_dense`` for ``hra_*``), and
:mod:`hyperet.oracle.implementations` calls ``hyperet.ops``' (for ``hra_*``:
:class:`hyperet.nn.HyperbolicRadiusAdjustment` in ``mode="literal"``) with the same
convention, :meth:`OpSpec.call`. This module imports numpy and :mod:`hyperet.reference` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hyperet import reference

#: Vector dimension of every golden file.
DIM = 8
#: Block size and bandwidth of the structured golden layouts.
BLOCK = 4
BANDWIDTH = 2

DIAGONAL_LAYOUT = "w of shape (d,): M = diag(w)"
BLOCK_LAYOUT = (
    f"blocks of shape (d // b, b, b) with b = {BLOCK}: block i acts on x[i*b:(i+1)*b], "
    "(M x)[i*b + r] = sum_s blocks[i, r, s] x[i*b + s]"
)
BANDED_LAYOUT = (
    f"bands of shape (2k + 1, d) with k = {BANDWIDTH}: M[i, i + j - k] = bands[j, i]; "
    "entries whose column i + j - k falls outside [0, d) are ignored"
)

#: Structure -> name of its parameter tensor.
STRUCTURE_PARAMS: dict[str, str] = {"diagonal": "w", "block": "blocks", "banded": "bands"}

#: Structured parameter name -> the op converting it to its dense matrix.
DENSE_OPS: dict[str, str] = {
    "w": "diagonal_to_dense",
    "blocks": "block_diagonal_to_dense",
    "bands": "banded_to_dense",
}
#: Structured parameter name -> its dense matrix (hyperet.reference's converters).
TO_DENSE: dict[str, Callable[[Any], np.ndarray]] = {
    name: getattr(reference, op) for name, op in DENSE_OPS.items()
}

Case = Mapping[str, Any]  # one case's inputs by name (arrays or floats), without c

_PAIR_RULE = "a = max(1, lambda_x lambda_y / 4)"


@dataclass(frozen=True)
class OpSpec:
    """One op of the oracle.

    Attributes
    ----------
    op:
        The name: ``hyperet.reference``'s and ``hyperet.ops``' function, golden file stem,
        results key.
    inputs:
        Input names in call order (``c`` is keyword-only and always passed, except to the
        ``*_to_dense`` converters).
    shapes:
        Per-case shape of each input and of ``expected`` (``"d"`` is :data:`DIM`).
    formula:
        What ``expected`` is, in words and symbols.
    kinds:
        Argument kinds the families draw, one letter per positional input (see
        :mod:`hyperet.oracle.families`); empty for ops without adversarial families (HRA).
    keywords:
        Inputs the op takes as keyword arguments (a float each: ``eps``, ``K``).
    layout:
        The parameter layout, for structured products and HRA.
    structure:
        For ``hra_*``: the structure of the matrix (``"diagonal"``, ``"block"``, ``"banded"``).
    conditioned:
        The inputs whose conformal factors enter the contract's allowance
        ``max(1, lambda_1 lambda_2 / 4)``.
    allowance:
        The allowance rule written into the golden metadata.
    golden:
        Whether the op has golden vectors (not the ``*_to_dense`` converters).
    """

    op: str
    inputs: tuple[str, ...]
    shapes: Mapping[str, tuple[int, ...]]
    formula: str
    kinds: str = ""
    keywords: tuple[str, ...] = ()
    layout: str = ""
    structure: str = ""
    conditioned: tuple[str, ...] = ()
    allowance: str = "a = 1"
    golden: bool = True

    @property
    def signature(self) -> str:
        """E.g. ``mobius_add(x, y, *, c) -> expected``."""
        return f"{self.op}({', '.join(self.inputs)}, *, c) -> expected"

    @property
    def arity(self) -> int:
        """Number of inputs (``c`` not counted)."""
        return len(self.inputs)

    @property
    def positional(self) -> tuple[str, ...]:
        """The inputs passed positionally, in order."""
        return tuple(name for name in self.inputs if name not in self.keywords)

    @property
    def scalar(self) -> bool:
        """Whether the op returns one scalar per case (graded as a scalar, not a vector)."""
        return self.shapes["expected"] == ()

    def call(
        self,
        fn: Callable[..., Any],
        case: Case,
        c: float,
        convert: Callable[[Any], Any] = np.asarray,
        **extra: Any,
    ) -> Any:
        """``fn(*positional inputs, c=c, **keyword inputs, **extra)`` on one case.

        ``convert`` turns each positional input into what ``fn`` takes (a torch tensor for
        hyperet.ops); keyword inputs are passed as Python floats.
        """
        args = (convert(case[name]) for name in self.positional)
        keywords = {name: float(case[name]) for name in self.keywords}
        return fn(*args, c=c, **keywords, **extra)

    def reference(self, case: Case, c: float) -> Any:
        """The float64 reference's value on one case (``hra_*``: the chain through the dense
        matrix, which is how the golden outputs are defined)."""
        if self.structure:
            name = self.inputs[0]
            x = reference.expmap0(case["u"], c=c)
            return reference.logmap0(
                reference.mobius_matvec(TO_DENSE[name](case[name]), x, c=c), c=c
            )
        return self.call(getattr(reference, self.op), case, c)


_V = (DIM,)
_S: tuple[int, ...] = ()
_L = (DIM + 1,)  # a Lorentz point, time first
_M = (DIM, DIM)
_BLOCKS = (DIM // BLOCK, BLOCK, BLOCK)
_BANDS = (2 * BANDWIDTH + 1, DIM)


def _hra(structure: str, layout: str, shape: tuple[int, ...]) -> OpSpec:
    name = STRUCTURE_PARAMS[structure]
    matrix = {"diagonal": "diag(w)", "block": "blockdiag(blocks)", "banded": "banded(bands)"}
    return OpSpec(
        f"hra_{structure}",
        (name, "u"),
        {name: shape, "u": _V, "expected": _V},
        f"HRA(u) = logmap0({matrix[structure]} (x) expmap0(u)) (= W u in exact arithmetic)",
        layout=layout,
        structure=structure,
        allowance="a = max(1, (lambda_p + lambda_q) / 4), p = expmap0(u), q = M (x) p",
    )


#: Every op, in the order of the golden files' op ids and of the reports.
SPECS: dict[str, OpSpec] = {
    spec.op: spec
    for spec in [
        OpSpec(
            "conformal_factor",
            ("x",),
            {"x": _V, "expected": _S},
            "lambda_x = 2 / (1 - c|x|^2)",
            kinds="P",
        ),
        OpSpec(
            "mobius_add",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _V},
            "x (+) y = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) / (1 + 2c<x,y> + c^2|x|^2|y|^2)",
            kinds="PP",
            conditioned=("x", "y"),
            allowance=_PAIR_RULE,
        ),
        OpSpec(
            "mobius_scalar_mul",
            ("r", "x"),
            {"r": _S, "x": _V, "expected": _V},
            "r (x) x = tanh(r artanh(sqrt(c)|x|)) x / (sqrt(c)|x|)",
            kinds="SP",
        ),
        OpSpec(
            "mobius_matvec",
            ("m", "x"),
            {"m": _M, "x": _V, "expected": _V},
            "M (x) x = tanh(|Mx|/|x| artanh(sqrt(c)|x|)) Mx / (sqrt(c)|Mx|), m[i, j] = M_ij",
            kinds="MP",
        ),
        OpSpec(
            "expmap0",
            ("u",),
            {"u": _V, "expected": _V},
            "tanh(sqrt(c)|u|) u / (sqrt(c)|u|)",
            kinds="T",
        ),
        OpSpec(
            "logmap0",
            ("x",),
            {"x": _V, "expected": _V},
            "artanh(sqrt(c)|x|) x / (sqrt(c)|x|)",
            kinds="P",
        ),
        OpSpec(
            "expmap",
            ("x", "u"),
            {"x": _V, "u": _V, "expected": _V},
            "x (+) tanh(sqrt(c) lambda_x |u| / 2) u / (sqrt(c)|u|)",
            kinds="PT",
        ),
        OpSpec(
            "logmap",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _V},
            "(2 / (sqrt(c) lambda_x)) artanh(sqrt(c)|z|) z / |z|, z = (-x) (+) y",
            kinds="PP",
        ),
        OpSpec(
            "dist",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _S},
            "(2 / sqrt(c)) artanh(sqrt(c)|(-x) (+) y|)",
            kinds="PP",
        ),
        OpSpec(
            "dist0",
            ("x",),
            {"x": _V, "expected": _S},
            "(2 / sqrt(c)) artanh(sqrt(c)|x|)",
            kinds="P",
        ),
        OpSpec(
            "gyration",
            ("a", "b", "z"),
            {"a": _V, "b": _V, "z": _V, "expected": _V},
            "gyr[a, b] z = (-(a (+) b)) (+) (a (+) (b (+) z))",
            kinds="PPV",
            conditioned=("a", "b"),
            allowance="a = max(1, lambda_a lambda_b / 4)",
        ),
        OpSpec(
            "transport",
            ("x", "y", "v"),
            {"x": _V, "y": _V, "v": _V, "expected": _V},
            "parallel transport of v from T_x to T_y: (lambda_x / lambda_y) gyr[y, -x] v",
            kinds="PPV",
            conditioned=("x", "y"),
            allowance=_PAIR_RULE,
        ),
        OpSpec(
            "project",
            ("x", "eps"),
            {"x": _V, "eps": _S, "expected": _V},
            "x if sqrt(c)|x| <= 1 - eps, else (1 - eps) x / (sqrt(c)|x|)",
            kinds="V",
            keywords=("eps",),
        ),
        OpSpec(
            "diagonal_matvec",
            ("w", "x"),
            {"w": _V, "x": _V, "expected": _V},
            "diag(w) (x) x",
            kinds="WP",
            layout=DIAGONAL_LAYOUT,
        ),
        OpSpec(
            "block_diagonal_matvec",
            ("blocks", "x"),
            {"blocks": _BLOCKS, "x": _V, "expected": _V},
            "blockdiag(blocks) (x) x (norms are global, not per block)",
            kinds="BP",
            layout=BLOCK_LAYOUT,
        ),
        OpSpec(
            "banded_matvec",
            ("bands", "x"),
            {"bands": _BANDS, "x": _V, "expected": _V},
            "banded(bands) (x) x",
            kinds="NP",
            layout=BANDED_LAYOUT,
        ),
        OpSpec(
            "diagonal_to_dense",
            ("w",),
            {"w": _V, "expected": _M},
            "diag(w)",
            kinds="W",
            layout=DIAGONAL_LAYOUT,
            golden=False,
        ),
        OpSpec(
            "block_diagonal_to_dense",
            ("blocks",),
            {"blocks": _BLOCKS, "expected": _M},
            "blockdiag(blocks)",
            kinds="B",
            layout=BLOCK_LAYOUT,
            golden=False,
        ),
        OpSpec(
            "banded_to_dense",
            ("bands",),
            {"bands": _BANDS, "expected": _M},
            "banded(bands)",
            kinds="N",
            layout=BANDED_LAYOUT,
            golden=False,
        ),
        _hra("diagonal", DIAGONAL_LAYOUT, _V),
        _hra("block", BLOCK_LAYOUT, _BLOCKS),
        _hra("banded", BANDED_LAYOUT, _BANDS),
        OpSpec(
            "entailment_aperture",
            ("x", "K"),
            {"x": _V, "K": _S, "expected": _S},
            "psi = arcsin(K (1 - c|x|^2) / (sqrt(c)|x|)), sqrt(c)|x| >= r_in(K)",
            kinds="X",
            keywords=("K",),
        ),
        OpSpec(
            "entailment_angle",
            ("x", "y"),
            {"x": _V, "y": _V, "expected": _S},
            "Xi = arccos((<x,y>(1+c|x|^2) - |x|^2(1+c|y|^2)) / "
            "(|x| |x-y| sqrt(1 + c^2|x|^2|y|^2 - 2c<x,y>)))",
            kinds="XP",
        ),
        OpSpec(
            "entailment_energy",
            ("x", "y", "K"),
            {"x": _V, "y": _V, "K": _S, "expected": _S},
            "max(0, Xi(x, y) - psi(x))",
            kinds="XP",
            keywords=("K",),
        ),
        OpSpec(
            "to_lorentz",
            ("x",),
            {"x": _V, "expected": _L},
            "((1 + c|x|^2) / (sqrt(c)(1 - c|x|^2)), 2x / (1 - c|x|^2)), time first",
            kinds="P",
        ),
        OpSpec(
            "from_lorentz",
            ("v",),
            {"v": _L, "expected": _V},
            "v_s / (1 + sqrt(1 + c|v_s|^2)) (v = (v_0, v_s), time first)",
            kinds="Q",
        ),
        OpSpec(
            "lorentz_dist",
            ("u", "v"),
            {"u": _L, "v": _L, "expected": _S},
            "arcosh(c (u_0 v_0 - <u_s, v_s>)) / sqrt(c), u_0 = sqrt(1/c + |u_s|^2)",
            kinds="QQ",
        ),
    ]
}

#: Ops with golden vectors and a published contract, in golden-file order.
GOLDEN_OPS: tuple[str, ...] = tuple(op for op, spec in SPECS.items() if spec.golden)
#: Ops with adversarial input families (the reference's functions), in report order.
FAMILY_OPS: tuple[str, ...] = tuple(op for op, spec in SPECS.items() if spec.kinds)

__all__ = [
    "BANDWIDTH",
    "BLOCK",
    "DENSE_OPS",
    "DIM",
    "FAMILY_OPS",
    "GOLDEN_OPS",
    "SPECS",
    "STRUCTURE_PARAMS",
    "TO_DENSE",
    "OpSpec",
]
