"""Checking other implementations against the truth.

- :mod:`hyperet.oracle.exact`: mpmath ground truth for every :mod:`hyperet.reference` op;
- :mod:`hyperet.oracle.ulp`: grading in ulps (normwise and componentwise, any float format);
- :mod:`hyperet.oracle.families`: the adversarial input families A-L (deterministic);
- :mod:`hyperet.oracle.report`: the measured accuracy table of the reference
  (``python -m hyperet.oracle.report``);
- golden vectors, grading of results files and ``hyperet oracle`` (see the CLI).

Nothing heavy is imported here; import the submodule you need.
"""
