"""``hyperet bench --device cuda`` (suite ``kernels``): its rows, steps and errors on the CPU.

The figures need a GPU (``benchmarks/gpu_check.sh``); here: the one-line exit-2 error without
CUDA, the row arithmetic from given medians, every op's step on eager torch, and (under
Triton's interpreter, ``nox -s triton``) the whole suite end to end on CPU tensors."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from hyperet.cli.main import main

from hyperet.bench import kernels, run_suite
from hyperet.ops import backend

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@no_cuda
def test_device_cuda_without_cuda_is_a_one_line_error_exit_2() -> None:
    result = CliRunner().invoke(main, ["bench", "--device", "cuda", "--quick"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        "error: --device cuda: no CUDA device here (torch.cuda.is_available() is False)"
    ]


def test_kernels_suite_is_skipped_on_the_cpu() -> None:
    with pytest.raises(kernels.SuiteUnavailable, match="--device cuda"):
        run_suite("kernels", quick=True)


@pytest.mark.parametrize("op", kernels.OPS)
@pytest.mark.parametrize("dtype", sorted(kernels.DTYPES))
def test_every_step_runs_and_gives_every_input_a_gradient(op: str, dtype: str) -> None:
    case = kernels.make_case(op, dtype, 6, 8, "cpu")
    cot = kernels.cotangent_of(case)
    with backend.use_backend("eager"):
        out = kernels._fn(op)(*case.inputs, c=1.0)
        grads = torch.autograd.grad(out, case.inputs, cot)
    assert out.dtype == kernels.DTYPES[dtype]
    assert all(
        g.shape == t.shape and torch.isfinite(g).all()
        for g, t in zip(grads, case.inputs, strict=True)
    )
    kernels.step(case, "eager", cot)


def test_rows_from_given_medians() -> None:
    big = kernels.make_case("mobius_add", "float32", kernels.LARGE // 1024, 1024, "meta")
    small = kernels.make_case("matvec dense", "bfloat16", 256, 1024, "meta")
    med = {"triton": 2.0e-3, "eager": 10.0e-3, "copy": 0.5e-3}
    row = kernels.row_of(big, med)
    assert row.ratio == pytest.approx(5.0) and row.passes == pytest.approx(4.0)
    # mobius_add moves 8 units of B d (reads x, y; writes out; reads g, x, y; writes 2 grads)
    assert row.bandwidth == pytest.approx(4.0 / 4.0)
    assert row.target == 3.0 and row.bandwidth_target == 0.6 and row.met is True
    assert "B=16384, d=1024, float32" in row.name
    slow = kernels.row_of(big, {**med, "triton": 8.0e-3})  # 1.25x, 25 % of a copy
    assert slow.met is False and slow.bandwidth == pytest.approx(0.25)
    # below 2**24 elements (and for the compute-bound dense matvec) only the ratio is a target
    assert kernels.row_of(small, med).bandwidth_target is None
    assert kernels.min_traffic("pairwise_dist") == 1.0 and kernels.min_traffic("dist") == 3.0


def test_kernels_suite_end_to_end_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    if not backend.triton_interpreting():
        pytest.skip("needs TRITON_INTERPRET=1 (nox -s triton)")
    monkeypatch.setattr(kernels, "OPS", ("dist", "pairwise_dist", "matvec block"))
    rows = kernels.run(quick=True, device="cpu")
    assert len(rows) == 3 * len(kernels.DTYPES)
    for row in rows:
        assert row.suite == "kernels" and row.ours > 0 and row.theirs > 0
        assert "backend triton" in row.note  # every case really ran on the kernels
