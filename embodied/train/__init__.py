"""Learners: SB3 training, run folders, evaluation."""
