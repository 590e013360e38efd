"""The staged evaluation pipeline: generate -> score -> aggregate, handing off through JSONL files.

Every stage leaves its file in the trial's ``eval/`` folder (``<task>.generations.jsonl``,
``<task>.scored.jsonl``, ``<task>.metrics.json``), so scoring can be re-run (``score_generations``,
``lorasweep score``) without generating again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorasweep.data import templates
from lorasweep.evals.generate import generate
from lorasweep.evals.registry import get
from lorasweep.jsonl import read_jsonl
from lorasweep.results import atomic_write_json, write_jsonl


@dataclass(frozen=True)
class GenerationSettings:
    template: str
    max_new_tokens: int
    batch_size: int
    # prompts -> completions from another engine (vLLM); None = HF generate on the given model
    generator: Callable[[list[str]], list[str]] | None = None


def run_generation(
    task: str, model, tokenizer, rows: list[dict], settings: GenerationSettings, path: Path
) -> None:
    t = get(task)
    prompts = [templates.render(settings.template, t.prompt(r), "", tokenizer)[0] for r in rows]
    if settings.generator is not None:
        completions = settings.generator(prompts)
    else:
        completions = generate(model, tokenizer, prompts, settings.max_new_tokens, settings.batch_size)
    write_jsonl(path, [{"task_id": i, "completion": c} for i, c in enumerate(completions)])


def score_generations(task: str, rows: list[dict], generations: Path, out_dir: Path) -> dict:
    preds = read_jsonl(generations)
    items, metrics = get(task).scorer.score(rows, [p["completion"] for p in preds])
    write_jsonl(out_dir / f"{task}.scored.jsonl", items)
    atomic_write_json(out_dir / f"{task}.metrics.json", metrics)
    return metrics


def evaluate(
    task: str,
    model,
    tokenizer,
    rows: list[dict],
    settings: GenerationSettings,
    out_dir: Path,
    options: dict | None = None,
) -> dict:
    """All stages for one task; returns the aggregated metrics (and leaves every stage's file).

    ``options`` carries task-specific settings (MT-Bench: ``{"judge": JudgeConfig, "judge_cache": path}``).
    """
    spec = get(task)
    if spec.run is not None:
        metrics = spec.run(model, tokenizer, rows, settings, out_dir, options or {})
    else:
        gen_path = out_dir / f"{task}.generations.jsonl"
        run_generation(task, model, tokenizer, rows, settings, gen_path)
        metrics = score_generations(task, rows, gen_path, out_dir)
    protocol = {
        "template": settings.template,
        "max_new_tokens": settings.max_new_tokens,
        "batch_size": settings.batch_size,
        "decoding": "greedy",
        # a generator names itself (a packed group's shared batches: "hf-packed"); vLLM's does not
        "backend": "hf" if settings.generator is None else getattr(settings.generator, "backend", "vllm"),
    }
    return {**metrics, "protocol": protocol}
