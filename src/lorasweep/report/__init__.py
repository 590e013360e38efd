"""The report, from the results on disk only: load.py -> analysis.py -> figures.py + render.py."""
