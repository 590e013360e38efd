"""Evaluation: the task registry (registry.py) and the staged pipeline (pipeline.py)."""

from lorasweep.evals.pipeline import GenerationSettings, evaluate, run_generation, score_generations
from lorasweep.evals.registry import EVALUATORS, Task

__all__ = ["EVALUATORS", "GenerationSettings", "Task", "evaluate", "run_generation", "score_generations"]
