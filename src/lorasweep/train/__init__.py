"""Training: exact batch semantics (batching.py), LR schedules (schedule.py), the step loop (loop.py)."""
