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

from hyperet.oracle.golden import OracleInputError, find_golden_files, read_golden_file

LIBRARIES: tuple[str, ...] = ("reference", "ops", "geoopt")

Case = Mapping[str, Any]  # one case's inputs by name (arrays or floats), without c
CaseFn = Callable[[Case, float], Any]


def _reference_table() -> dict[str, CaseFn]:
    from hyperet import reference as ref

    def hra(to_dense: Callable[[np.ndarray], np.ndarray], name: str) -> CaseFn:
        def run(a: Case, c: float) -> Any:
            x = ref.expmap0(a["u"], c=c)
            return ref.logmap0(ref.mobius_matvec(to_dense(a[name]), x, c=c), c=c)

        return run

    return {
        "conformal_factor": lambda a, c: ref.conformal_factor(a["x"], c=c),
        "mobius_add": lambda a, c: ref.mobius_add(a["x"], a["y"], c=c),
        "mobius_scalar_mul": lambda a, c: ref.mobius_scalar_mul(float(a["r"]), a["x"], c=c),
        "mobius_matvec": lambda a, c: ref.mobius_matvec(a["m"], a["x"], c=c),
        "expmap0": lambda a, c: ref.expmap0(a["u"], c=c),
        "logmap0": lambda a, c: ref.logmap0(a["x"], c=c),
        "expmap": lambda a, c: ref.expmap(a["x"], a["u"], c=c),
        "logmap": lambda a, c: ref.logmap(a["x"], a["y"], c=c),
        "dist": lambda a, c: ref.dist(a["x"], a["y"], c=c),
        "dist0": lambda a, c: ref.dist0(a["x"], c=c),
        "gyration": lambda a, c: ref.gyration(a["a"], a["b"], a["z"], c=c),
        "transport": lambda a, c: ref.transport(a["x"], a["y"], a["v"], c=c),
        "project": lambda a, c: ref.project(a["x"], c=c, eps=float(a["eps"])),
        "diagonal_matvec": lambda a, c: ref.diagonal_matvec(a["w"], a["x"], c=c),
        "block_diagonal_matvec": lambda a, c: ref.block_diagonal_matvec(a["blocks"], a["x"], c=c),
        "banded_matvec": lambda a, c: ref.banded_matvec(a["bands"], a["x"], c=c),
        "hra_diagonal": hra(ref.diagonal_to_dense, "w"),
        "hra_block": hra(ref.block_diagonal_to_dense, "blocks"),
        "hra_banded": hra(ref.banded_to_dense, "bands"),
    }


def _ops_table(dtype: str) -> dict[str, CaseFn]:
    import torch

    from hyperet import ops
    from hyperet.nn import HyperbolicRadiusAdjustment

    tdtype = getattr(torch, dtype)

    def t(value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=tdtype)

    def hra(structure: str, name: str) -> CaseFn:
        def run(a: Case, c: float) -> Any:
            param = t(a[name])
            d = int(a["u"].shape[-1])
            options: dict[str, int] = {}
            if structure == "block":
                options["block_size"] = int(param.shape[-1])
            if structure == "banded":
                options["bandwidth"] = int(param.shape[0]) // 2
            module = HyperbolicRadiusAdjustment(
                d, structure=structure, c=c, mode="literal", dtype=tdtype, **options
            )
            with torch.no_grad():
                getattr(module.matrix, name).copy_(param)
                return module(t(a["u"]))

        return run

    return {
        "conformal_factor": lambda a, c: ops.conformal_factor(t(a["x"]), c=c),
        "mobius_add": lambda a, c: ops.mobius_add(t(a["x"]), t(a["y"]), c=c),
        "mobius_scalar_mul": lambda a, c: ops.mobius_scalar_mul(t(a["r"]), t(a["x"]), c=c),
        "mobius_matvec": lambda a, c: ops.mobius_matvec(t(a["m"]), t(a["x"]), c=c),
        "expmap0": lambda a, c: ops.expmap0(t(a["u"]), c=c),
        "logmap0": lambda a, c: ops.logmap0(t(a["x"]), c=c),
        "expmap": lambda a, c: ops.expmap(t(a["x"]), t(a["u"]), c=c),
        "logmap": lambda a, c: ops.logmap(t(a["x"]), t(a["y"]), c=c),
        "dist": lambda a, c: ops.dist(t(a["x"]), t(a["y"]), c=c),
        "dist0": lambda a, c: ops.dist0(t(a["x"]), c=c),
        "gyration": lambda a, c: ops.gyration(t(a["a"]), t(a["b"]), t(a["z"]), c=c),
        "transport": lambda a, c: ops.transport(t(a["x"]), t(a["y"]), t(a["v"]), c=c),
        "project": lambda a, c: ops.project(t(a["x"]), c=c, eps=float(a["eps"])),
        "diagonal_matvec": lambda a, c: ops.diagonal_matvec(t(a["w"]), t(a["x"]), c=c),
        "block_diagonal_matvec": lambda a, c: ops.block_diagonal_matvec(
            t(a["blocks"]), t(a["x"]), c=c
        ),
        "banded_matvec": lambda a, c: ops.banded_matvec(t(a["bands"]), t(a["x"]), c=c),
        "hra_diagonal": hra("diagonal", "w"),
        "hra_block": hra("block", "blocks"),
        "hra_banded": hra("banded", "bands"),
    }


def _geoopt_table(dtype: str) -> dict[str, CaseFn]:
    import geoopt.manifolds.stereographic.math as gm
    import torch

    from hyperet import reference as ref

    tdtype = getattr(torch, dtype)

    def t(value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=tdtype)

    def k(c: float) -> torch.Tensor:
        return torch.tensor(-c, dtype=tdtype)

    def densified(to_dense: Callable[[np.ndarray], np.ndarray], name: str) -> CaseFn:
        return lambda a, c: gm.mobius_matvec(t(to_dense(a[name])), t(a["x"]), k=k(c))

    def hra(to_dense: Callable[[np.ndarray], np.ndarray], name: str) -> CaseFn:
        def run(a: Case, c: float) -> Any:
            x = gm.expmap0(t(a["u"]), k=k(c))
            return gm.logmap0(gm.mobius_matvec(t(to_dense(a[name])), x, k=k(c)), k=k(c))

        return run

    return {
        "conformal_factor": lambda a, c: gm.lambda_x(t(a["x"]), k=k(c)),
        "mobius_add": lambda a, c: gm.mobius_add(t(a["x"]), t(a["y"]), k=k(c)),
        "mobius_scalar_mul": lambda a, c: gm.mobius_scalar_mul(t(a["r"]), t(a["x"]), k=k(c)),
        "mobius_matvec": lambda a, c: gm.mobius_matvec(t(a["m"]), t(a["x"]), k=k(c)),
        "expmap0": lambda a, c: gm.expmap0(t(a["u"]), k=k(c)),
        "logmap0": lambda a, c: gm.logmap0(t(a["x"]), k=k(c)),
        "expmap": lambda a, c: gm.expmap(t(a["x"]), t(a["u"]), k=k(c)),
        "logmap": lambda a, c: gm.logmap(t(a["x"]), t(a["y"]), k=k(c)),
        "dist": lambda a, c: gm.dist(t(a["x"]), t(a["y"]), k=k(c)),
        "dist0": lambda a, c: gm.dist0(t(a["x"]), k=k(c)),
        "gyration": lambda a, c: gm.gyration(t(a["a"]), t(a["b"]), t(a["z"]), k=k(c)),
        "transport": lambda a, c: gm.parallel_transport(t(a["x"]), t(a["y"]), t(a["v"]), k=k(c)),
        "diagonal_matvec": lambda a, c: gm.mobius_pointwise_mul(t(a["w"]), t(a["x"]), k=k(c)),
        "block_diagonal_matvec": densified(ref.block_diagonal_to_dense, "blocks"),
        "banded_matvec": densified(ref.banded_to_dense, "bands"),
        "hra_diagonal": hra(ref.diagonal_to_dense, "w"),
        "hra_block": hra(ref.block_diagonal_to_dense, "blocks"),
        "hra_banded": hra(ref.banded_to_dense, "bands"),
    }


def library_available(library: str) -> bool:
    """Whether ``library`` can be imported (geoopt is the optional extra ``bench``)."""
    if library != "geoopt":
        return True
    try:
        import geoopt  # noqa: F401
    except ImportError:
        return False
    return True


def op_table(library: str, dtype: str) -> dict[str, CaseFn]:
    """The ops ``library`` offers in ``dtype``, by golden op name."""
    if library == "reference":
        if dtype != "float64":
            raise ValueError(f"dtype: hyperet.reference computes in float64 only, got {dtype}")
        return _reference_table()
    if library == "ops":
        return _ops_table(dtype)
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
    golden_dir: Path, output: Path, *, library: str, dtype: str = "float64"
) -> list[str]:
    """Run ``library`` in ``dtype`` on every golden op it offers; write a results file.

    The golden tier is the one matching ``dtype`` (float32 inputs for a float32 run). The
    reference computes in float64 only; with ``dtype="float32"`` its outputs are rounded to
    float32 (the best any float32 implementation can do). Returns the ops written.
    """
    import torch
    from safetensors.torch import save_file

    if not library_available(library):
        raise OracleInputError(f"library {library!r} is not installed (pip install hyperet[bench])")
    files = find_golden_files(Path(golden_dir), tier=dtype)
    table = op_table(library, "float64" if library == "reference" else dtype)
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
    save_file(tensors, str(output))
    return sorted(tensors)
