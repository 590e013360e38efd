"""The study config: one typed schema, YAML loading with line numbers, ``key=value`` overrides.

Defaults live here in code; every field's ``help`` is its documentation (``lorasweep config-help``
prints them).  Errors name the key (``train.batch_sizes[2]``), the file and line where the YAML has
one, and suggest the nearest valid key.  Values are checked here only for what can be checked without
loading anything (types, ranges, registry names); builders validate the rest where it is used.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lorasweep.errors import ConfigError, did_you_mean

# the names of sweep/backends.py's registry, here so that loading a config imports no backend (a test
# checks that they agree)
SWEEP_BACKENDS = ("local", "inprocess", "ray")
# the names of trackers.py's registry (a test checks that they agree)
TRACKER_NAMES = ("tensorboard", "mlflow", "wandb")
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    source: str = _f(
        "builtin:tinyworld",
        "base model: HF id, local folder, .gguf file, fetch:smollm2-135m or builtin:tinyworld",
    )
    dtype: str = _f("float32", "weights dtype for training", choices=("float32", "bfloat16", "float16"))


@dataclass
class DataConfig:
    train: str = _f(
        "builtin:tinyworld",
        "training data: builtin:tinyworld, a .jsonl/.json/.parquet file, or owner/name[:config][:split]",
    )
    format: str = _f(
        "auto", "row schema", choices=("auto", "gsm8k", "metamath", "alpaca", "codefeedback", "wizardlm")
    )
    num_train: int = _f(3072, "use the first N training rows (the fixed data budget per epoch)", min=1)
    template: str = _f(
        "plain", "prompt template (chat = the model's own chat template)", choices=("plain", "alpaca", "chat")
    )
    max_seq_len: int = _f(128, "truncate prompt+response to this many tokens", min=8)


@dataclass
class JudgeConfig:
    backend: str = _f("openai-compatible", "judge backend (registry name: openai-compatible, local)")
    base_url: str = _f("http://127.0.0.1:8000/v1", "openai-compatible: the API base URL")
    model: str = _f("gpt-4o-mini", "judge model name (openai-compatible) or HF id/folder (local)")
    api_key_env: str | None = _f("OPENAI_API_KEY", "name of the environment variable holding the API key")
    timeout_s: float = _f(60.0, "per-request timeout", gt=0)
    max_retries: int = _f(5, "retries on timeouts, 429 and 5xx (exponential backoff)", min=0)
    concurrency: int = _f(4, "judge requests in flight at once", min=1)
    max_tokens: int = _f(1024, "judge response length limit", min=16)


@dataclass
class SelectionConfig:
    metric: str | None = _f(
        None,
        "metric that chooses, measured on the validation rows (null = report.metric); its task needs "
        "validation rows in its own schema",
    )
    data: str | None = _f(
        None,
        "validation rows that choose LRs and batch sizes (a file, a hub id with its split, builtin:...; "
        "null = the selection task's built-in validation split); never the test rows",
    )
    from_train: int = _f(
        0,
        "N > 0: use the last N of the num_train training rows as the validation set instead "
        "(they are then not trained on)",
        min=0,
    )
    num_examples: int | None = _f(256, "validation rows used (null = all)", min=1)


@dataclass
class EvalConfig:
    tasks: list[str] = _f(["gsm8k"], "evaluators to run on every trial")
    data: dict[str, str] = _f(
        {}, "per task, its data source (file, hub id or builtin:...); a task not named uses its default"
    )
    num_examples: int | None = _f(None, "evaluate on the first N rows of each task (null = all)", min=1)
    max_new_tokens: int = _f(32, "greedy generation length limit", min=1)
    batch_size: int = _f(64, "generation batch size (pinned: it changes greedy results)", min=1)
    backend: str = _f(
        "hf", "generation engine: hf (generate) or vllm (GPU only, optional extra)", choices=("hf", "vllm")
    )
    heldout_loss: bool = _f(True, "also report response-token loss on the evaluation set")
    same_step_loss: bool = _f(
        True,
        "log the validation rows' held-out loss after optimizer steps 1, 2, 4, 8, ... (the same-step view)",
    )
    same_step_rows: int = _f(
        64, "how many validation rows (the first N) the same-step loss reads; each probe is one forward pass"
    )
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)


@dataclass
class AdapterConfig:
    methods: list[str] = _f(
        ["lora", "pissa", "milora"],
        "adapter methods: lora, pissa, milora, olora, dora, loraplus, full (docs/method.md)",
    )
    rank: int = _f(8, "adapter rank r", min=1)
    alpha: float = _f(16.0, "LoRA alpha; scaling = alpha / r (alpha / sqrt(r) with rslora)", gt=0)
    dropout: float = _f(0.0, "LoRA dropout", min=0, lt=1)
    target_modules: list[str] = _f(ALL_LINEAR, "module names that get an adapter")
    pissa_niter: int | None = _f(
        None, "PiSSA: randomised SVD with N subspace iterations (null = full SVD; MiLoRA always full)", min=1
    )
    use_rslora: bool = _f(
        False, "rank-stabilised scaling alpha / sqrt(r) (arXiv 2312.03732); every method but full"
    )
    loraplus_lr_ratio: float = _f(
        16.0, "loraplus: LR of the B matrices / LR of the A matrices (arXiv 2402.12354)", gt=0
    )


@dataclass
class BracketConfig:
    start_lr: dict[str, float] = _f(
        {},
        "per method, the LR the search starts from at the first batch size (a method not named: default_start_lr)",
    )
    default_start_lr: float = _f(1e-3, "starting LR of a method not named in start_lr", gt=0)
    factor: float = _f(
        3.1623, "coarse step between searched LRs (x factor; refinement takes half a step)", gt=1
    )
    min_lr: float = _f(1e-6, "lowest LR the search may try", gt=0)
    max_lr: float = _f(1.0, "highest LR the search may try", gt=0)
    predict_start: bool = _f(
        True,
        "start each later batch size from the previous batch size's best LR x (B/B_prev)^batch_exponent "
        "(snapped to the lattice); false: from start_lr x (B/B_smallest)^batch_exponent, all at once",
    )
    batch_exponent: float = _f(
        0.5, "LR scaling with batch size used to predict a start (0.5 = square-root rule)"
    )
    predict_by: str = _f(
        "previous",
        "with predict_start: previous (the last batch size's best LR x (B/B_prev)^batch_exponent) or fit "
        "(a power law fitted to every bracketed batch size's best LR so far, once there are two)",
        choices=("previous", "fit"),
    )
    refine: bool = _f(True, "after bracketing, evaluate once between the best and its better neighbour")
    max_points: int = _f(10, "at most this many LRs per (method, batch size)", min=3)


@dataclass
class TrainConfig:
    batch_sizes: list[int] = _f([4, 8, 16, 64, 128, 512], "effective batch sizes to sweep", min=1)
    lr_search: str = _f(
        "grid",
        "how LRs are chosen per (method, batch size): grid (every learning_rates point) or bracket "
        "(a search until the best LR has worse neighbours on both sides)",
        choices=("grid", "bracket"),
    )
    learning_rates: list[float] = _f([1e-3, 3e-3, 1e-2], "learning rates to sweep (lr_search: grid)", gt=0)
    seeds: list[int] = _f([0, 1], "seeds (data order, adapter init, dropout)", min=0)
    epochs: int = _f(1, "passes over the training data (the fixed data budget)", min=1)
    scheduler: str = _f("cosine", "learning-rate schedule", choices=("cosine", "linear", "constant"))
    warmup_ratio: float = _f(0.03, "warmup steps = ceil(ratio x optimizer steps)", min=0, lt=1)
    weight_decay: float = _f(0.0, "AdamW weight decay", min=0)
    max_grad_norm: float | None = _f(1.0, "gradient clipping (null = off)", gt=0)
    max_micro_batch: int = _f(64, "largest micro-batch per device; accumulation is derived", min=1)
    group_by_length: bool = _f(
        False,
        "cut each step's examples into micro-batches of similar length (less padding; the same examples "
        "and token-normalised loss per step, so only float rounding changes)",
    )
    divergence_factor: float = _f(10.0, "stop as diverged when loss exceeds this x the first loss", gt=1)
    bracket: BracketConfig = field(default_factory=BracketConfig)


@dataclass
class SweepConfig:
    backend: str = _f("local", "where trials run", choices=SWEEP_BACKENDS)
    workers: int = _f(
        2, "local worker processes (ray: CPUs of a cluster started here / cpus_per_trial)", min=1
    )
    threads_per_worker: int = _f(1, "torch threads per worker (1 is fastest on small CPUs)", min=1)
    ray_address: str | None = _f(None, "ray: an existing cluster ('auto', 'host:port'); null starts one here")
    cpus_per_trial: float = _f(1.0, "ray: CPUs reserved per trial", gt=0)
    gpus_per_trial: float = _f(0.0, "ray: GPUs per trial (fractions pack trials onto one GPU)", min=0)
    pack: str = _f(
        "off",
        "auto: trials of one method and batch size (LoRA, PiSSA, MiLoRA; fp32) train together in one pass "
        "over a shared frozen base (up to 8 adapters and train.max_micro_batch rows per forward; local "
        "backends); equal to training alone up to float rounding, which can flip a greedy answer, so a "
        "resumed study regrouped differently is not bit-identical: off (every trial alone) by default",
        choices=("auto", "off"),
    )


@dataclass
class ReportConfig:
    metric: str = _f(
        "gsm8k.strict", "metric that picks the best LR (on validation rows) and is reported (on test rows)"
    )
    reference_batch_size: int | None = _f(None, "reference config batch size (null = 128 if swept)")
    reference_lr: float | None = _f(
        None, "reference config LR (null = the middle of the grid; bracket: the first method's start LR)"
    )
    confidence: float = _f(0.95, "confidence level of every interval", gt=0, lt=1)
    bootstrap: int = _f(2000, "bootstrap resamples per interval", min=100)
    equivalence_margin: float = _f(3.0, "claim (b): LoRA 'matches' a method within this many points", gt=0)
    collapse_points: float = _f(10.0, "claim (d): a drop of more than this many points is a collapse", gt=0)
    spread_points: float = _f(
        10.0, "claim (a): batch size moves accuracy by more than this many points", gt=0
    )
    cost_tolerance: float = _f(
        2.0,
        "cost frontier: recommend the cheapest batch size whose validation score is within this many "
        "points of the best",
        min=0,
    )
    cost_axis: str = _f("steps", "what 'cheapest' counts", choices=("steps", "tokens", "seconds", "flops"))
    trackers: list[str] = _f(
        [],
        "also send each trial's step metrics and final results to these experiment trackers, one run per "
        "trial under <output_dir>/trackers/ (pip install 'lorasweep[trackers]' for tensorboard)",
        choices=TRACKER_NAMES,
        empty_ok=True,
    )


@dataclass
class StudyConfig:
    name: str = _f("study", "study name")
    output_dir: str = _f("runs/study", "run directory (results, report)")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


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
