"""Generation for the members of a packed group in shared batches (``adapters/stacked.py``).

On a GPU, decoding is bound by reading the base weights: K adapters decoding one batch together
share that read (the argument of S-LoRA, arXiv 2311.03285, and Punica, arXiv 2310.18547, for
serving many adapters).  Each member's rows go through its own unmerged adapter
(``AdapterStack.route``), padded exactly as the member's own batch, so its greedy tokens are the
ones it generates alone up to float rounding (in fp32 on the tiny default: identical, a test checks).

The members are evaluated one after another (``sweep/trial.py``), each asking for the completions of
the same prompts; the first ask decodes them for every member at once and keeps the others'.
"""

from __future__ import annotations

from collections.abc import Callable

from lorasweep.evals.generate import generate_copies


class PackedGeneration:
    """Completions of the members at ``positions`` (of ``stack``), decoded together on first ask,
    with the pipeline's settings (``eval.max_new_tokens``, ``eval.batch_size`` prompts per batch)."""

    backend = "hf-packed"

    def __init__(self, model, stack, tokenizer, positions: list[int], max_new_tokens: int, batch_size: int):
        self.model, self.stack, self.tokenizer, self.positions = model, stack, tokenizer, positions
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.done: dict[tuple[str, ...], dict[int, list[str]]] = {}

    def generator(self, position: int) -> Callable[[list[str]], list[str]]:
        """The member at ``position``'s prompts -> completions (``GenerationSettings.generator``)."""

        def complete(prompts: list[str]) -> list[str]:
            key = tuple(prompts)
            if key not in self.done:
                self.done[key] = self._all(list(prompts))
            return self.done[key][position]

        complete.backend = self.backend  # type: ignore[attr-defined]
        return complete

    def _all(self, prompts: list[str]) -> dict[int, list[str]]:
        route = self.stack.route
        self.stack.route = self.positions
        try:
            copies = len(self.positions)
            per = generate_copies(
                self.model, self.tokenizer, prompts, self.max_new_tokens, self.batch_size, copies
            )
        finally:
            self.stack.route = route
        return dict(zip(self.positions, per, strict=True))
