"""hyperet: the reference implementation of HyperET.

Rooms with one-way doors (each imports only rooms to its left)::

    reference  <-  ops  <-  nn  <-  data / model  <-  train / evaluate / alignment  <-  cli

``hyperet.reference`` is numpy-only float64 ground truth and never imports torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
