"""Reward-function comparison: STARC, EPIC and DARD, exact for tabular MDPs and sampled for simulators.

Tabular (exact): `epic_distance`, `dard_distance`, `starc_distance`, `distance_matrix` on arrays
R[s, a, s'] with transitions P[s, a, s']. Sampled (continuous simulators): `compare_sampled` and the
pairwise `sampled_epic` / `sampled_dard` / `sampled_starc` on batched reward callables and a
`Coverage` set. Tasks and registry reward specs: `compare_task`. Output: `DistanceReport`,
`write_report`. Conventions: docs/compare.md.
"""

from embodied.compare.report import DistanceReport, write_report
from embodied.compare.sampled import (
    Coverage,
    Estimate,
    SampledComparison,
    compare_sampled,
    sampled_dard,
    sampled_epic,
    sampled_starc,
)
from embodied.compare.simulator import collect_coverage, compare_task
from embodied.compare.tabular import (
    TabularProblem,
    dard_distance,
    distance_matrix,
    epic_distance,
    load_tabular,
    minimal_canonical,
    starc_distance,
    val_canonical,
)

__all__ = [
    "Coverage",
    "DistanceReport",
    "Estimate",
    "SampledComparison",
    "TabularProblem",
    "collect_coverage",
    "compare_sampled",
    "compare_task",
    "dard_distance",
    "distance_matrix",
    "epic_distance",
    "load_tabular",
    "minimal_canonical",
    "sampled_dard",
    "sampled_epic",
    "sampled_starc",
    "starc_distance",
    "val_canonical",
    "write_report",
]
