"""Rollout videos with reward overlays."""
