"""A randomly initialised model folder of a real model's shape, for speed and memory benchmarks only.

The GPU benchmarks want a 0.5-1.5B model (``bench/gpu_check.sh``) and the hub is unreachable from the
machines this runs on; throughput does not depend on the weights' values, only on the architecture and
the vocabulary, so a folder with the shape of a public model and random weights measures what the real
one would.  Never use one for accuracy.

Shapes (from each model's public ``config.json``; the vocabulary is the tokenizer's, see below):

- ``llama-1b``: Llama-3.2-1B's decoder (hidden 2048, 16 layers, 32 heads / 8 key-value heads, MLP 8192,
  tied embeddings, RoPE theta 500000);
- ``qwen-0.5b``: Qwen2.5-0.5B's decoder as a Llama (hidden 896, 24 layers, 14 / 2 heads, MLP 4864, tied;
  without Qwen's q/k/v biases);
- ``smollm2-135m``: SmolLM2-135M's (hidden 576, 30 layers, 9 / 3 heads, MLP 1536, tied) — small enough
  to check this script on a CPU.

The tokenizer is copied from ``--tokenizer`` (a model folder; default: the cached ``lorasweep fetch
smollm2-135m`` folder if there is one, else the built-in model's), and the embedding has its vocabulary
size: with SmolLM2's tokenizer (49,152 tokens) ``llama-1b`` has 1.0B parameters (1.24B with Llama-3's
128K vocabulary).

``python bench/random_model.py OUT_DIR [--shape llama-1b] [--tokenizer FOLDER] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

SHAPES = {
    "llama-1b": dict(
        hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=8192, rope_theta=500000.0,
    ),
    "qwen-0.5b": dict(
        hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, rope_theta=1000000.0,
    ),
    "smollm2-135m": dict(
        hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        intermediate_size=1536, rope_theta=100000.0,
    ),
}  # fmt: skip
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
)


def default_tokenizer_folder() -> Path:
    from lorasweep.default_model import ASSET_DIR
    from lorasweep.fetch import cached

    folder = cached("smollm2-135m")
    return folder if folder is not None and (folder / "tokenizer.json").exists() else ASSET_DIR


def write(out: Path, shape: str, tokenizer: Path, seed: int = 0) -> dict:
    """Write the folder; returns its config as a dict (with ``n_params``)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if shape not in SHAPES:
        raise SystemExit(f"random_model: unknown --shape {shape!r}; valid: {', '.join(SHAPES)}")
    if not (tokenizer / "tokenizer.json").exists():
        raise SystemExit(f"random_model: no tokenizer.json in {tokenizer}")
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tokenizer / name).exists():
            shutil.copy(tokenizer / name, out / name)
    tok = AutoTokenizer.from_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tok),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **SHAPES[shape],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # the library's own initialisation (normal, std 0.02)
    model.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    (out / "random_model.json").write_text(
        json.dumps({"shape": shape, "seed": seed, "tokenizer": str(tokenizer), "n_params": n}, indent=2)
        + "\n"
    )
    return {**config.to_dict(), "n_params": n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--shape", default="llama-1b", choices=sorted(SHAPES))
    p.add_argument("--tokenizer", type=Path, default=None, help="a model folder with tokenizer.json")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    info = write(args.out, args.shape, args.tokenizer or default_tokenizer_folder(), args.seed)
    print(
        f"random_model: {args.shape} ({info['n_params'] / 1e9:.2f}B parameters, vocabulary "
        f"{info['vocab_size']:,}, random weights) written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    sys.exit(main())
