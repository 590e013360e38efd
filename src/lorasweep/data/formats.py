"""Training-data schemas, by registry name: each maps one published row format to (instruction, response).

- ``gsm8k``        ``question`` / ``answer``                         (GSM8K, TinyWorld)
- ``metamath``     ``query`` / ``response``                          (MetaMathQA)
- ``alpaca``       ``instruction`` [/ ``input``] / ``output``        (fxmeng/pissa-dataset subsets, Alpaca)
- ``codefeedback`` ``query`` / ``answer``                            (CodeFeedback-Filtered-Instruction)
- ``wizardlm``     ``conversations``: [{from: human, value}, {from: gpt, value}]  (WizardLM-Evol-Instruct;
                   the first human turn and the first reply after it)
``auto`` picks the first whose keys a row has.  Errors name the missing key and the row's ``file:line``.
"""

from __future__ import annotations

from collections.abc import Callable

from lorasweep.errors import UserError


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"missing or empty string field {key!r}", where)
    return value


def _pair(q: str, a: str) -> Callable[[dict, str], tuple[str, str]]:
    return lambda row, where: (_text(row, q, where), _text(row, a, where))


def _alpaca(row: dict, where: str) -> tuple[str, str]:
    instruction = _text(row, "instruction", where)
    extra = row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise UserError("field 'input' must be a string", where)
    return (f"{instruction}\n{extra}" if extra else instruction), _text(row, "output", where)


def _wizardlm(row: dict, where: str) -> tuple[str, str]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise UserError("field 'conversations' must be a list of {from, value} objects", where)
    for i, t in enumerate(turns[:-1]):
        if t.get("from") == "human" and turns[i + 1].get("from") == "gpt":
            return _text(t, "value", where), _text(turns[i + 1], "value", where)
    raise UserError("no human turn followed by a gpt turn in 'conversations'", where)


FORMATS: dict[str, tuple[tuple[str, ...], Callable[[dict, str], tuple[str, str]]]] = {
    "gsm8k": (("question", "answer"), _pair("question", "answer")),
    "metamath": (("query", "response"), _pair("query", "response")),
    "alpaca": (("instruction", "output"), _alpaca),
    "codefeedback": (("query", "answer"), _pair("query", "answer")),
    "wizardlm": (("conversations",), _wizardlm),
}


def detect(row: dict, where: str) -> str:
    if not isinstance(row, dict):
        raise UserError("each row must be a JSON object", where)
    for name, (keys, _) in FORMATS.items():
        if all(k in row for k in keys):
            return name
    known = "; ".join(f"{n}: {'/'.join(k)}" for n, (k, _) in FORMATS.items())
    raise UserError(f"row has keys {sorted(row)}, matching no known schema ({known})", where)


def to_pair(row: dict, fmt: str, where: str) -> tuple[str, str]:
    """(instruction, response) of ``row`` in schema ``fmt`` (or ``auto``)."""
    if not isinstance(row, dict):
        raise UserError("each row must be a JSON object", where)
    name = detect(row, where) if fmt == "auto" else fmt
    if name not in FORMATS:
        raise UserError(f"unknown data format {fmt!r}; valid: auto, {', '.join(FORMATS)}", "data.format")
    return FORMATS[name][1](row, where)
