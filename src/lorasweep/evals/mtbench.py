"""MT-Bench (Zheng et al. 2023): 80 two-turn questions in 8 categories, answered by the model, graded 1-10
by an LLM judge (``evals/judge/``).

Stages hand off through files in the trial's ``eval/`` folder, so each can be re-run alone:
  mtbench.generations.jsonl   one record per question: both turns, both answers, the reference
  mtbench.judgments.jsonl     one record per (question, turn): status, score, the judge's text
  mtbench.judge-cache.jsonl   every judge reply paid for (unless ``options["judge_cache"]`` names a
                              shared file, e.g. one per run directory)
  mtbench.metrics.json        the aggregate
``run_mtbench`` does all three (the ``Task.run`` hook); ``judge_generations`` re-judges an existing
generations file (after a judge outage, or with another judge) without generating again.

Data (the question schemas and ``builtin:mtbench``): ``data/mtbench.py``.

Two-turn prompts: turn 2 sees turn 1's question and the model's own (stripped) answer.  With the
``chat`` template they are three chat messages (user, assistant, user) through the tokenizer's chat
template; with ``plain`` / ``alpaca`` the transcript continues in the template's own markers
(``FOLLOW_UP``): ``<turn-1 prompt><answer>\\nQuestion: ...\\nAnswer:`` or
``...<answer>\\n\\n### Instruction:\\n...\\n\\n### Response:``.  Generation is greedy unless
``options["temperatures"]`` gives per-category temperatures (FastChat's are ``FASTCHAT_TEMPERATURES``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lorasweep.data import templates
from lorasweep.data.mtbench import load_builtin as load_builtin
from lorasweep.data.mtbench import load_questions as load_questions
from lorasweep.data.mtbench import load_references as load_references
from lorasweep.data.mtbench import normalise
from lorasweep.errors import UserError
from lorasweep.evals.generate import generate
from lorasweep.evals.judge import make_backend
from lorasweep.evals.judge.parse import OK, OUT_OF_RANGE, UNPARSEABLE
from lorasweep.evals.judge.prompts import PROMPT_VERSION
from lorasweep.evals.judge.stage import FAILED, judge_records
from lorasweep.jsonl import read_jsonl
from lorasweep.results import atomic_write_json, write_jsonl

if TYPE_CHECKING:
    from lorasweep.config import JudgeConfig

CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
# FastChat's llm_judge temperature_config, for sampling like the MT-Bench paper (default here: greedy)
FASTCHAT_TEMPERATURES = {
    "writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0,
    "coding": 0.0, "reasoning": 0.0, "stem": 0.1, "humanities": 0.1,
}  # fmt: skip
FOLLOW_UP = {
    "plain": "\nQuestion: {question}\nAnswer:",
    "alpaca": "\n\n### Instruction:\n{question}\n\n### Response:",
}
GENERATIONS = "mtbench.generations.jsonl"
JUDGMENTS = "mtbench.judgments.jsonl"
CACHE = "mtbench.judge-cache.jsonl"
METRICS = "mtbench.metrics.json"


# ---------------------------------------------------------------- two-turn generation


def conversation_prompt(template: str, turns: list[str], answers: list[str], tokenizer) -> str:
    """The prompt for turn ``len(answers) + 1``: earlier questions with the model's own answers."""
    if not answers:
        return templates.render(template, turns[0], "", tokenizer)[0]
    if template == "chat":
        templates.render(template, turns[0], "", tokenizer)  # raises if the tokenizer has no template
        messages = [
            {"role": "user", "content": turns[0]},
            {"role": "assistant", "content": answers[0]},
            {"role": "user", "content": turns[1]},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template not in FOLLOW_UP:
        raise ValueError(f"no two-turn form for template {template!r}; valid: chat, {', '.join(FOLLOW_UP)}")
    prompt, response = templates.render(template, turns[0], answers[0], tokenizer)
    return prompt + response + FOLLOW_UP[template].format(question=turns[1])


class _Sampling:
    """``generate.generate`` decodes greedily; this hands its batching a model that samples instead."""

    def __init__(self, model, temperature: float):
        self.model, self.temperature = model, temperature

    def parameters(self):
        return self.model.parameters()

    def generate(self, **kwargs):
        kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        return self.model.generate(**kwargs)


def generate_answers(
    model,
    tokenizer,
    questions: list[dict],
    template: str,
    max_new_tokens: int,
    batch_size: int,
    temperatures: dict[str, float] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Both turns of every question, batched per turn (and per temperature); one record per question."""
    temps = [float((temperatures or {}).get(q["category"], 0.0)) for q in questions]
    answers: list[list[str]] = [[] for _ in questions]
    for _turn in (1, 2):
        prompts = [
            conversation_prompt(template, q["turns"], a, tokenizer)
            for q, a in zip(questions, answers, strict=True)
        ]
        for temp in sorted(set(temps)):
            idx = [i for i, t in enumerate(temps) if t == temp]
            runner = model
            if temp > 0:
                torch.manual_seed(seed)
                runner = _Sampling(model, temp)
            texts = generate(runner, tokenizer, [prompts[i] for i in idx], max_new_tokens, batch_size)
            for i, text in zip(idx, texts, strict=True):
                answers[i].append(text.strip())  # FastChat strips answers too
    return [{**q, "answers": a, "temperature": t} for q, a, t in zip(questions, answers, temps, strict=True)]


# ---------------------------------------------------------------- aggregate


def aggregate(judgments: list[dict], n_questions: int) -> dict:
    """Per-trial metrics from judgment records (pure).

    ``score`` is the mean of every valid rating over both turns (FastChat's overall average; the mean
    of ``turn_1`` and ``turn_2`` when nothing is missing).  Unparseable and out-of-range ratings are
    counted, never averaged.  While any judgment has failed, ``score`` is None (an incomplete number
    is not silently reported); ``partial_score`` is the mean of what there is.
    """
    scores = [j["score"] for j in judgments if j["status"] == OK]
    statuses = [j["status"] for j in judgments]
    n_failed = statuses.count(FAILED)
    by_category: dict[str, list[float]] = {}
    for j in judgments:
        if j["status"] == OK:
            by_category.setdefault(j["category"], []).append(j["score"])
    order = [c for c in CATEGORIES if c in by_category] + sorted(set(by_category) - set(CATEGORIES))
    partial = _mean(scores)
    return {
        "score": partial if n_failed == 0 else None,
        "partial_score": partial,
        "turn_1": _mean([j["score"] for j in judgments if j["status"] == OK and j["turn"] == 1]),
        "turn_2": _mean([j["score"] for j in judgments if j["status"] == OK and j["turn"] == 2]),
        "category": {c: _mean(by_category[c]) for c in order},
        "n_questions": n_questions,
        "n_judgments": len(judgments),
        "n_scored": len(scores),
        "n_unparseable": statuses.count(UNPARSEABLE) + statuses.count(OUT_OF_RANGE),
        "n_out_of_range": statuses.count(OUT_OF_RANGE),
        "n_failed": n_failed,
        "complete": n_failed == 0,
    }


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


# ---------------------------------------------------------------- stages


def run_mtbench(model, tokenizer, rows: list[dict], settings, out_dir: Path, options: dict) -> dict:
    """The ``Task.run`` hook: generate both turns -> judge -> aggregate; returns the metrics.

    ``settings`` has ``template``, ``max_new_tokens``, ``batch_size``; ``options`` has ``judge`` (the
    ``eval.judge`` section, a ``config.JudgeConfig``) and optionally ``judge_cache`` (a path), ``temperatures``
    (category -> temperature), ``seed`` and ``log`` (a callable taking one line).
    """
    questions = []
    for i, row in enumerate(rows):
        try:
            questions.append(normalise(row))
        except ValueError as e:
            raise UserError(str(e), f"mtbench row {i}") from None
    judge_cfg = options.get("judge")
    if judge_cfg is None:
        raise UserError("MT-Bench needs a judge", "eval.judge")
    make_backend(judge_cfg)  # a bad backend name or a missing API key fails before hours of generation
    temperatures = _check_temperatures(options.get("temperatures"))
    records = generate_answers(
        model,
        tokenizer,
        questions,
        settings.template,
        settings.max_new_tokens,
        settings.batch_size,
        temperatures,
        int(options.get("seed", 0)),
    )
    write_jsonl(Path(out_dir) / GENERATIONS, records)
    return judge_generations(out_dir, judge_cfg, options.get("judge_cache"), options.get("log"))


def judge_generations(
    out_dir: Path,
    judge_cfg: JudgeConfig,
    cache_path: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Judge (only what the cache lacks) and aggregate an existing ``mtbench.generations.jsonl``."""
    out_dir = Path(out_dir)
    path = out_dir / GENERATIONS
    if not path.is_file():
        raise UserError("no MT-Bench generations to judge (run the evaluation first)", str(path))
    records = read_jsonl(path)
    for i, r in enumerate(records):
        if not all(k in r for k in ("question_id", "category", "turns")) or len(r.get("answers", ())) != 2:
            raise UserError(f"record {i} needs question_id, category, turns and two answers", str(path))
    cache = Path(cache_path) if cache_path else out_dir / CACHE
    judgments = judge_records(records, judge_cfg, cache, log or (lambda m: None))
    write_jsonl(out_dir / JUDGMENTS, judgments)
    metrics = aggregate(judgments, len(records))
    metrics["judge"] = judgments[0]["judge"] if judgments else None
    metrics["prompt_version"] = PROMPT_VERSION
    metrics["decoding"] = "greedy" if all(r.get("temperature", 0) == 0 for r in records) else "sampled"
    atomic_write_json(out_dir / METRICS, metrics)
    return metrics


def _check_temperatures(value: object) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UserError("must map category -> temperature", "mtbench temperatures")
    for category, t in value.items():
        if category not in CATEGORIES:
            raise UserError(
                f"unknown category {category!r}; valid: {', '.join(CATEGORIES)}", "mtbench temperatures"
            )
        if not isinstance(t, int | float) or t < 0:
            raise UserError(
                f"temperature of {category!r} must be a number >= 0, got {t!r}", "mtbench temperatures"
            )
    return {c: float(t) for c, t in value.items()}
