"""Does HyperET help, and why? The multi-seed evidence study (docs/evidence.md).

``hyperet study --grid NAME --out DIR`` runs a :class:`~hyperet.study.grid.Grid` resumably
(:mod:`hyperet.study.run`) and writes the statistics (:mod:`hyperet.study.stats`,
:mod:`hyperet.study.report`).
"""

from __future__ import annotations

from hyperet.study.grid import FULL, GRIDS, SMOKE, Arm, Grid
from hyperet.study.run import Study, StudyError

__all__ = ["FULL", "GRIDS", "SMOKE", "Arm", "Grid", "Study", "StudyError"]
