"""What every trial of a study loads, loaded once per process: the tokenised training set, the test
rows and the validation rows (trials in one worker share them; callers must not mutate them)."""

from __future__ import annotations

import functools

from lorasweep.config import StudyConfig
from lorasweep.data import sources, templates
from lorasweep.data.tokenize import encode


def n_train(cfg: StudyConfig) -> int:
    """Training rows actually trained on: the budget less any rows held out for validation."""
    return cfg.data.num_train - cfg.eval.selection.from_train


def encoded_train(cfg: StudyConfig) -> list:
    """The tokenised training set of a study."""
    d = cfg.data
    return _encoded_train(d.train, d.format, cfg.model.source, n_train(cfg), d.template, d.max_seq_len)


@functools.lru_cache(maxsize=4)
def _encoded_train(source: str, fmt: str, model_source: str, n: int, template: str, max_len: int) -> list:
    from lorasweep.models import load_tokenizer

    tok = load_tokenizer(model_source)
    pairs = sources.load_training_pairs(source, fmt, n)
    return [encode(tok, *templates.render(template, q, a, tok), max_len) for q, a in pairs]


@functools.lru_cache(maxsize=16)
def rows(source: str, split: str, n: int | None) -> list[dict]:
    """The first ``n`` rows (None: all) of ``split`` of ``source``."""
    return sources.load_rows(source, split, n)


@functools.lru_cache(maxsize=4)
def held_out_pairs(source: str, fmt: str, budget: int, held_out: int) -> list[tuple[str, str]]:
    """The last ``held_out`` of the first ``budget`` training rows (never trained on: see ``n_train``)."""
    return sources.load_training_pairs(source, fmt, budget)[budget - held_out :]
