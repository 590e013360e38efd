"""The judging stage: every (question, turn) of a generations file -> one judgment record.

Cached replies are reused without a request; the rest go to the backend (its concurrency limit and
retries apply), each paid-for reply is cached the moment it arrives, and a judgment whose request
finally failed is recorded with ``status: failed`` (not dropped, not cached) so the next run asks for
exactly those again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lorasweep.evals.judge import make_backend
from lorasweep.evals.judge.cache import JudgmentCache, cache_key, content_hash
from lorasweep.evals.judge.parse import parse_rating
from lorasweep.evals.judge.prompts import PROMPT_VERSION, build_messages, uses_reference
from lorasweep.evals.judge.reply import Reply

if TYPE_CHECKING:
    from lorasweep.config import JudgeConfig

FAILED = "failed"


def judge_records(
    records: list[dict], judge_cfg: JudgeConfig, cache_path: Path, log: Callable[[str], None] = lambda m: None
) -> list[dict]:
    """Judgments (question order, turn 1 then 2) of generation ``records``; see the module docstring."""
    backend = make_backend(judge_cfg)
    cache = JudgmentCache(cache_path)
    jobs = [_job(r, turn, backend.identity) for r in records for turn in (1, 2)]
    out: list[dict | None] = [None] * len(jobs)
    pending = []
    for i, job in enumerate(jobs):
        entry = cache.get(job["key"])
        if entry is None:
            pending.append(i)
        else:
            out[i] = _judgment(job, entry["text"], cached=True, attempts=0)
    log(f"judge {backend.identity}: {len(jobs) - len(pending)} cached, {len(pending)} to request")
    lock = threading.Lock()

    def on_reply(k: int, reply: Reply) -> None:
        job = jobs[pending[k]]
        if reply.text is not None:
            cache.put(job["key"], reply.text, **job["ident"])
            result = _judgment(job, reply.text, cached=False, attempts=reply.attempts)
        else:
            result = {**_base(job), "status": FAILED, "score": None, "attempts": reply.attempts}
            result["error"] = reply.error
        with lock:
            out[pending[k]] = result

    backend.judge([jobs[i]["messages"] for i in pending], on_reply)
    missing = [i for i, r in enumerate(out) if r is None]
    for i in missing:  # a backend that skipped a prompt: failed, so it is asked again next time
        out[i] = {**_base(jobs[i]), "status": FAILED, "score": None, "attempts": 0, "error": "no reply"}
    return out  # type: ignore[return-value]


def _job(record: dict, turn: int, judge: str) -> dict:
    reference = record.get("reference") if uses_reference(record["category"]) else None
    messages = build_messages(record["turns"], record["answers"], turn, record["category"], reference)
    digest = content_hash(messages)
    ident = {
        "judge": judge,
        "prompt_version": PROMPT_VERSION,
        "question_id": record["question_id"],
        "turn": turn,
        "content_hash": digest,
    }
    return {
        "key": cache_key(judge, PROMPT_VERSION, record["question_id"], turn, digest),
        "ident": ident,
        "category": record["category"],
        "reference": reference is not None,
        "messages": messages,
    }


def _base(job: dict) -> dict:
    return {**job["ident"], "category": job["category"], "with_reference": job["reference"]}


def _judgment(job: dict, text: str, cached: bool, attempts: int) -> dict:
    rating = parse_rating(text)
    return {
        **_base(job),
        "status": rating.status,
        "score": rating.score,
        "rating_raw": rating.raw,
        "cached": cached,
        "attempts": attempts,
        "judgment": text,
    }
