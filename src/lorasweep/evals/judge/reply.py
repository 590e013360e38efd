"""What every judge backend returns, and the one method a backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Reply:
    text: str | None  # the judge's reply; None when the judgment failed
    error: str | None  # why it failed (never contains the API key)
    attempts: int  # requests sent (0: not sent at all)


class JudgeBackend(Protocol):
    identity: str  # "backend:model", part of every cache key

    def judge(self, prompts: list[list[dict]], on_reply: Callable[[int, Reply], None]) -> None:
        """Answer every prompt (chat messages); call ``on_reply(i, reply)`` as soon as prompt i ends.

        Failures are replies with an error, never exceptions; only a misconfiguration raises.
        """
        ...
