"""The ``local`` judge: a Hugging Face model (hub id, folder, .gguf, builtin:...) run in-process.

Loaded on first use with ``lorasweep.models.load_base`` and decoded greedily with the pinned-batch
``generate`` of the evaluation pipeline; ``concurrency`` is the generation batch size here and
``max_tokens`` the reply length.  The prompt is the model's chat template when it has one, else the
messages' texts joined by blank lines.  Replies are reported batch by batch, so an interrupted run
keeps (and caches) what was already judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lorasweep.evals.judge.reply import Reply

if TYPE_CHECKING:
    from lorasweep.config import JudgeConfig

DTYPE = "float32"  # the judge's weights: it is not trained, and fp32 is exact on every device


class LocalJudge:
    def __init__(self, cfg: JudgeConfig):
        self.source = cfg.model
        self.identity = f"local:{self.source}"
        self.batch_size = cfg.concurrency
        self.max_tokens = cfg.max_tokens
        self._loaded = None

    def _model(self):
        if self._loaded is None:
            from lorasweep.models import load_base

            self._loaded = load_base(self.source, DTYPE)
        return self._loaded

    def render(self, messages: list[dict], tokenizer) -> str:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def judge(self, prompts: list[list[dict]], on_reply: Callable[[int, Reply], None]) -> None:
        from lorasweep.evals.generate import generate

        if not prompts:
            return
        model, tok = self._model()
        for start in range(0, len(prompts), self.batch_size):
            chunk = [self.render(m, tok) for m in prompts[start : start + self.batch_size]]
            try:
                texts = generate(model, tok, chunk, self.max_tokens, self.batch_size)
            except RuntimeError as e:  # e.g. out of memory: those judgments fail, the next run retries
                for i in range(len(chunk)):
                    on_reply(start + i, Reply(None, f"local generation failed: {e}", 1))
                continue
            for i, text in enumerate(texts):
                on_reply(start + i, Reply(text, None, 1))
