"""Prompt templates: a row's instruction becomes (prompt, response); loss falls on the response only."""

from __future__ import annotations

# PiSSA's recipe (fxmeng/pissa-dataset) uses the Alpaca prompt without input; target = output + EOS.
ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)


def plain(instruction: str, response: str) -> tuple[str, str]:
    return f"Question: {instruction}\nAnswer:", f" {response}"


def alpaca(instruction: str, response: str) -> tuple[str, str]:
    return ALPACA.format(instruction=instruction), response


TEMPLATES = {"plain": plain, "alpaca": alpaca}


def render(template: str, instruction: str, response: str = "") -> tuple[str, str]:
    try:
        return TEMPLATES[template](instruction, response)
    except KeyError:
        raise ValueError(f"unknown template {template!r}; valid: {', '.join(TEMPLATES)}") from None
