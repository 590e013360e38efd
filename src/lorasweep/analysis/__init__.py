"""Analyses of a study beyond its sweep: curvature at initialisation (``curvature.py``)."""
