"""The study's statistics against closed forms, published tables and direct loops."""

from __future__ import annotations

import math

import pytest

from hyperet.study.stats import paired_t_test, summarize, t_quantile, t_two_sided_p


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.7, 80.0])
def test_p_value_matches_closed_forms_for_one_and_two_degrees_of_freedom(t: float) -> None:
    # nu = 1 is the Cauchy law: P(|T| >= t) = 1 - 2 atan(t) / pi
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-12)
    # nu = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so P(|T| >= t) = 1 - t / sqrt(2 + t^2)
    assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-12)
    assert t_two_sided_p(-t, 2) == t_two_sided_p(t, 2)


@pytest.mark.parametrize(
    ("df", "table"),  # two-sided 95 % critical values of Student's t (standard tables)
    [(1, 12.706205), (2, 4.302653), (3, 3.182446), (4, 2.776445), (9, 2.262157), (30, 2.042272)],
)
def test_quantile_matches_the_published_table(df: int, table: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(table, abs=1e-6)
    assert t_two_sided_p(t_quantile(0.975, df), df) == pytest.approx(0.05, rel=1e-9)


def test_summary_is_the_textbook_formula() -> None:
    xs = [0.41, 0.47, 0.44]
    mean = sum(xs) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / 2)
    half = 4.302652729911275 * std / math.sqrt(3)  # t_{0.975, 2}
    got = summarize(xs)
    assert got["n"] == 3
    assert got["mean"] == pytest.approx(mean, rel=1e-15)
    assert got["std"] == pytest.approx(std, rel=1e-14)
    assert got["ci95"] == pytest.approx([mean - half, mean + half], rel=1e-9)
    assert summarize([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci95": None, "values": [0.5]}


def test_paired_test_by_hand() -> None:
    arm, base = [0.50, 0.46, 0.55, 0.49], [0.48, 0.45, 0.50, 0.49]
    d = [a - b for a, b in zip(arm, base, strict=True)]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    t = mean / (sd / 2)
    got = paired_t_test(arm, base)
    assert got["t"] == pytest.approx(t, rel=1e-12)
    assert got["df"] == 3
    # nu = 3 closed form: F(t) = 1/2 + (atan(u) + u / (1 + u^2)) / pi with u = t / sqrt(3)
    u = t / math.sqrt(3)
    p = 1 - 2 * (math.atan(u) + u / (1 + u * u)) / math.pi
    assert got["p"] == pytest.approx(p, rel=1e-10)
    # the pairing matters: the same values unpaired would not give this t
    assert paired_t_test(arm, base[::-1])["t"] != pytest.approx(t)


def test_degenerate_pairs() -> None:
    assert paired_t_test([0.3, 0.4], [0.3, 0.4]) == {
        "n": 2, "mean_diff": 0.0, "df": 1, "t": None, "p": 1.0,
    }  # fmt: skip
    assert paired_t_test([0.5, 0.75], [0.25, 0.5])["p"] == 0.0  # constant nonzero difference
    assert paired_t_test([0.4], [0.3])["p"] is None
    with pytest.raises(ValueError, match="paired"):
        paired_t_test([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="q"):
        t_quantile(0.4, 3)
    with pytest.raises(ValueError, match="df"):
        t_two_sided_p(1.0, 0)
