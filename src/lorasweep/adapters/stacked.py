"""K LoRA adapters on one frozen base, for training several trials in one pass (``train/packed.py``).

Every adapted ``nn.Linear`` computes its frozen product once for the whole batch and the K low-rank
products as two batched matmuls over stacked factors A: (K, r, in), B: (K, out, r).  The batch is K
equal slices of rows, slice k belonging to adapter k.  Rows never mix in a causal LM (attention, norms
and MLPs act per sequence or per token), the base has no gradient, and adapter k touches only its slice,
so adapter k's loss and gradients are those it would have alone.  Per slice the arithmetic is PEFT's
LoRA forward, ``base(x) + s·B(A(dropout(x)))`` (``peft/tuners/lora/layer.py``, ``Linear.forward``).

All K adapters' factors live in one flat (K, P) buffer, the per-layer parameters being views of it, and
their gradients in a second one: the optimizer, clipping and zeroing of the group are then a handful of
tensor operations per step instead of a loop over layers and adapters (``train/packed.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from lorasweep.adapters.method import AdapterSpec


class StackedLoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus K LoRA adapters, one per slice of the batch's rows."""

    def __init__(self, base: nn.Linear, rank: int, scaling: float, dropout: float):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = scaling
        self.dropout = dropout
        self.stack: AdapterStack | None = None  # owner of the buffers, the dropout streams, the routing
        self.a = nn.Parameter(torch.empty(0), requires_grad=True)  # bound to the buffer by the stack
        self.b = nn.Parameter(torch.empty(0), requires_grad=True)
        self.a0: torch.Tensor | None = None  # the frozen initial factors (correction form), or None
        self.b0: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        index = self.stack.route_index
        a, b, a0, b0 = self.a, self.b, self.a0, self.b0
        if index is not None:  # evaluation: the slices belong to these members (one: every row)
            a, b = a.index_select(0, index), b.index_select(0, index)
            if a0 is not None:
                a0, b0 = a0.index_select(0, index), b0.index_select(0, index)
        k = a.shape[0]
        if x.shape[0] % k:
            raise ValueError(f"a batch of {x.shape[0]} rows cannot be split into {k} adapter slices")
        xs = x.to(a.dtype).reshape(k, -1, x.shape[-1])  # slice k = rows [k·m, (k+1)·m)
        dropped = self.stack.dropout(xs, self.dropout) if self.training and self.dropout > 0 else xs
        h = torch.bmm(dropped, a.transpose(1, 2))
        rows = result.reshape(k, -1, result.shape[-1])
        if a0 is None:
            # result + s·(h @ Bᵀ) in one pass over the output (PEFT: result + lora_B(h) * s, same sum)
            out = torch.baddbmm(rows.to(h.dtype), h, b.transpose(1, 2), alpha=self.scaling)
        else:
            # the residual methods' correction form, as ``residual.Correction`` computes it for a trial
            # alone: W·x + s·(B·(A·x) - B0·(A0·x)), the base weight left at W
            delta = torch.bmm(h, b.transpose(1, 2)) - torch.bmm(
                torch.bmm(xs, a0.transpose(1, 2)), b0.transpose(1, 2)
            )
            out = rows + delta * self.scaling
        return out.reshape(result.shape).to(result.dtype)


class AdapterStack:
    """The adapters of one packed group: their stacked layers, flat parameter and gradient buffers
    (and the frozen initial factors in the correction form), one dropout random stream per adapter
    (adapter k's masks depend on its own stream only), and each member's LR multipliers.

    ``route``: None while training (slice k is member k); for evaluation the member positions the
    batch's slices belong to (``[k]``: every row is member k's)."""

    def __init__(
        self,
        layers: dict[str, StackedLoraLinear],
        flat: torch.Tensor,
        generators: list,
        lr_scale: torch.Tensor | None = None,
        initial: torch.Tensor | None = None,
    ):
        self.layers = layers
        self.generators = generators
        self.flat = flat
        self.grad = torch.zeros_like(flat)
        self.lr_scale = lr_scale  # (K, P) multipliers of each member's LR per column, or None (all 1)
        self.initial = initial  # (K, P) the initial factors (correction form), or None
        self.route_index: torch.Tensor | None = None  # ``route`` on the device, made once per change
        self._bind()

    @property
    def route(self) -> list[int] | None:
        return None if self.route_index is None else self.route_index.tolist()

    @route.setter
    def route(self, members: list[int] | None) -> None:
        self.route_index = None if members is None else torch.tensor(members, device=self.flat.device)

    @property
    def size(self) -> int:
        return self.flat.shape[0]

    def _shapes(self):
        offset = 0
        for layer in self.layers.values():
            out_f, in_f = layer.base.weight.shape
            for name, shape in (("a", (layer.rank, in_f)), ("b", (out_f, layer.rank))):
                n = shape[0] * shape[1]
                yield layer, name, shape, slice(offset, offset + n)
                offset += n

    def _bind(self) -> None:
        """Point every layer's A and B (and their gradients, and A0, B0) at their columns of the flat
        buffers.

        The views are not dense (a row stride of P), which autograd's layout check flags
        (``train/packed.py`` silences it); gradients still accumulate in place into them."""
        k = self.flat.shape[0]
        for layer, name, shape, cols in self._shapes():
            param = getattr(layer, name)
            param.data = self.flat[:, cols].view(k, *shape)
            param.grad = self.grad[:, cols].view(k, *shape)  # backward accumulates into it in place
            if self.initial is not None:
                setattr(layer, name + "0", self.initial[:, cols].view(k, *shape))

    def columns(self, values: dict[str, tuple[float, float]]) -> torch.Tensor:
        """One row of P values from per-layer (value for A, value for B)."""
        per = [values[n][name == "b"] for n, layer in self.layers.items() for name in ("a", "b")]
        sizes = [cols.stop - cols.start for _, _, _, cols in self._shapes()]
        row = torch.tensor(per, dtype=self.flat.dtype, device=self.flat.device)
        return row.repeat_interleave(torch.tensor(sizes, device=self.flat.device))

    def parameters(self) -> list[nn.Parameter]:
        return [getattr(layer, name) for layer, name, _, _ in self._shapes()]

    def zero_grad(self) -> None:
        self.grad.zero_()

    def keep(self, members: list[int]) -> None:
        """Keep only ``members`` (positions in the current stack), in that order."""
        index = torch.tensor(members, dtype=torch.long, device=self.flat.device)
        self.flat = self.flat.index_select(0, index)
        self.grad = self.grad.index_select(0, index)
        if self.lr_scale is not None:
            self.lr_scale = self.lr_scale.index_select(0, index)
        if self.initial is not None:
            self.initial = self.initial.index_select(0, index)
        self.generators = [self.generators[i] for i in members]
        self._bind()

    def member_state(self, k: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Adapter ``k``'s (A, B) per layer name, copied to the CPU."""
        out = {}
        for name, layer in self.layers.items():
            out[name] = (layer.a[k].detach().cpu().clone(), layer.b[k].detach().cpu().clone())
        return out

    def dropout(self, xs: torch.Tensor, p: float) -> torch.Tensor:
        """Inverted dropout as ``torch.nn.functional.dropout`` computes it on a CPU (a Bernoulli(1-p)
        mask divided by 1-p), each slice's mask from its own adapter's stream."""
        noise = torch.empty_like(xs)
        for k, g in enumerate(self.generators):
            noise[k].bernoulli_(1 - p, generator=g)
        return xs * noise.div_(1 - p)


def lora_layers(peft_model) -> dict[str, nn.Module]:
    """PEFT's LoRA layers of ``peft_model`` by their module path in the base model."""
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    return {n.removeprefix(prefix): m for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)}


Member = tuple[str, int]  # (method, seed): what decides an adapter's starting point


@dataclass
class Initial:
    """The starting points of a packed group, per (method, seed) exactly as a trial alone starts."""

    templates: dict[str, nn.Module]  # method -> a PEFT model of it; saves a member's adapter in PEFT's format
    factors: dict[Member, dict[str, tuple[torch.Tensor, torch.Tensor]]]  # -> layer -> (A0, B0)
    rng: dict[Member, torch.Tensor]  # -> the global RNG state after init (the dropout stream)
    scaling: float
    lr_scales: dict[str, dict[str, tuple[float, float]]]  # method -> layer -> LR multipliers of (A, B)
    correction: bool  # residual methods keep the base W and a frozen -s·B0·A0 per member

    def generator(self, member: Member, device) -> torch.Generator:
        """The member's own dropout stream (on a GPU seeded from its seed: the CUDA stream of a trial
        alone is not reproducible from here)."""
        g = torch.Generator(device=device)
        if g.device.type == "cpu":
            g.set_state(self.rng[member])
        else:
            g.manual_seed(member[1])
        return g

    def install(self, model: nn.Module, members: list[Member], dropout: float) -> AdapterStack:
        """Stack ``members`` (a (method, seed) may repeat: one adapter each) on ``model``."""
        device = next(model.parameters()).device
        return install(
            model,
            [self.factors[m] for m in members],
            self.scaling,
            dropout,
            [self.generator(m, device) for m in members],
            [self.lr_scales[m] for m, _ in members],
            self.correction,
        )


# Methods the stacked layer can train, and whether their init is a residual base (W - s·B0·A0 written
# into the shared base in fp32; under autocast, or when methods mix in one group, the base stays W and
# each member subtracts its frozen s·B0·A0: the correction form).  LoRA+ is LoRA with its own LR for B
# (``lr_scales``); rsLoRA only changes the scaling.  DoRA does not stack: its magnitude normalises each
# column of W + s·B·A, a full weight per member (docs/method.md).  Full fine-tuning trains the base.
PACKABLE = {"lora": False, "loraplus": False, "pissa": True, "milora": True, "olora": True}


def initialise(base: nn.Module, specs: dict[Member, AdapterSpec]) -> Initial:
    """Initialise every (method, seed) of ``specs`` through the adapter registry on a copy of
    ``base``, with the global RNG seeded as a trial alone seeds it, so every member starts where its
    own trial would.

    A residual method alone in its group and in fp32 writes its residual W - s·B0·A0 into ``base``,
    as its trial alone does (a full SVD gives the same residual for every seed; a mismatch is an
    error).  Under autocast (as its bf16 trial alone, ``residual.py``), or beside other methods, it
    takes the correction form: ``base`` stays W and each member subtracts its own s·B0·A0."""
    from lorasweep import adapters

    unknown = sorted({m for m, _ in specs} - set(PACKABLE))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} does not pack (packable: {', '.join(PACKABLE)})")
    residual = {m for m, _ in specs if PACKABLE[m]}
    mixed = len({m for m, _ in specs}) > 1
    # a randomised SVD (PiSSA's pissa_niter) gives every seed its own residual: no shared W - s·B0·A0
    per_seed = len({s for _, s in specs}) > 1 and any(
        m == "pissa" and spec.pissa_niter is not None for (m, _), spec in specs.items()
    )
    autocast = any(spec.autocast for spec in specs.values())
    correction = bool(residual) and (mixed or autocast or per_seed)
    templates, factors, rng, lr_scales = {}, {}, {}, {}
    for (method, seed), spec in specs.items():
        torch.manual_seed(seed)
        peft_model = adapters.attach(
            method, copy.deepcopy(base), replace(spec, autocast=spec.autocast or correction)
        )
        rng[method, seed] = torch.get_rng_state()
        layers = lora_layers(peft_model)
        factors[method, seed] = {
            n: (m.lora_A["default"].weight.detach().clone(), m.lora_B["default"].weight.detach().clone())
            for n, m in layers.items()
        }
        if method not in templates:
            templates[method] = peft_model
            groups = adapters.get(method).param_groups(peft_model, spec)
            scale_of = {id(p): g.get("lr_scale", 1.0) for g in groups for p in g["params"]}
            lr_scales[method] = {
                n: (scale_of[id(m.lora_A["default"].weight)], scale_of[id(m.lora_B["default"].weight)])
                for n, m in layers.items()
            }
        elif (
            PACKABLE[method]
            and not correction
            and any(
                not torch.equal(
                    m.get_base_layer().weight, lora_layers(templates[method])[n].get_base_layer().weight
                )
                for n, m in layers.items()
            )
        ):
            raise ValueError(f"{method}'s residual base differs between seeds: they cannot share a base")
    scalings = {next(iter(lora_layers(t).values())).scaling["default"] for t in templates.values()}
    if len(scalings) != 1:
        raise ValueError(
            f"the methods of a packed group scale their adapters differently: {sorted(scalings)}"
        )
    if residual and not correction:
        with torch.no_grad():
            for n, m in lora_layers(templates[next(iter(residual))]).items():
                base.get_submodule(n).weight.copy_(m.get_base_layer().weight)
    return Initial(templates, factors, rng, scalings.pop(), lr_scales, correction)


def install(
    model: nn.Module,
    inits: list[dict[str, tuple[torch.Tensor, torch.Tensor]]],
    scaling: float,
    dropout: float,
    generators: list,
    lr_scales: list[dict[str, tuple[float, float]]] | None = None,
    correction: bool = False,
) -> AdapterStack:
    """Replace the ``nn.Linear`` modules named in ``inits[k]`` (the same names for every k) by stacked
    layers holding adapter k's initial (A, B); freeze everything else.  ``lr_scales[k]``: per layer
    adapter k's LR multipliers of A and B (default 1); ``correction``: keep each adapter's initial
    factors frozen and subtract their term (the base stays W).  Returns the stack."""
    names = list(inits[0])
    if any(list(i) != names for i in inits):
        raise ValueError("every packed adapter must adapt the same layers")
    model.requires_grad_(False)
    layers: dict[str, StackedLoraLinear] = {}
    for name in names:
        base = model.get_submodule(name)
        if not isinstance(base, nn.Linear):
            raise ValueError(
                f"packed training supports nn.Linear layers only; {name} is {type(base).__name__}"
            )
        rank = inits[0][name][0].shape[0]
        layer = StackedLoraLinear(base, rank, scaling, dropout)
        model.set_submodule(name, layer)
        layers[name] = layer
    device = next(iter(layers.values())).base.weight.device
    rows = [
        torch.cat([t.reshape(-1) for name in names for t in init[name]]).to(device, torch.float32)
        for init in inits
    ]
    flat = torch.stack(rows)
    stack = AdapterStack(layers, flat, generators, initial=flat.clone() if correction else None)
    if lr_scales is not None and any(v != (1.0, 1.0) for per in lr_scales for v in per.values()):
        stack.lr_scale = torch.stack([stack.columns(per) for per in lr_scales])
    for layer in layers.values():
        layer.stack = stack
    return stack


def uninstall(model: nn.Module, stack: AdapterStack) -> None:
    """Put the plain base layers back (the model is then the frozen base again)."""
    for name, layer in stack.layers.items():
        model.set_submodule(name, layer.base)


def reinstall(model: nn.Module, stack: AdapterStack) -> None:
    """Put the stacked layers back after :func:`uninstall`."""
    for name, layer in stack.layers.items():
        model.set_submodule(name, layer)


@torch.no_grad()
def merge(stack: AdapterStack, k: int) -> dict[str, torch.Tensor]:
    """Add adapter ``k`` into the base weights as PEFT's ``merge`` does (W += (B @ A)·s; in the
    correction form W += (B @ A - B0 @ A0)·s, as ``residual.Correction``); returns the weights
    before, for :func:`unmerge`."""
    saved = {}
    for name, layer in stack.layers.items():
        weight = layer.base.weight
        saved[name] = weight.detach().clone()
        delta = layer.b[k] @ layer.a[k]
        if layer.a0 is not None:
            delta = delta - layer.b0[k] @ layer.a0[k]
        weight.data += delta * layer.scaling
    return saved


@torch.no_grad()
def unmerge(stack: AdapterStack, saved: dict[str, torch.Tensor]) -> None:
    for name, layer in stack.layers.items():
        layer.base.weight.copy_(saved[name])
