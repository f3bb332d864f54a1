"""Run an implementation (hyperet.reference, hyperet.ops, geoopt) on golden inputs.

Each op is called once per case (single vectors, curvature a Python float), so no
implementation's broadcasting rules matter. Results come back as float64 arrays holding values of
the implementation's format. ``hra_*`` ops are the HRA function ``u -> logmap0(W (x)
expmap0(u))`` with ``W`` given by its structured parameters:

- ``reference``: the float64 chain through the dense matrix (``*_to_dense``) and
  ``mobius_matvec``, which is how the golden outputs are defined;
- ``ops``: :class:`hyperet.nn.HyperbolicRadiusAdjustment` in ``mode="literal"`` (the chain
  through hyperet.ops' structured products) with the case's parameters;
- ``geoopt``: the chain in geoopt with the dense matrix (geoopt has no structured products;
  ``block_diagonal_matvec`` and ``banded_matvec`` are also run densified). geoopt's curvature is
  ``k = -c``; its names differ: ``lambda_x``, ``parallel_transport``,
  ``mobius_pointwise_mul`` (the diagonal product).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hyperet import _io
from hyperet.oracle.files import OracleInputError, find_golden_files, read_golden_file
from hyperet.oracle.spec import GOLDEN_OPS, SPECS, TO_DENSE, Case

LIBRARIES: tuple[str, ...] = ("reference", "ops", "geoopt")

CaseFn = Callable[[Case, float], Any]


def _reference_table() -> dict[str, CaseFn]:
    return {op: SPECS[op].reference for op in GOLDEN_OPS}


def _ops_table(dtype: str, policy: str | None) -> dict[str, CaseFn]:
    import torch

    from hyperet import ops
    from hyperet.nn import HyperbolicRadiusAdjustment

    tdtype = getattr(torch, dtype)

    def t(value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=tdtype)

    def hra(structure: str, name: str) -> CaseFn:
        def run(a: Case, c: float) -> Any:
            param = t(a[name])
            module = HyperbolicRadiusAdjustment(
                int(a["u"].shape[-1]),
                structure=structure,
                block_size=int(param.shape[-1]) if structure == "block" else 4,
                bandwidth=int(param.shape[0]) // 2 if structure == "banded" else 2,
                c=c,
                mode="literal",
                policy=policy,
                dtype=tdtype,
            )
            with torch.no_grad():
                getattr(module.matrix, name).copy_(param)
                return module(t(a["u"]))

        return run

    def plain(op: str) -> CaseFn:
        spec, fn = SPECS[op], getattr(ops, op)
        return lambda a, c: spec.call(fn, a, c, t, policy=policy)

    return {
        op: hra(spec.structure, spec.inputs[0]) if spec.structure else plain(op)
        for op, spec in SPECS.items()
        if spec.golden
    }


#: The golden ops geoopt offers, by geoopt's function name (same arguments in the same order,
#: curvature ``k = -c``). It has no ``project`` with our ``eps``, no cones and no Lorentz ops;
#: the block and banded products run densified, HRA through the dense matrix.
GEOOPT_FUNCTIONS: dict[str, str] = {
    "conformal_factor": "lambda_x",
    "mobius_add": "mobius_add",
    "mobius_scalar_mul": "mobius_scalar_mul",
    "mobius_matvec": "mobius_matvec",
    "expmap0": "expmap0",
    "logmap0": "logmap0",
    "expmap": "expmap",
    "logmap": "logmap",
    "dist": "dist",
    "dist0": "dist0",
    "gyration": "gyration",
    "transport": "parallel_transport",
    "diagonal_matvec": "mobius_pointwise_mul",
}


def _geoopt_table(dtype: str) -> dict[str, CaseFn]:
    import geoopt.manifolds.stereographic.math as gm
    import torch

    tdtype = getattr(torch, dtype)

    def t(value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=tdtype)

    def k(c: float) -> torch.Tensor:
        return torch.tensor(-c, dtype=tdtype)

    def plain(op: str) -> CaseFn:
        spec, fn = SPECS[op], getattr(gm, GEOOPT_FUNCTIONS[op])
        return lambda a, c: fn(*(t(a[name]) for name in spec.positional), k=k(c))

    def densified(name: str) -> CaseFn:
        to_dense = TO_DENSE[name]
        return lambda a, c: gm.mobius_matvec(t(to_dense(a[name])), t(a["x"]), k=k(c))

    def hra(name: str) -> CaseFn:
        to_dense = TO_DENSE[name]

        def run(a: Case, c: float) -> Any:
            x = gm.expmap0(t(a["u"]), k=k(c))
            return gm.logmap0(gm.mobius_matvec(t(to_dense(a[name])), x, k=k(c)), k=k(c))

        return run

    table = {op: plain(op) for op in GEOOPT_FUNCTIONS}
    table["block_diagonal_matvec"] = densified("blocks")
    table["banded_matvec"] = densified("bands")
    table.update({op: hra(spec.inputs[0]) for op, spec in SPECS.items() if spec.structure})
    return table


def library_available(library: str) -> bool:
    """Whether ``library`` can be imported (geoopt is the optional extra ``bench``)."""
    if library != "geoopt":
        return True
    try:
        import geoopt  # noqa: F401
    except ImportError:
        return False
    return True


def op_table(library: str, dtype: str, policy: str | None = None) -> dict[str, CaseFn]:
    """The ops ``library`` offers in ``dtype``, by golden op name.

    ``policy`` is hyperet.ops' numerical policy (``None``: exact for float64, train for
    float32); other libraries ignore it.
    """
    if library == "reference":
        if dtype != "float64":
            raise ValueError(f"dtype: hyperet.reference computes in float64 only, got {dtype}")
        return _reference_table()
    if library == "ops":
        return _ops_table(dtype, policy)
    if library == "geoopt":
        return _geoopt_table(dtype)
    raise ValueError(f"library: expected one of {LIBRARIES}, got {library!r}")


def run_cases(
    fn: CaseFn,
    inputs: Mapping[str, np.ndarray],
    c: np.ndarray,
    out_shape: tuple[int, ...],
    *,
    quiet: bool = True,
) -> np.ndarray:
    """Call ``fn`` once per case; ``(N, *out_shape)`` float64 array of its outputs.

    Errors raised by the implementation on a case (some refuse inputs others accept) become
    NaN results when ``quiet`` (they then count as non-finite, hence out of tolerance).
    """
    outputs = np.full((c.shape[0], *out_shape), np.nan)
    for i in range(c.shape[0]):
        case = {name: value[i] for name, value in inputs.items()}
        try:
            with _quiet_numpy():
                outputs[i] = _to_numpy(fn(case, float(c[i]))).reshape(out_shape)
        except (ValueError, RuntimeError, ArithmeticError):
            if not quiet:
                raise
    return outputs


def _quiet_numpy() -> Any:
    return np.errstate(all="ignore")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        import torch

        return value.detach().to(torch.float64).cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def write_results(
    golden_dir: Path,
    output: Path,
    *,
    library: str,
    dtype: str = "float64",
    policy: str | None = None,
) -> list[str]:
    """Run ``library`` in ``dtype`` on every golden op it offers; write a results file.

    The golden tier is the one matching ``dtype`` (float32 inputs for a float32 run). The
    reference computes in float64 only; with ``dtype="float32"`` its outputs are rounded to
    float32 (the best any float32 implementation can do). Returns the ops written.
    """
    import torch
    from safetensors.torch import save

    output = Path(output)
    if not output.parent.is_dir():
        raise OracleInputError(f"{output}: directory {output.parent} does not exist")
    if not library_available(library):
        raise OracleInputError(f"library {library!r} is not installed (pip install hyperet[bench])")
    tier = "float64" if dtype == "float64" else "float32"  # half formats read float32 inputs
    files = find_golden_files(Path(golden_dir), tier=tier)
    table = op_table(library, "float64" if library == "reference" else dtype, policy)
    tensors: dict[str, torch.Tensor] = {}
    for op, path in files.items():
        if op not in table:
            continue
        golden = read_golden_file(path)
        inputs = {k: v for k, v in golden.inputs.items() if k != "c"}
        values = run_cases(table[op], inputs, golden.inputs["c"], golden.expected.shape[1:])
        tensors[op] = torch.from_numpy(values).to(getattr(torch, dtype)).contiguous()
    if not tensors:
        raise OracleInputError(f"{golden_dir}: no golden op that {library} implements")
    try:
        _io.atomic_write_bytes(output, save(tensors))
    except OSError as err:
        raise OracleInputError(f"{output}: cannot write ({err.strerror or err})") from None
    return sorted(tensors)
