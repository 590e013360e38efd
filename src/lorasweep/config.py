"""The study config: YAML loading with line numbers, ``key=value`` overrides and validation, of the
typed schema in ``schema.py`` (whose names are re-exported here).

Defaults live in the schema, in code; every field's ``help`` is its documentation (``lorasweep
config-help`` prints them).  Errors name the key (``train.batch_sizes[2]``), the file and line where
the YAML has one, and suggest the nearest valid key.  Values are checked here only for what can be
checked without loading anything (types, ranges, registry names); builders validate the rest where it
is used.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from lorasweep.errors import ConfigError, did_you_mean
from lorasweep.schema import (  # noqa: F401  (re-exported: the config's public names)
    ALL_LINEAR,
    SWEEP_BACKENDS,
    TRACKER_NAMES,
    AdapterConfig,
    BracketConfig,
    DataConfig,
    EvalConfig,
    JudgeConfig,
    ModelConfig,
    ReportConfig,
    SelectionConfig,
    StudyConfig,
    SweepConfig,
    TrainConfig,
)

# ---------------------------------------------------------------- YAML with line numbers


def _node_to_python(node: yaml.Node, prefix: str, lines: dict[str, int]) -> Any:
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k, v in node.value:
            key = str(k.value)
            child = f"{prefix}.{key}" if prefix else key
            lines[child] = k.start_mark.line + 1  # a key's line, not its value's
            out[key] = _node_to_python(v, child, lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_node_to_python(v, f"{prefix}[{i}]", lines) for i, v in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _read_yaml(path: Path) -> tuple[dict, dict[str, int]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config: {e.strerror}", str(path)) from e
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', e)}", where) from e
    lines: dict[str, int] = {}
    data = _node_to_python(node, "", lines) if node is not None else {}
    if not isinstance(data, dict):
        raise ConfigError("the config must be a mapping of keys to values", f"{path}:1")
    return data, lines


# ---------------------------------------------------------------- typed construction


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, key: str) -> Any:
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError("must not be null", key)
    if typing.get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"must be a mapping, got {value!r}", key)
        _, inner = typing.get_args(tp)
        return {str(k): _coerce(v, inner, f"{key}.{k}") for k, v in value.items()}
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            value = [value]  # a scalar where a list is expected means a one-element grid
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"must be true or false, got {value!r}", key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"must be an integer, got {value!r}", key)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"must be a number, got {value!r}", key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"must be a string, got {value!r}", key)
    raise TypeError(f"unsupported config type {tp} at {key}")


def _check_range(value: Any, meta: dict, key: str) -> None:
    items = value if isinstance(value, list) else [value]
    for i, v in enumerate(items):
        k = f"{key}[{i}]" if isinstance(value, list) else key
        if v is None:
            continue
        if "choices" in meta and v not in meta["choices"]:
            raise ConfigError(
                f"must be one of {', '.join(meta['choices'])}; got {v!r}{did_you_mean(v, meta['choices'])}", k
            )
        if "min" in meta and v < meta["min"]:
            raise ConfigError(f"must be >= {meta['min']}, got {v}", k)
        if "gt" in meta and v <= meta["gt"]:
            raise ConfigError(f"must be > {meta['gt']}, got {v}", k)
        if "lt" in meta and v >= meta["lt"]:
            raise ConfigError(f"must be < {meta['lt']}, got {v}", k)


def _build(cls: type, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in fields:
            siblings = [f"{prefix}{name}" for name in fields]
            hint = did_you_mean(full, siblings) or did_you_mean(full, _all_keys(StudyConfig))
            raise ConfigError(f"unknown key{hint}", full)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"must be a mapping (section), got {value!r}", full)
            kwargs[key] = _build(tp, value, f"{full}.")
        else:
            choices = fields[key].metadata.get("choices", ())
            if isinstance(value, bool) and {"off", "on"} & set(choices):  # YAML 1.1 reads off/on as bools
                value = "on" if value else "off"
            kwargs[key] = _coerce(value, tp, full)
            _check_range(kwargs[key], fields[key].metadata, full)
            if isinstance(kwargs[key], list) and not kwargs[key] and not fields[key].metadata.get("empty_ok"):
                raise ConfigError("must not be empty", full)
    return cls(**kwargs)


def _all_keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out += _all_keys(tp, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def field_help(cls: type = StudyConfig) -> list[tuple[str, Any, str]]:
    """(key, default, help) for every leaf key: the config's documentation."""
    default = cls()
    rows = []
    for key in _all_keys(cls):
        v = default
        for part in key.split("."):
            v = getattr(v, part)
        owner = default
        for part in key.split(".")[:-1]:
            owner = getattr(owner, part)
        meta = {f.name: f.metadata for f in dataclasses.fields(owner)}[key.split(".")[-1]]
        rows.append((key, v, meta.get("help", "")))
    return rows


# ---------------------------------------------------------------- overrides and cross-field checks


def apply_override(data: dict, item: str) -> None:
    """Apply one ``dotted.key=value`` (value parsed as YAML) to a nested dict, in place."""
    if "=" not in item:
        raise ConfigError(f"override must look like key=value, got {item!r}", "command line")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML value: {getattr(e, 'problem', e)}", f"override {item!r}") from None
    parts = key.strip().split(".")
    node = data
    for i, p in enumerate(parts[:-1]):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError("is not a section", f"override {item!r}: {'.'.join(parts[: i + 1])}")
    node[parts[-1]] = value


def _cross_checks(cfg: StudyConfig) -> None:
    from lorasweep.adapters import METHODS
    from lorasweep.evals import EVALUATORS

    for i, m in enumerate(cfg.adapter.methods):
        if m not in METHODS:
            raise ConfigError(
                f"unknown adapter method {m!r}; valid: {', '.join(METHODS)}{did_you_mean(m, METHODS)}",
                f"adapter.methods[{i}]",
            )
        if cfg.eval.backend == "vllm" and METHODS[m].export_kind != "lora":
            raise ConfigError(
                f"eval.backend=vllm serves plain LoRA adapters; {m!r} exports a "
                f"{METHODS[m].export_kind!r}: use eval.backend=hf",
                f"adapter.methods[{i}]",
            )
    for i, t in enumerate(cfg.eval.tasks):
        if t not in EVALUATORS:
            raise ConfigError(
                f"unknown evaluator {t!r}; valid: {', '.join(EVALUATORS)}{did_you_mean(t, EVALUATORS)}",
                f"eval.tasks[{i}]",
            )
        if t not in cfg.eval.data and EVALUATORS[t].default_data is None:
            raise ConfigError(f"task {t!r} has no built-in data; name a file or hub id", f"eval.data.{t}")
    for t in cfg.eval.data:
        if t not in cfg.eval.tasks:
            raise ConfigError(
                f"data for a task not in eval.tasks {cfg.eval.tasks}{did_you_mean(t, cfg.eval.tasks)}",
                f"eval.data.{t}",
            )
    for name in ("batch_sizes", "learning_rates", "seeds"):
        values = getattr(cfg.train, name)
        if len(set(values)) != len(values):
            raise ConfigError("contains duplicates", f"train.{name}")
    if len(set(cfg.report.trackers)) != len(cfg.report.trackers):
        raise ConfigError("contains duplicates", "report.trackers")
    if cfg.adapter.rank > 4096:
        raise ConfigError(f"rank {cfg.adapter.rank} is larger than any supported layer", "adapter.rank")
    task = cfg.report.metric.split(".")[0]
    if task not in cfg.eval.tasks:
        raise ConfigError(f"metric task {task!r} is not in eval.tasks {cfg.eval.tasks}", "report.metric")
    _search_checks(cfg)
    sel_metric = cfg.eval.selection.metric or cfg.report.metric
    if sel_metric.split(".")[0] not in EVALUATORS:
        raise ConfigError(
            f"unknown task in {sel_metric!r}; valid: {', '.join(EVALUATORS)}", "eval.selection.metric"
        )
    _selection_checks(cfg, sel_metric.split(".")[0])


def _search_checks(cfg: StudyConfig) -> None:
    from lorasweep.adapters import METHODS

    br = cfg.train.bracket
    if br.min_lr >= br.max_lr:
        raise ConfigError(f"must be below train.bracket.max_lr ({br.max_lr:g})", "train.bracket.min_lr")
    for m, lr in br.start_lr.items():
        if m not in METHODS:  # a method outside this study's list is allowed (configs are shared)
            raise ConfigError(
                f"unknown adapter method{did_you_mean(m, METHODS)}", f"train.bracket.start_lr.{m}"
            )
        if not br.min_lr <= lr <= br.max_lr:
            raise ConfigError(
                f"{lr:g} lies outside [min_lr, max_lr] = [{br.min_lr:g}, {br.max_lr:g}]",
                f"train.bracket.start_lr.{m}",
            )


def _selection_checks(cfg: StudyConfig, task: str) -> None:
    from lorasweep.evals import EVALUATORS

    sel = cfg.eval.selection
    if sel.from_train and sel.data is not None:
        raise ConfigError(
            "set either eval.selection.data or eval.selection.from_train", "eval.selection.data"
        )
    if sel.from_train:
        if sel.from_train >= cfg.data.num_train:
            raise ConfigError(
                f"holds out {sel.from_train} of only {cfg.data.num_train} training rows",
                "eval.selection.from_train",
            )
        if EVALUATORS[task].from_pair is None:
            raise ConfigError(
                f"task {task!r} cannot be scored on training rows; name a validation split in eval.selection.data",
                "eval.selection.from_train",
            )
    elif sel.data is None and EVALUATORS[task].validation_source(cfg.eval.data.get(task)) is None:
        raise ConfigError(
            f"task {task!r} has no built-in validation split for its data; name one (file or hub id with "
            "its split) or set eval.selection.from_train: N (the last N training rows)",
            "eval.selection.data",
        )


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> StudyConfig:
    """Read, override, type-check and validate a study config; raises ConfigError naming the key."""
    data, lines = _read_yaml(Path(path)) if path is not None else ({}, {})
    for item in overrides:
        apply_override(data, item)
    try:
        cfg = _build(StudyConfig, data, "")
        _cross_checks(cfg)
    except ConfigError as e:
        key = e.where or ""
        item = _override_for(key, overrides)
        if item is not None:  # the value came from the command line, not from the file's line
            raise ConfigError(e.message, f"override {item!r}: {key}") from None
        line = _line_for(key, lines)
        if path is not None and line:
            raise ConfigError(e.message, f"{path}:{line}: {key}") from None
        raise
    return cfg


def _override_for(key: str, overrides: typing.Sequence[str]) -> str | None:
    """The last ``key=value`` override that set ``key`` (or a section or list holding it)."""
    for item in reversed(overrides):
        target = item.split("=", 1)[0].strip()
        if "=" in item and (key == target or key.startswith((f"{target}.", f"{target}["))):
            return item
    return None


def _line_for(key: str, lines: dict[str, int]) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key.rsplit("[", 1)[0] if key.endswith("]") else key.rsplit(".", 1)[0] if "." in key else ""
    return None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> StudyConfig:
    return _build(StudyConfig, data, "")
