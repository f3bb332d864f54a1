"""Length-bucketed batches for LM pretraining (opt-in: ``train.lm_bucket_batches``).

LM-pretraining texts run from 3 to 73 tokens; a random batch of 64 pads every row to its longest
text, so about three quarters of the tokens of a batch are padding, and a step costs 5.4x what a
batch of similar lengths does (``hyperet bench recipe``). :class:`BucketedSampler` draws a *pool*
of ``pool_batches`` batches from an ordinary epoch sampler, sorts the pool by length, cuts it
into batches and serves them in a random order. Every text is still seen once per epoch (the
pools partition the epoch's permutation); what changes is which texts share a batch.

Its state (for exact resume) is the epoch sampler's, its own generator's and the batches of the
current pool not yet served.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor


class BucketedSampler:
    """Batches of similar length drawn from ``base`` (a :class:`hyperet.train.Sampler`).

    Parameters
    ----------
    base : Sampler
        The epoch sampler the pools are drawn from.
    lengths : ndarray, shape (n,)
        Length of each example.
    pool_batches : int
        Batches per sorted pool (>= 1; 1 = plain random batches).
    seed : list of int
        Seed of the generator that orders the batches of a pool.
    """

    def __init__(self, base: Any, lengths: np.ndarray, pool_batches: int, seed: list[int]) -> None:
        if pool_batches < 1:
            raise ValueError(f"pool_batches: must be >= 1, got {pool_batches}")
        if len(lengths) != base.n:
            raise ValueError(f"lengths: {len(lengths)} lengths for {base.n} examples")
        self.base, self.lengths, self.pool_batches = base, np.asarray(lengths), pool_batches
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.pending: list[np.ndarray] = []

    def take(self, k: int) -> np.ndarray:
        """The next batch of ``k`` indices (a new pool is drawn when the current one is used)."""
        if self.pending and len(self.pending[0]) != k:
            raise ValueError(f"k: this pool holds batches of {len(self.pending[0])}, not {k}")
        if not self.pending:
            pool = self.base.take(k * self.pool_batches)
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches = [pool[i * k : (i + 1) * k] for i in range(self.pool_batches)]
            self.pending = [batches[i] for i in self.rng.permutation(self.pool_batches)]
        return self.pending.pop(0)

    def state(self) -> tuple[dict[str, Any], Tensor]:
        """JSON-able state and the epoch sampler's permutation (as :class:`Sampler`)."""
        base, order = self.base.state()
        return {
            "base": base,
            "rng": self.rng.bit_generator.state,
            "pending": [b.tolist() for b in self.pending],
        }, order

    def restore(self, state: dict[str, Any], order: Tensor) -> None:
        """Inverse of :meth:`state`."""
        self.base.restore(state["base"], order)
        self.rng.bit_generator.state = state["rng"]
        self.pending = [np.asarray(b, dtype=np.int64) for b in state["pending"]]


__all__ = ["BucketedSampler"]
