"""The evaluation a study runs on every model (the baseline and each trial): every configured task on
its test rows (reported), and the selection task on its validation rows (every choice reads these).

Rows come from ``data/cache.py``; generation, scoring and judging from ``pipeline.py`` and the task
registry; the held-out response-token loss from ``heldout.py``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from lorasweep.config import StudyConfig
from lorasweep.data import cache
from lorasweep.evals.registry import EVALUATORS, data_source, get


def eval_rows(cfg: StudyConfig, task: str) -> list[dict]:
    """The test rows of ``task``.  Reported, never chosen on."""
    return cache.rows(data_source(task, cfg.eval.data), "test", cfg.eval.num_examples)


def selection_metric(cfg: StudyConfig) -> str:
    """The metric every choice maximises, on validation rows."""
    return cfg.eval.selection.metric or cfg.report.metric


def selection_task(cfg: StudyConfig) -> str:
    return selection_metric(cfg).split(".")[0]


def validation_source(cfg: StudyConfig) -> str:
    """Where the validation rows come from, in words (for plan and the report)."""
    sel, task = cfg.eval.selection, selection_task(cfg)
    if sel.from_train:
        return f"the last {sel.from_train} of the first {cfg.data.num_train} rows of {cfg.data.train} (not trained on)"
    source = sel.data or get(task).validation_source(cfg.eval.data.get(task))
    return f"{source} (validation split)" if source and source.startswith("builtin:") else str(source)


def validation_rows(cfg: StudyConfig) -> list[dict]:
    """The validation rows of the selection task: every choice (LR, batch size) is made on these."""
    sel, task = cfg.eval.selection, selection_task(cfg)
    if sel.from_train:
        pairs = cache.held_out_pairs(cfg.data.train, cfg.data.format, cfg.data.num_train, sel.from_train)
        found = [get(task).from_pair(q, a) for q, a in pairs]
        return found[: sel.num_examples] if sel.num_examples is not None else found
    source = sel.data or get(task).validation_source(cfg.eval.data.get(task))
    return cache.rows(source, "validation", sel.num_examples)


def evaluate_model(
    cfg: StudyConfig, model, tok, out_dir: Path, validation_dir: Path, judge_cache: Path, generator=None
) -> dict:
    """Every configured task on its test rows (files in ``out_dir``), and the selection task on its
    validation rows (under ``"validation"``, files in ``validation_dir``), each with generation,
    scoring and held-out loss -> metrics by task.  ``judge_cache``: one per run, so a re-run trial
    never pays for a judgment twice."""
    metrics = {}
    for task in cfg.eval.tasks:
        metrics[task] = _evaluate_rows(
            cfg, task, eval_rows(cfg, task), model, tok, out_dir, judge_cache, generator
        )
    task = selection_task(cfg)
    val = _evaluate_rows(cfg, task, validation_rows(cfg), model, tok, validation_dir, judge_cache, generator)
    metrics["validation"] = {task: val}
    return metrics


def _evaluate_rows(
    cfg: StudyConfig, task: str, rows, model, tok, out_dir: Path, judge_cache: Path, generator
) -> dict:
    from lorasweep.evals.heldout import heldout_loss
    from lorasweep.evals.pipeline import GenerationSettings, evaluate

    settings = GenerationSettings(
        cfg.data.template, cfg.eval.max_new_tokens, cfg.eval.batch_size, generator=generator
    )
    options = {"judge": cfg.eval.judge, "judge_cache": str(judge_cache)}
    metrics = evaluate(task, model, tok, rows, settings, out_dir, options)
    spec = EVALUATORS[task]
    if cfg.eval.heldout_loss and spec.reference is not None:
        enc = [
            reference_encoding(
                tok, cfg.data.template, spec.prompt(r), spec.reference(r), cfg.data.max_seq_len
            )
            for r in rows
        ]
        metrics["heldout_loss"] = heldout_loss(model, enc, tok.pad_token_id, cfg.eval.batch_size)
    return metrics


def same_step_rows(cfg: StudyConfig, tok) -> list | None:
    """The encoded validation rows the same-step view reads (``eval.same_step_rows`` of them, encoded
    as training encodes), or None when it is switched off or the task has no reference answers."""

    spec = EVALUATORS[selection_task(cfg)]
    if not cfg.eval.same_step_loss or spec.reference is None:
        return None
    return [
        reference_encoding(tok, cfg.data.template, spec.prompt(r), spec.reference(r), cfg.data.max_seq_len)
        for r in validation_rows(cfg)[: cfg.eval.same_step_rows]
    ]


@functools.lru_cache(maxsize=16384)
def reference_encoding(tok, template: str, prompt: str, reference: str, max_len: int):
    """A row with its reference answer, encoded as training encodes it (prompt masked), once per
    tokenizer: the held-out loss of every member of a packed group reads the same rows."""
    from lorasweep.data import templates, tokenize

    return tokenize.encode(tok, *templates.render(template, prompt, reference, tok), max_len)
