"""A packed group trains each member exactly as its trial alone (fp32, dropout 0 unless said): the same
per-step losses, gradient norms and final adapter tensors (rel <= 1e-5), every adapted layer trained in
every member, and a diverging member leaves without changing the others' numbers."""

from __future__ import annotations

import math

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from lorasweep.adapters import AdapterSpec, attach, get, stacked
from lorasweep.train import batching, loop, packed
from tests.conftest import micro_llama
from tests.train.test_accumulation import variable_examples

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SPLIT = batching.derive_split(4, 2)  # micro-batch 2 x accumulation 2
MEMBERS = [(1e-3, 0), (3e-3, 0), (1e-2, 0), (3e-3, 1)]  # (LR, seed): three LRs, and another seed
TOL = 1e-5


def adapter_spec(
    seed: int, dropout: float = 0.0, rslora: bool = False, autocast: bool = False
) -> AdapterSpec:
    return AdapterSpec(
        rank=4,
        alpha=8.0,
        dropout=dropout,
        target_modules=TARGETS,
        seed=seed,
        use_rslora=rslora,
        autocast=autocast,
    )


def train_spec(lr: float, seed: int) -> loop.TrainSpec:
    return loop.TrainSpec(SPLIT, lr=lr, seed=seed, warmup_ratio=0.25)


def alone(
    method: str,
    lr: float,
    seed: int,
    examples,
    dropout: float = 0.0,
    acc: Accelerator | None = None,
    rslora=False,
):
    """One trial trained as ``run_trial`` trains it: PEFT model, the method's parameter groups,
    ``loop.train`` (``acc``: default CPU)."""
    torch.manual_seed(seed)
    acc = acc or Accelerator(cpu=True)
    base = micro_llama().to(acc.device)
    spec = adapter_spec(seed, dropout, rslora, acc.mixed_precision != "no")
    model = acc.prepare_model(attach(method, base, spec))
    steps: list[dict] = []
    groups = get(method).param_groups(model, spec)
    result = loop.train(model, examples, train_spec(lr, seed), 0, acc, steps.append, groups)
    state = {
        n: (m.lora_A["default"].weight.detach().clone(), m.lora_B["default"].weight.detach().clone())
        for n, m in stacked.lora_layers(model).items()
    }
    return result, steps, state


def together(
    method: str, members, examples, dropout: float = 0.0, acc: Accelerator | None = None, rslora=False
):
    """The same trials packed: one base, stacked adapters, ``train_packed`` (as the sweep's packed
    group: base on the device first, the model prepared by ``acc`` for its autocast; default CPU).
    ``members``: (LR, seed), or (LR, seed, method) for a group that mixes methods."""
    dev = acc.device if acc is not None else torch.device("cpu")
    autocast = acc is not None and acc.mixed_precision != "no"
    base = micro_llama().to(dev)
    keys = [(m[2] if len(m) == 3 else method, m[1]) for m in members]
    specs = {key: adapter_spec(key[1], dropout, rslora, autocast) for key in sorted(set(keys))}
    init = stacked.initialise(base, specs)
    stack = init.install(base, keys, dropout)
    model = acc.prepare_model(base) if acc is not None else base
    steps: list[list[dict]] = [[] for _ in members]
    left: dict[int, dict] = {}
    out = packed.train_packed(
        model,
        stack,
        examples,
        [train_spec(m[0], m[1]) for m in members],
        0,
        dev,
        [s.append for s in steps],
        lambda k, result, state: left.__setitem__(k, state),
    )
    finished = [k for k, r in enumerate(out) if r.status == "completed"]
    states = {k: stack.member_state(pos) for pos, k in enumerate(finished)} | left
    return out, steps, states, init


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative difference in the Frobenius norm (in float64: a diverged member's weights are huge)."""
    a, b = a.double().cpu(), b.double().cpu()  # a member's state is a CPU copy; a trial's may be on a GPU
    return ((a - b).norm() / b.norm()).item()


def close(a: float, b: float, tol: float = TOL) -> bool:
    if not math.isfinite(b):
        return str(a) == str(b)  # nan == nan, inf == inf
    return abs(a - b) <= tol * abs(b)


def assert_same_trial(packed_run, alone_run, tol: float = TOL) -> None:
    (r, steps, state), (r1, steps1, state1) = packed_run, alone_run
    assert r.status == r1.status and r.steps_done == r1.steps_done and r.diverged_at == r1.diverged_at
    assert (r.label_tokens, r.input_tokens) == (r1.label_tokens, r1.input_tokens)
    assert len(steps) == len(steps1) == r1.steps_done
    for a, b in zip(steps, steps1, strict=True):
        assert (a["step"], a["tokens"], a["lr"]) == (b["step"], b["tokens"], b["lr"])
        assert close(a["loss"], b["loss"], tol) and close(a["grad_norm"], b["grad_norm"], tol), (a, b)
        # the gradient noise scale (micro 2 x accumulation 2): the same fields, the same estimates (a
        # difference of squared norms, so it keeps fewer digits than the loss)
        assert a.keys() == b.keys()
        for key in ("noise_g2", "noise_trace", "noise_b_small", "noise_b_big"):
            if key in b:
                assert abs(a[key] - b[key]) <= max(1e-3, 10 * tol) * abs(b[key]) + 1e-9, (key, a, b)
    noise, noise1 = r.noise_scale, r1.noise_scale
    assert noise["estimable"] == noise1["estimable"]
    if noise1["estimable"]:
        assert noise["steps"] == noise1["steps"]
        for key in ("grad_sq", "trace_sigma"):
            assert abs(noise[key] - noise1[key]) <= max(1e-3, 10 * tol) * abs(noise1[key]) + 1e-9, key
    assert list(state) == list(state1)
    for name, (a, b) in state1.items():
        assert rel(state[name][0], a) <= tol and rel(state[name][1], b) <= tol, name


@pytest.mark.parametrize(
    ("method", "rslora"),
    [
        ("lora", False),
        ("pissa", False),
        ("milora", False),
        ("olora", False),
        ("loraplus", False),
        ("lora", True),
    ],
)
def test_packed_group_equals_its_trials_alone(method, rslora):
    """Every method that packs (``stacked.PACKABLE``), and rsLoRA's scaling.  LoRA+ at LRs / its
    ratio (16): its B matrices then move at the LRs the others use (at 16x those, 0.16 for B, the
    trajectories are chaotic enough that rounding alone moves a grad norm by ~1e-4)."""
    examples = variable_examples(16)
    members = [(lr / 16, seed) for lr, seed in MEMBERS] if method == "loraplus" else MEMBERS
    out, steps, states, _ = together(method, members, examples, rslora=rslora)
    for k, (lr, seed) in enumerate(members):
        assert out[k].status == "completed" and out[k].steps_done == 4
        assert out[k].noise_scale["estimable"] and "noise_g2" in steps[k][-1]  # measured, not skipped
        assert_same_trial((out[k], steps[k], states[k]), alone(method, lr, seed, examples, rslora=rslora))


def test_a_group_that_mixes_methods_equals_its_trials_alone():
    """Methods mix over the original base: PiSSA, MiLoRA and OLoRA members in the correction form
    (W·x + s·(B·A·x - B0·A0·x)), against their trials alone on the residual base W - s·B0·A0: equal to
    fp32 rounding; LoRA+ keeps its own B-matrix LR inside the group."""
    examples = variable_examples(16)
    members = [
        (3e-3, 0, "lora"),
        (1e-3, 0, "pissa"),
        (1e-3, 1, "milora"),
        (1e-3, 0, "olora"),
        (1e-4, 0, "loraplus"),
    ]
    out, steps, states, init = together("", members, examples)
    assert init.correction
    for k, (lr, seed, method) in enumerate(members):
        assert out[k].status == "completed" and out[k].steps_done == 4
        assert_same_trial((out[k], steps[k], states[k]), alone(method, lr, seed, examples))


@pytest.mark.parametrize("method", ["lora", "pissa", "milora"])
def test_under_bf16_autocast_members_match_their_trials_alone(method):
    """Under bf16 autocast (here on the CPU) a residual member keeps the base W and its fp32 initial
    factors, as its trial alone does (``residual.Correction``).  Tolerance (docs/method.md, Packed
    training): bf16 rounds every product to 8 mantissa bits and the stacked layer orders its sums
    differently (batched matmuls vs PEFT's linears); measured over 4 steps, per-step losses within
    2.4e-5 relative and final adapters within 2.9e-2 (LoRA's own: 2.9e-2), asserted at 1e-4 and 5e-2."""
    examples = variable_examples(16)
    AcceleratorState._reset_state(reset_partial_state=True)  # one state per process; others made fp32 ones
    acc = Accelerator(cpu=True, mixed_precision="bf16")
    members = [(1e-3, 0), (3e-3, 1)]
    try:
        out, steps, states, init = together(method, members, examples, acc=acc)
        runs = [alone(method, lr, seed, examples, acc=acc) for lr, seed in members]
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert init.correction == (method != "lora")
    for k, alone_run in enumerate(runs):
        r1, steps1, state1 = alone_run
        assert out[k].steps_done == r1.steps_done == 4
        for a, b in zip(steps[k], steps1, strict=True):
            assert close(a["loss"], b["loss"], 1e-4), (a, b)
        for name, (a, b) in state1.items():
            assert rel(states[k][name][0], a) <= 5e-2 and rel(states[k][name][1], b) <= 5e-2, name


def test_every_packable_method_is_in_the_equivalence_matrix():
    tested = {"lora", "pissa", "milora", "olora", "loraplus"}
    assert set(stacked.PACKABLE) == tested


def test_loraplus_members_move_b_faster_than_lora_members():
    """LoRA+'s column multiplier reaches the optimizer: the same seed and LR, B moves further."""
    members = [(1e-3, 0)]
    _, _, lora_states, init = together("lora", members, variable_examples(16))
    _, _, plus_states, _ = together("loraplus", members, variable_examples(16))
    name = next(iter(lora_states[0]))
    b0 = init.factors["lora", 0][name][1]
    assert (plus_states[0][name][1] - b0).norm() > 4 * (lora_states[0][name][1] - b0).norm()


def test_every_adapted_layer_changes_in_every_member():
    """A known multi-adapter trainer bug trained only the last layer; here all 14 layers move in all."""
    out, _, states, init = together("lora", MEMBERS, variable_examples(16))
    for k, (_, seed) in enumerate(MEMBERS):
        assert len(states[k]) == 2 * len(TARGETS)
        for name, (a, b) in states[k].items():
            a0, b0 = init.factors["lora", seed][name]
            assert (a - a0).abs().max() > 1e-6 and (b - b0).abs().max() > 1e-6, (k, name)


def test_a_diverging_member_leaves_and_the_others_are_unchanged():
    """An absurd LR makes one member's loss non-finite at step 2: its NaNs stay in its own rows."""
    members = [(3e-3, 0), (1e30, 0), (1e-2, 1)]
    examples = variable_examples(32)
    out, steps, states, _ = together("lora", members, examples)
    assert [r.status for r in out] == ["completed", "diverged", "completed"]
    assert out[1].diverged_at == 2 and out[0].steps_done == out[2].steps_done == 8
    for k, (lr, seed) in enumerate(members):
        assert_same_trial((out[k], steps[k], states[k]), alone("lora", lr, seed, examples))


def test_each_member_has_its_own_dropout_stream():
    """With dropout, members of one seed draw the masks their trials alone draw (their rows, hence
    mask shapes, are the same); a shared stream would give the second member other masks."""
    members = [(1e-3, 0), (3e-3, 0)]
    examples = variable_examples(16)
    out, steps, states, _ = together("lora", members, examples, dropout=0.1)
    for k, (lr, seed) in enumerate(members):
        assert_same_trial((out[k], steps[k], states[k]), alone("lora", lr, seed, examples, dropout=0.1))


def test_stacked_layers_refuse_a_batch_that_does_not_split():
    base = micro_llama()
    init = stacked.initialise(base, {("lora", 0): adapter_spec(0)})
    init.install(base, [("lora", 0)] * 3, 0.0)
    with pytest.raises(ValueError, match="4 rows cannot be split into 3 adapter slices"):
        base(input_ids=torch.ones(4, 5, dtype=torch.long))
