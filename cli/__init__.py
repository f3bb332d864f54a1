"""The ``hyperet`` command line (installed as ``hyperet.cli``).

One module per command; each defines a click command object named ``command``.
The CLI holds no logic: it parses options, calls into :mod:`hyperet`, and renders.
"""
