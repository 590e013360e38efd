"""Sweeps: grid expansion and plan (grid.py), one trial (trial.py), backends (local.py), run lock."""
