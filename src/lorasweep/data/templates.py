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


def chat(instruction: str, response: str, tokenizer) -> tuple[str, str]:
    """The model's own chat template (one user turn, then the assistant's reply)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("template 'chat' needs a tokenizer with a chat template; use 'alpaca' or 'plain'")
    messages = [{"role": "user", "content": instruction}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt, response


TEMPLATES = {"plain": plain, "alpaca": alpaca}


def render(template: str, instruction: str, response: str = "", tokenizer=None) -> tuple[str, str]:
    """(prompt, response) text for ``template``; ``chat`` uses the tokenizer's chat template."""
    if template == "chat":
        return chat(instruction, response, tokenizer)
    try:
        return TEMPLATES[template](instruction, response)
    except KeyError:
        raise ValueError(f"unknown template {template!r}; valid: chat, {', '.join(TEMPLATES)}") from None
