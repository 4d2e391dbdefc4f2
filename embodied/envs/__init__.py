"""Environments: simulator adapters, task wrappers, frame capture."""

from embodied.envs.make import make, make_vec, resolve

__all__ = ["make", "make_vec", "resolve"]
