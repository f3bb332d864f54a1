"""The HRA module: structured vs dense, identity, Theorem 1, literal vs fast vs official."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import hyperet.nn.hra
import hyperet.nn.structured
from hyperet import ops
from hyperet.nn import HyperbolicRadiusAdjustment
from hyperet.nn.hra import official_input_cap, official_output_cap
from hyperet.nn.structured import BandedMatrix, BlockDiagonalMatrix, DiagonalMatrix

F64 = torch.float64
EPS64 = torch.finfo(F64).eps
STRUCTURES = ("diagonal", "block", "banded")


def _hra(structure: str, d: int = 16, seed: int = 0, scale: float = 0.3, **kwargs: object):
    """An HRA with random (non-identity) float64 parameters."""
    module = HyperbolicRadiusAdjustment(d, structure=structure, dtype=F64, **kwargs)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.matrix.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=F64))
    return module


def _dense_by_definition(module: HyperbolicRadiusAdjustment) -> torch.Tensor:
    """The dense matrix from the architecture's layout, entry by entry (independent of dense())."""
    m = module.matrix
    d = m.d
    dense = torch.zeros(d, d, dtype=F64)
    if isinstance(m, DiagonalMatrix):
        for i in range(d):
            dense[i, i] = m.w[i]
    elif isinstance(m, BlockDiagonalMatrix):
        b = m.block_size
        for i in range(d // b):
            for r in range(b):
                for s in range(b):
                    dense[i * b + r, i * b + s] = m.blocks[i, r, s]
    else:
        assert isinstance(m, BandedMatrix)
        k = m.bandwidth
        for i in range(d):
            for j in range(2 * k + 1):
                if 0 <= i + j - k < d:
                    dense[i, i + j - k] = m.bands[j, i]
    return dense.detach()


def _random_directions(n: int, d: int, norms: torch.Tensor | float, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=gen, dtype=F64)
    return (
        u
        / torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        * torch.as_tensor(norms, dtype=F64).reshape(-1, 1)
    )


def test_module_doctests() -> None:
    for module in (hyperet.nn.hra, hyperet.nn.structured):
        result = doctest.testmod(module)
        assert result.failed == 0


@pytest.mark.parametrize("structure", STRUCTURES)
def test_structured_product_and_dense_equal_the_layout_definition(structure: str) -> None:
    module = _hra(structure, d=12, block_size=3, bandwidth=2)
    dense = _dense_by_definition(module)
    torch.testing.assert_close(module.matrix.dense().detach(), dense, rtol=0, atol=0)
    x = torch.randn(5, 7, 12, dtype=F64)
    torch.testing.assert_close(module.matrix(x), x @ dense.T, rtol=1e-14, atol=1e-14)
    w = torch.randn(12, 9, dtype=F64)
    torch.testing.assert_close(module.matrix.apply_to_columns(w), dense @ w, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_free_parameter_counts(structure: str) -> None:
    module = HyperbolicRadiusAdjustment(1024, structure=structure, learn_curvature=True)
    expected = {"diagonal": 1024, "block": 4096, "banded": 5114}[structure]
    assert module.matrix.num_free_parameters == expected
    assert module.num_free_parameters == expected + 1  # + log c
    # the free entries are exactly the non-zero pattern of the dense matrix
    dense = _hra(structure, d=32).matrix.dense()
    assert (
        int((dense != 0).sum()) == {"diagonal": 32, "block": 128, "banded": 5 * 32 - 6}[structure]
    )


@pytest.mark.parametrize("mode", ["fast", "literal", "official"])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_identity_at_initialisation(structure: str, mode: str) -> None:
    module = HyperbolicRadiusAdjustment(16, structure=structure, mode=mode, dtype=F64)
    u = _random_directions(40, 16, torch.logspace(-6, 1.2, 40))  # |u| up to 16 (Rad 32)
    out = module(u)
    if mode == "fast":
        assert torch.equal(out, u)
    else:
        torch.testing.assert_close(out, u, rtol=1e-12, atol=0)


@pytest.mark.parametrize("c", [1e-4, 0.01, 1.0, 7.0])
def test_theorem_1_diagonal_scaling_multiplies_the_radius(c: float) -> None:
    # W = s I: Rad(expmap0(HRA(u))) = s Rad(expmap0(u)) = 2 s |u|; s dyadic so s*u is exact
    s = 0.8125
    module = HyperbolicRadiusAdjustment(16, structure="diagonal", c=c, mode="literal", dtype=F64)
    with torch.no_grad():
        module.matrix.w.fill_(s)
    u = _random_directions(30, 16, torch.linspace(0.05, 12.0, 30) / math.sqrt(c))
    rad_in = ops.dist0(ops.expmap0(u, c=c), c=c)
    rad_out = ops.dist0(ops.expmap0(module(u), c=c), c=c)
    norms = torch.linalg.vector_norm(u, dim=-1)
    tol = 64 * EPS64 * torch.sinh(2 * math.sqrt(c) * norms) / (2 * math.sqrt(c) * norms)
    assert torch.all((rad_out - s * rad_in).abs() <= tol * s * rad_in)
    assert torch.all((rad_out - 2 * s * norms).abs() <= tol * 2 * s * norms)


def _conditioning_tolerance(u: torch.Tensor, v: torch.Tensor, c: float) -> torch.Tensor:
    """Relative error the float64 chain inherits from storing points near the boundary.

    A point at radius s = sqrt(c)|u| has 1 - sqrt(c)|x| ~ 2 exp(-2s); one rounding of |x| moves
    artanh by eps * sinh(2s)/2, i.e. eps * sinh(2s)/(2s) relative.
    """
    s = math.sqrt(c) * torch.maximum(
        torch.linalg.vector_norm(u, dim=-1), torch.linalg.vector_norm(v, dim=-1)
    )
    s = s.clamp_min(1e-3)
    return 64 * EPS64 * (torch.sinh(2 * s) / (2 * s))


@pytest.mark.parametrize("c", [0.01, 1.0])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_literal_equals_fast_in_exact_mode_across_the_representable_domain(
    structure: str, c: float
) -> None:
    # float64 carries a point out to Rad 37.4 (sqrt(c)|u| = 18.7); sweep tiny to 17 on both
    # sides of the chain (input |u| and output |W u|)
    literal = _hra(structure, c=c, mode="literal")
    fast = _hra(structure, c=c, mode="fast")
    u = _random_directions(200, 16, torch.logspace(-12, math.log10(11.0), 200) / math.sqrt(c))
    expected = fast(u)
    keep = math.sqrt(c) * torch.linalg.vector_norm(expected, dim=-1) < 17.0
    u, expected = u[keep], expected[keep]
    assert len(u) > 150
    got = literal(u)
    err = torch.linalg.vector_norm(got - expected, dim=-1) / torch.linalg.vector_norm(
        expected, dim=-1
    )
    assert torch.all(err <= _conditioning_tolerance(u, expected, c)), err.max()
    # and exactly where there is no conditioning (radius below 1): a few ulp
    small = math.sqrt(c) * torch.linalg.vector_norm(u, dim=-1) < 1.0
    assert err[small].max() < 16 * EPS64


def test_literal_saturates_where_float64_cannot_carry_the_point_fast_does_not() -> None:
    c = 0.01
    literal = _hra("diagonal", c=c, mode="literal", scale=0.0)
    u = _random_directions(4, 16, torch.tensor([250.0, 1e3, 1e6, 1e150], dtype=F64))
    out_norm = torch.linalg.vector_norm(literal(u), dim=-1)
    # half the largest Rad of a float64 number below 1, as a tangent norm; the saturated point
    # is the nearest interior float VECTOR in its direction, whose co-norm can lie below eps64
    # (here down to about 1e-17: Rad 40 instead of 37.4), so the bound above is loose
    ceiling = 37.43 / 2 / math.sqrt(c)
    assert torch.all(out_norm < 1.2 * ceiling) and torch.all(out_norm > 0.95 * ceiling)
    fast = _hra("diagonal", c=c, mode="fast", scale=0.0)
    assert torch.equal(fast(u), u)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_official_equals_fast_below_the_cap_and_clips_above(structure: str) -> None:
    c = 0.01
    official = _hra(structure, c=c, mode="official")
    fast = _hra(structure, c=c, mode="fast")
    r_out, r_in = official_output_cap(c), official_input_cap(c)
    assert r_out == pytest.approx(38.0, abs=0.01) and r_in == pytest.approx(61.03, abs=0.01)
    u = _random_directions(300, 16, torch.logspace(-8, 4, 300))
    wu = fast(u)
    below = torch.linalg.vector_norm(wu, dim=-1) < r_out * (1 - 1e-9)
    below &= torch.linalg.vector_norm(u, dim=-1) < r_in
    got = official(u)
    torch.testing.assert_close(got[below], wu[below], rtol=1e-10, atol=0)

    # above: official = clip_{R_out}(W clip_{R_in}(u)), the documented closed form
    def clip(v: torch.Tensor, radius: float) -> torch.Tensor:
        n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        return v * torch.clamp(radius / n, max=1.0)

    expected = clip(fast(clip(u, r_in)), r_out)
    above = ~below
    assert above.sum() > 50
    torch.testing.assert_close(got[above], expected[above], rtol=1e-6, atol=0)
    departs = torch.linalg.vector_norm(wu, dim=-1) > 1.01 * r_out
    assert torch.all(torch.linalg.vector_norm(got[departs] - wu[departs], dim=-1) > 0.009 * r_out)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_fast_train_policy_matches_literal_train_saturation(structure: str) -> None:
    c = 0.01
    literal = _hra(structure, c=c, mode="literal", policy="train").float()
    fast = _hra(structure, c=c, mode="fast", policy="train").float()
    cap = float(fast.train_radius_cap(torch.float32))
    assert cap == pytest.approx(79.71, abs=0.01)
    u = _random_directions(200, 16, torch.logspace(-3, 8, 200)).float()
    f, lit = fast(u), literal(u)
    f_norm, l_norm = torch.linalg.vector_norm(f, dim=-1), torch.linalg.vector_norm(lit, dim=-1)
    assert torch.all(f_norm <= cap * (1 + 1e-6))
    small = f_norm < 10
    torch.testing.assert_close(lit[small], f[small], rtol=1e-5, atol=1e-6)
    # Where fast saturates, the literal float32 chain does too, in the same direction, with a
    # radius fuzzy by +-ln(2)/(2 sqrt(c)) (docs/hra.md): the ops' train policy stores every
    # returned point with sqrt(c)|p| = z_out (1 + rho), |rho| <= eps (one rounding of a float64
    # per-vector coefficient, one of the product; tests/ops/test_ops_fused.py), so
    # 1 - sqrt(c)|p| moves between eps and 3 eps around 2 eps, and the chain passes through two
    # such points (expmap0's, the product's): artanh moves by at most ln(3/2)/2 at the first
    # and the remaining ln(4/3)/2 at the second, ln(2)/2 in all (either way); plus a few eps
    # of float32 arithmetic in logmap0.
    capped = f_norm > cap * (1 - 1e-6)
    assert capped.sum() > 30
    eps = torch.finfo(torch.float32).eps
    fuzz = math.log(2) / 2 / math.sqrt(c)  # 3.47 at c = 0.01
    lo, hi = (cap - fuzz) * (1 - 4 * eps), (cap + fuzz) * (1 + 4 * eps)
    assert torch.all(l_norm[capped] >= lo) and torch.all(l_norm[capped] <= hi)
    cosine = (f[capped] * lit[capped]).sum(-1) / (f_norm[capped] * l_norm[capped])
    assert torch.all(cosine > 1 - 1e-5)


def test_gradients_reach_w_and_learned_curvature() -> None:
    module = _hra("banded", c=0.01, mode="official", learn_curvature=True)
    u = _random_directions(8, 16, torch.linspace(1, 200, 8))
    module(u).square().sum().backward()
    assert module.matrix.bands.grad is not None and bool(
        torch.isfinite(module.matrix.bands.grad).all()
    )
    assert module.log_c.grad is not None and module.log_c.grad.abs() > 0  # c matters at the cap
    # outside entries of the banded layout get exactly zero gradient
    k = module.matrix.bandwidth
    assert torch.all(module.matrix.bands.grad[0, :k] == 0)
    assert torch.all(module.matrix.bands.grad[-1, -k:] == 0)
    assert module.c_value == pytest.approx(0.01)


def test_literal_gradcheck_float64() -> None:
    module = _hra("block", d=8, c=0.5, mode="literal")
    u = _random_directions(3, 8, torch.tensor([0.1, 1.0, 3.0])).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: module(x), (u,))


def test_fold_columns_is_w_times_affine_map() -> None:
    module = _hra("block", d=8)
    a, b = torch.randn(8, 5, dtype=F64), torch.randn(8, dtype=F64)
    weight, bias = module.fold_columns(a, b)
    x = torch.randn(3, 5, dtype=F64)
    torch.testing.assert_close(x @ weight.T + bias, module(x @ a.T + b), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match=r"^mode: only mode='fast'"):
        _hra("block", d=8, mode="literal").fold_columns(a, b)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match=r"^c: curvature must be a positive"):
        HyperbolicRadiusAdjustment(8, c=0.0)
    with pytest.raises(ValueError, match=r"^c: curvature must be a positive"):
        HyperbolicRadiusAdjustment(8, c=float("inf"))
    with pytest.raises(ValueError, match=r"^mode: expected one of"):
        HyperbolicRadiusAdjustment(8, mode="fastest")
    with pytest.raises(ValueError, match=r"^policy: expected one of"):
        HyperbolicRadiusAdjustment(8, policy="loose")
    with pytest.raises(ValueError, match=r"^structure: expected one of"):
        HyperbolicRadiusAdjustment(8, structure="dense")
    with pytest.raises(ValueError, match=r"^block_size: must be a positive integer dividing d"):
        HyperbolicRadiusAdjustment(8, structure="block", block_size=3)
    with pytest.raises(ValueError, match=r"^bandwidth: must be an integer in \[0, d\)"):
        HyperbolicRadiusAdjustment(8, structure="banded", bandwidth=8)
    with pytest.raises(ValueError, match=r"^d: width must be a positive integer"):
        HyperbolicRadiusAdjustment(0)
    with pytest.raises(ValueError, match=r"^u: last axis has size 7, expected 8"):
        HyperbolicRadiusAdjustment(8)(torch.zeros(2, 7))


@pytest.mark.parametrize("c", [0.01, 1.0])
@pytest.mark.parametrize("structure", STRUCTURES)
def test_every_mode_against_the_float64_reference_chain_with_the_dense_matrix(
    structure: str, c: float
) -> None:
    # ground truth: hyperet.reference (numpy) logmap0(M (x) expmap0(u)) with the dense M
    from hyperet import reference

    module = _hra(structure, c=c)
    dense = _dense_by_definition(module).numpy()
    u = _random_directions(60, 16, torch.logspace(-6, math.log10(8.0), 60) / math.sqrt(c))
    x = reference.expmap0(u.numpy(), c=c)
    expected = torch.from_numpy(reference.logmap0(reference.mobius_matvec(dense, x, c=c), c=c))
    tol = _conditioning_tolerance(u, expected, c)
    for mode in ("fast", "literal", "official"):
        module.mode = mode
        got = module(u).detach()
        err = torch.linalg.vector_norm(got - expected, dim=-1)
        rel = err / torch.linalg.vector_norm(expected, dim=-1)
        bound = tol if mode != "official" else torch.clamp(tol, min=1e-10)
        if mode == "official":  # only where the released clamps do not bind
            keep = torch.linalg.vector_norm(expected, dim=-1) < official_output_cap(c) * 0.999
            rel, bound = rel[keep], bound[keep]
        assert torch.all(rel <= bound), (mode, rel.max())


def test_theorem_1_against_the_reference_dist0() -> None:
    from hyperet import reference

    c, s = 0.01, 1.375
    module = HyperbolicRadiusAdjustment(16, structure="diagonal", c=c, mode="literal", dtype=F64)
    with torch.no_grad():
        module.matrix.w.fill_(s)
    u = _random_directions(20, 16, torch.linspace(0.1, 9.0, 20) / math.sqrt(c))
    rad_in = torch.from_numpy(reference.dist0(reference.expmap0(u.numpy(), c=c), c=c))
    rad_out = torch.from_numpy(
        reference.dist0(reference.expmap0(module(u).detach().numpy(), c=c), c=c)
    )
    tol = _conditioning_tolerance(u, s * u, c)
    assert torch.all((rad_out - s * rad_in).abs() <= tol * s * rad_in)
