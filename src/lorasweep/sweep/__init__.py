"""Sweeps: grid expansion and plan (grid.py), the LR search (bracket.py, search.py), one trial
(trial.py), what is done and progress (resume.py), backends by name (backends.py: local.py, ray_backend.py with ray_cluster.py)."""
