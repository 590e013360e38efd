"""Evaluators by registry name, and the staged pipeline generate -> extract/score -> aggregate.

Each stage hands off through a JSONL file in the trial's ``eval/`` folder, so scoring can be re-run
(``score_generations``) without generating again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasweep.data import templates
from lorasweep.evals import gsm8k
from lorasweep.evals.generate import generate
from lorasweep.results import atomic_write_json, read_jsonl, write_jsonl


@dataclass(frozen=True)
class Gsm8kEvaluator:
    """Exact-match accuracy on GSM8K-format rows (``question``, ``answer`` ending in ``#### N``)."""

    name: str = "gsm8k"

    def score(self, rows: list[dict], completions: list[str]) -> tuple[list[dict], dict]:
        items = []
        for i, (row, completion) in enumerate(zip(rows, completions, strict=True)):
            gold = gsm8k.reference_value(row["answer"])
            items.append(
                {
                    "task_id": i,
                    "gold": gold,
                    "completion": completion,
                    "scores": gsm8k.score_item(completion, gold),
                }
            )
        metrics = gsm8k.aggregate(items)
        metrics["n"] = len(items)
        return items, metrics


EVALUATORS = {"gsm8k": Gsm8kEvaluator()}


@dataclass(frozen=True)
class GenerationSettings:
    template: str
    max_new_tokens: int
    batch_size: int


def run_generation(model, tokenizer, rows: list[dict], settings: GenerationSettings, path: Path) -> None:
    prompts = [templates.render(settings.template, r["question"])[0] for r in rows]
    completions = generate(model, tokenizer, prompts, settings.max_new_tokens, settings.batch_size)
    write_jsonl(path, [{"task_id": i, "completion": c} for i, c in enumerate(completions)])


def score_generations(task: str, rows: list[dict], generations: Path, out_dir: Path) -> dict:
    preds = read_jsonl(generations)
    items, metrics = EVALUATORS[task].score(rows, [p["completion"] for p in preds])
    write_jsonl(out_dir / f"{task}.scored.jsonl", items)
    atomic_write_json(out_dir / f"{task}.metrics.json", metrics)
    return metrics


def evaluate(
    task: str, model, tokenizer, rows: list[dict], settings: GenerationSettings, out_dir: Path
) -> dict:
    """All stages for one task; returns the aggregated metrics (and leaves every stage's file)."""
    gen_path = out_dir / f"{task}.generations.jsonl"
    run_generation(model, tokenizer, rows, settings, gen_path)
    metrics = score_generations(task, rows, gen_path, out_dir)
    return {
        **metrics,
        "protocol": {
            "template": settings.template,
            "max_new_tokens": settings.max_new_tokens,
            "batch_size": settings.batch_size,
            "decoding": "greedy",
        },
    }
