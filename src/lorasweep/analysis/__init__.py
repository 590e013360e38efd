"""Analyses beyond the sweep: curvature at initialisation (``curvature.py``, ``at_init.py``) and best
learning rate against batch size (``lr_batch.py``)."""
