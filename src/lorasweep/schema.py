"""The study config's typed schema: one dataclass per section, every field with its default and its
``help`` (``lorasweep config-help`` prints them).  Loading, overrides and validation: ``config.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    num_layers: int | None = _f(
        None,
        "keep only the first N decoder layers (a truncated model: the cheap proxy of `lorasweep proxy "
        "--layers N`; null = all)",
        min=1,
    )


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
    padding_free: bool = _f(
        False,
        "train on each micro-batch as one unpadded row (sequences back to back, positions restarting; "
        "no padded token is computed; the same loss up to float rounding; not packed with other trials)",
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
        "auto",
        "auto: trials of one batch size train together in one pass over a shared frozen base (LoRA, "
        "LoRA+, rsLoRA, PiSSA, MiLoRA, OLoRA; DoRA and full fine-tuning alone; up to 8 adapters and "
        "sweep.pack_rows rows per forward, so on a CPU where it is faster: B <= 8 at the default "
        "max_micro_batch 16; local and Ray backends); equal to training alone up to float rounding. "
        "Groups depend on the search round only and an interrupted group re-runs whole, so a resumed "
        "study is bit-identical to an uninterrupted one. off: every trial alone",
        choices=("auto", "off"),
    )
    pack_methods: str = _f(
        "auto",
        "together: a group mixes methods (residual methods then keep the base W and subtract their "
        "frozen initial term, the correction form); apart: one method per group (in fp32 a residual "
        "method's group writes its residual into the base, as its trial alone does); auto: together "
        "under autocast (a GPU, where the residual methods use the correction form anyway), else apart",
        choices=("auto", "together", "apart"),
    )
    pack_generation: str = _f(
        "auto",
        "on: a packed group's members decode the evaluation prompts in shared batches, each row through "
        "its own unmerged adapter (the same greedy tokens); off: one member after another, each merged "
        "into the base; auto: on where the trials run on CUDA (decoding reads the weights once for K "
        "members), off on a CPU (measured 0.66-0.88x there in two runs, bench/packed_generation.py)",
        choices=("auto", "on", "off"),
    )
    pack_rows: int | None = _f(
        None,
        "rows of one packed forward (K adapters x the micro-batch); null: train.max_micro_batch, the "
        "memory one trial may use. Raise it where memory allows (a GPU) to pack batch sizes whose "
        "micro-batch already fills train.max_micro_batch; the trials' own splits do not change",
        min=1,
    )


@dataclass
class ReportConfig:
    metric: str = _f(
        "gsm8k.strict", "metric that picks the best LR (on validation rows) and is reported (on test rows)"
    )
    reference_config: bool = _f(
        True,
        "also run every method at one reference (batch size, LR) for claim (e) (false: claim (e) not run)",
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
    curvature_examples: int = _f(
        0,
        "compute each method's largest Hessian eigenvalue at init on this many training examples when the "
        "study runs (0 = only by `lorasweep curvature`)",
        min=0,
    )
    curvature_iters: int = _f(40, "at most this many Lanczos iterations for the curvature at init", min=1)
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
