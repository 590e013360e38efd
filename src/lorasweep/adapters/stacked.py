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
from dataclasses import dataclass

import torch
from torch import nn


class StackedLoraLinear(nn.Module):
    """A frozen ``nn.Linear`` plus K LoRA adapters, one per slice of the batch's rows."""

    def __init__(self, base: nn.Linear, rank: int, scaling: float, dropout: float):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = scaling
        self.dropout = dropout
        self.stack: AdapterStack | None = None  # owner of the buffers and the dropout streams
        self.a = nn.Parameter(torch.empty(0), requires_grad=True)  # bound to the buffer by the stack
        self.b = nn.Parameter(torch.empty(0), requires_grad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        k = self.a.shape[0]
        if x.shape[0] % k:
            raise ValueError(f"a batch of {x.shape[0]} rows cannot be split into {k} adapter slices")
        xs = x.to(self.a.dtype).reshape(k, -1, x.shape[-1])  # slice k = rows [k·m, (k+1)·m)
        if self.training and self.dropout > 0:
            xs = self.stack.dropout(xs, self.dropout)
        h = torch.bmm(xs, self.a.transpose(1, 2))
        # result + s·(h @ Bᵀ) in one pass over the output (PEFT: result + lora_B(h) * s, same sum)
        out = torch.baddbmm(
            result.reshape(k, -1, result.shape[-1]).to(h.dtype), h, self.b.transpose(1, 2), alpha=self.scaling
        )
        return out.reshape(result.shape).to(result.dtype)


class AdapterStack:
    """The adapters of one packed group: their stacked layers, flat parameter and gradient buffers,
    and one dropout random stream per adapter (adapter k's masks depend on its own stream only)."""

    def __init__(self, layers: dict[str, StackedLoraLinear], flat: torch.Tensor, generators: list):
        self.layers = layers
        self.generators = generators
        self.flat = flat
        self.grad = torch.zeros_like(flat)
        self._bind()

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
        """Point every layer's A and B (and their gradients) at their columns of the flat buffers.

        The views are not dense (a row stride of P), which autograd's layout check flags
        (``train/packed.py`` silences it); gradients still accumulate in place into them."""
        k = self.flat.shape[0]
        for layer, name, shape, cols in self._shapes():
            param = getattr(layer, name)
            param.data = self.flat[:, cols].view(k, *shape)
            param.grad = self.grad[:, cols].view(k, *shape)  # backward accumulates into it in place

    def parameters(self) -> list[nn.Parameter]:
        return [getattr(layer, name) for layer, name, _, _ in self._shapes()]

    def zero_grad(self) -> None:
        self.grad.zero_()

    def keep(self, members: list[int]) -> None:
        """Keep only ``members`` (positions in the current stack), in that order."""
        index = torch.tensor(members, dtype=torch.long, device=self.flat.device)
        self.flat = self.flat.index_select(0, index)
        self.grad = self.grad.index_select(0, index)
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


@dataclass
class Initial:
    """The starting point of a packed group, per seed exactly as a trial alone starts."""

    template: nn.Module  # a PEFT model of the method; saves every member's adapter in PEFT's format
    factors: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]  # seed -> layer -> (A0, B0)
    exports: dict[int, dict[str, torch.Tensor]]  # seed -> PEFT state at init (PiSSA/MiLoRA export)
    rng: dict[int, torch.Tensor]  # seed -> the global RNG state after init (the dropout stream)
    scaling: float

    def generator(self, seed: int, device) -> torch.Generator:
        """Adapter ``seed``'s own dropout stream (on a GPU seeded from ``seed``: the CUDA stream of a
        trial alone is not reproducible from here)."""
        g = torch.Generator(device=device)
        if g.device.type == "cpu":
            g.set_state(self.rng[seed])
        else:
            g.manual_seed(seed)
        return g


# Methods the stacked layer can train, and whether their init rewrites the base (W - s·B0·A0, fp32 only:
# under bf16 the residual methods keep W and a frozen correction, which the stacked layer does not have).
PACKABLE = {"lora": False, "pissa": True, "milora": True}


def initialise(method: str, base: nn.Module, specs: dict) -> Initial:
    """Initialise ``method`` once per seed (``specs``: seed -> AdapterSpec) through the adapter
    registry on a copy of ``base``, with the global RNG seeded as a trial alone seeds it, so every
    member starts where its own trial would.  For PiSSA/MiLoRA ``base``'s weights become the residual
    W - s·B0·A0 (a full SVD gives the same residual for every seed; a mismatch is an error)."""
    from lorasweep import adapters
    from lorasweep.adapters import residual as residual_base

    if method not in PACKABLE:
        raise ValueError(f"{method} does not pack (packable: {', '.join(PACKABLE)})")
    residual = PACKABLE[method]
    template, factors, exports, rng = None, {}, {}, {}
    for seed, spec in specs.items():
        torch.manual_seed(seed)
        peft_model = adapters.attach(method, copy.deepcopy(base), spec)
        rng[seed] = torch.get_rng_state()
        layers = lora_layers(peft_model)
        factors[seed] = {
            n: (m.lora_A["default"].weight.detach().clone(), m.lora_B["default"].weight.detach().clone())
            for n, m in layers.items()
        }
        if residual:
            exports[seed] = residual_base.initial_state(peft_model)
        if template is None:
            template = peft_model
        elif residual and any(
            not torch.equal(m.get_base_layer().weight, lora_layers(template)[n].get_base_layer().weight)
            for n, m in layers.items()
        ):
            raise ValueError(f"{method}'s residual base differs between seeds: they cannot share a base")
    layers = lora_layers(template)
    if residual:
        with torch.no_grad():
            for n, m in layers.items():
                base.get_submodule(n).weight.copy_(m.get_base_layer().weight)
    scaling = next(iter(layers.values())).scaling["default"]
    return Initial(template, factors, exports, rng, scaling)


def install(
    model: nn.Module,
    inits: list[dict[str, tuple[torch.Tensor, torch.Tensor]]],
    scaling: float,
    dropout: float,
    generators: list,
) -> AdapterStack:
    """Replace the ``nn.Linear`` modules named in ``inits[k]`` (the same names for every k) by stacked
    layers holding adapter k's initial (A, B); freeze everything else.  Returns the stack."""
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
    stack = AdapterStack(layers, torch.stack(rows), generators)
    for layer in layers.values():
        layer.stack = stack
    return stack


def uninstall(model: nn.Module, stack: AdapterStack) -> None:
    """Put the plain base layers back (the model is then the frozen base again)."""
    for name, layer in stack.layers.items():
        model.set_submodule(name, layer.base)


@torch.no_grad()
def merge(stack: AdapterStack, k: int) -> dict[str, torch.Tensor]:
    """Add adapter ``k`` into the base weights as PEFT's ``merge`` does (W += (B @ A)·s); returns the
    weights before, for :func:`unmerge`."""
    saved = {}
    for name, layer in stack.layers.items():
        weight = layer.base.weight
        saved[name] = weight.detach().clone()
        weight.data += (layer.b[k] @ layer.a[k]) * layer.scaling
    return saved


@torch.no_grad()
def unmerge(stack: AdapterStack, saved: dict[str, torch.Tensor]) -> None:
    for name, layer in stack.layers.items():
        layer.base.weight.copy_(saved[name])
