"""Command-line interface (`embodied ...`). Commands import heavy modules lazily."""
