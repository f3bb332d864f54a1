"""Grading floating-point results against exact values in units in the last place (ulps).

Definitions (used by the tests, ``hyperet.oracle.report``, the golden-vector grading and
docs/accuracy.md).  ``F`` is the format of the result (float64 by default; float32, float16 and
bfloat16 are supported), with ``p`` significand bits and minimum normal exponent ``emin``:

- ``ulp_F(v)`` is the spacing of ``F`` numbers in the binade of the *exact* value ``v``:
  :math:`2^{\\max(e, e_{min}) - p + 1}` for :math:`2^e \\le |v| < 2^{e+1}`; for ``v = 0`` it is
  the subnormal spacing :math:`2^{e_{min} - p + 1}` (``2**-1074`` in float64).
- componentwise error: :math:`|y_i - e_i| / \\mathrm{ulp}_F(e_i)`;
- normwise error of a vector (last axis):

  .. math::
      \\mathrm{err} = \\frac{\\max_i |y_i - e_i|}{\\mathrm{ulp}_F(\\max_i |e_i|)},

  the infinity norm of the error in ulps of the largest exact component.  A correctly rounded
  vector has normwise error <= 0.5; tiny components may have large componentwise errors
  without harming the normwise one.  For scalar-valued operations (``vector=False``) both
  errors are the componentwise one.

With ``exact`` given as mpmath numbers, differences are formed exactly (at 120 digits); with
``exact`` given as float64 numbers (golden files), they are formed in float64, exact for close
values (Sterbenz) and otherwise accurate to one part in 2**53 of the difference.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mpmath
import numpy as np
from numpy.typing import NDArray

__all__ = ["FORMATS", "UlpError", "componentwise_ulp", "ulp", "ulp_error"]

#: format name -> (significand bits p, minimum normal exponent emin)
FORMATS: dict[str, tuple[int, int]] = {
    "float64": (53, -1022),
    "float32": (24, -126),
    "float16": (11, -14),
    "bfloat16": (8, -126),
}

_GRADING_DPS = 120


class UlpError(NamedTuple):
    """Errors per vector, in ulps of the result's format.

    Attributes
    ----------
    normwise : ndarray, shape of the result without its vector axis
        ``max_i |y_i - e_i| / ulp(max_i |e_i|)``.
    component : ndarray, same shape
        The largest componentwise error ``max_i |y_i - e_i| / ulp(e_i)`` of each vector
        (use :func:`componentwise_ulp` for every entry).
    """

    normwise: NDArray[np.float64]
    component: NDArray[np.float64]

    @property
    def max_normwise(self) -> float:
        """Largest normwise error of the batch (0 for an empty batch)."""
        return float(self.normwise.max()) if self.normwise.size else 0.0


def _format(dtype: Any) -> tuple[int, int]:
    name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype
    name = name.replace("torch.", "")
    if name not in FORMATS:
        raise ValueError(f"dtype: unsupported format {dtype!r}; choose from {sorted(FORMATS)}")
    return FORMATS[name]


def ulp(value: Any, dtype: Any = "float64") -> mpmath.mpf:
    """Spacing of ``dtype`` numbers in the binade of ``value`` (exact, as an mpf)."""
    p, emin = _format(dtype)
    v = mpmath.mpf(value)
    if v == 0:
        return mpmath.ldexp(mpmath.mpf(1), emin - p + 1)
    _, e = mpmath.frexp(abs(v))  # |v| = m 2**e, 0.5 <= m < 1
    return mpmath.ldexp(mpmath.mpf(1), max(int(e) - 1, emin) - p + 1)


def _ulp_float(values: NDArray[np.float64], dtype: Any) -> NDArray[np.float64]:
    p, emin = _format(dtype)
    _, e = np.frexp(np.abs(values))
    e = np.where(values == 0, emin + 1, e)  # ulp(0) is the subnormal spacing, as in ulp()
    return np.ldexp(1.0, np.maximum(e - 1, emin) - p + 1)


def componentwise_ulp(computed: Any, exact: Any, *, dtype: Any = "float64") -> NDArray[np.float64]:
    """``|y_i - e_i| / ulp(e_i)`` for every entry (same shape as ``computed``)."""
    y = np.asarray(computed, dtype=np.float64)
    e = np.asarray(exact)
    if y.shape != e.shape:
        raise ValueError(f"computed: shape {y.shape} does not match exact shape {e.shape}")
    if e.dtype != object:
        e64 = e.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            return np.abs(y - e64) / _ulp_float(e64, dtype)
    out = np.empty(y.shape)
    with mpmath.workdps(_GRADING_DPS):
        for idx in np.ndindex(*y.shape):
            ev = mpmath.mpf(e[idx])
            out[idx] = float(abs(mpmath.mpf(float(y[idx])) - ev) / ulp(ev, dtype))
    return out


def ulp_error(
    computed: Any, exact: Any, *, vector: bool = True, dtype: Any = "float64"
) -> UlpError:
    """Grade ``computed`` against ``exact`` (same shape) in ulps of ``dtype``.

    Parameters
    ----------
    computed : array_like
        The results under test (any float format, held as float64).
    exact : array_like
        Exact values: an object array of mpf (e.g. from :mod:`hyperet.oracle.exact`) or a
        float64 array (golden vectors).
    vector : bool
        Whether the last axis is a vector axis; ``False`` for scalar-valued operations.
    dtype : str or numpy dtype
        Format of the result whose ulps are counted: float64, float32, float16 or bfloat16.

    Returns
    -------
    UlpError
        ``(normwise, component)`` per vector.
    """
    y = np.asarray(computed, dtype=np.float64)
    e = np.asarray(exact)
    comp = componentwise_ulp(y, e, dtype=dtype)
    if not vector or y.ndim == 0:
        return UlpError(comp, comp.copy())
    comp_max = comp.max(axis=-1) if y.shape[-1] else np.zeros(y.shape[:-1])
    if e.dtype != object:
        e64 = e.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            worst = np.max(np.abs(y - e64), axis=-1)
            scale = _ulp_float(np.max(np.abs(e64), axis=-1), dtype)
            return UlpError(worst / scale, comp_max)
    norm = np.empty(y.shape[:-1])
    with mpmath.workdps(_GRADING_DPS):
        for idx in np.ndindex(*y.shape[:-1]):
            ev = [mpmath.mpf(v) for v in e[idx]]
            scale_mp = ulp(max((abs(v) for v in ev), default=mpmath.mpf(0)), dtype)
            worst_mp = max(abs(mpmath.mpf(float(a)) - b) for a, b in zip(y[idx], ev, strict=True))
            norm[idx] = float(worst_mp / scale_mp)
    return UlpError(norm, comp_max)
