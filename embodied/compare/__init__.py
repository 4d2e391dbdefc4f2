"""Reward-function comparison: STARC, EPIC and DARD, exact for tabular MDPs and sampled for simulators."""

from embodied.compare.tabular import dard_distance, distance_matrix, epic_distance, starc_distance

__all__ = ["dard_distance", "distance_matrix", "epic_distance", "starc_distance"]
