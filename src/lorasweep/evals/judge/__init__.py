"""LLM judges by registry name, the judgment cache, and the judging stage that ties them together.

Adding a judge = one module with a class implementing ``reply.JudgeBackend`` + one line in ``BACKENDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorasweep.errors import UserError, did_you_mean
from lorasweep.evals.judge.local import LocalJudge
from lorasweep.evals.judge.openai_compatible import OpenAICompatibleJudge
from lorasweep.evals.judge.reply import JudgeBackend, Reply

if TYPE_CHECKING:  # config.py validates registry names, so importing it here would close a loop
    from lorasweep.config import JudgeConfig

BACKENDS = {
    "openai-compatible": OpenAICompatibleJudge,
    "local": LocalJudge,
}


def make_backend(cfg: JudgeConfig) -> JudgeBackend:
    """The judge described by ``cfg`` (the ``eval.judge`` section)."""
    name = cfg.backend
    if name not in BACKENDS:
        raise UserError(
            f"unknown judge backend {name!r}; valid: {', '.join(BACKENDS)}{did_you_mean(name, BACKENDS)}",
            "eval.judge.backend",
        )
    return BACKENDS[name](cfg)


__all__ = ["BACKENDS", "JudgeBackend", "Reply", "make_backend"]
