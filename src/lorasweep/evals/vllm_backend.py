"""Generation through vLLM (optional extra ``lorasweep[vllm]``, CUDA only).

The trial's adapter is served by vLLM's LoRA support on the *original* base model: LoRA adapters as
trained, PiSSA/MiLoRA adapters in their converted plain-LoRA form (rank 2r, ``adapter_plain_lora/``).
Greedy decoding; ``max_lora_rank`` is set from the adapter, rounded up to a rank vLLM supports.
HF ``generate`` stays the default backend (``eval.backend: hf``).
"""

from __future__ import annotations

import json
from pathlib import Path

from lorasweep.errors import UserError

VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts


def require_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise UserError(
            "eval.backend=vllm needs vLLM, which is not installed (GPU machines only): "
            "pip install 'lorasweep[vllm]', or use eval.backend=hf",
            "eval.backend",
        ) from None


def max_lora_rank(adapter_dir: Path) -> int:
    rank = int(json.loads((adapter_dir / "adapter_config.json").read_text())["r"])
    for allowed in VLLM_RANKS:
        if rank <= allowed:
            return allowed
    raise UserError(
        f"adapter rank {rank} exceeds vLLM's largest max_lora_rank {VLLM_RANKS[-1]}", str(adapter_dir)
    )


def vllm_generator(base_folder: str, adapter_dir: Path, dtype: str, max_new_tokens: int):
    """A ``prompts -> completions`` function serving ``adapter_dir`` on ``base_folder`` with vLLM."""
    require_vllm()
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    llm = LLM(
        model=base_folder, enable_lora=True, max_lora_rank=max_lora_rank(adapter_dir), dtype=dtype, seed=0
    )
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    request = LoRARequest("trial", 1, str(adapter_dir))

    def generate(prompts: list[str]) -> list[str]:
        outputs = llm.generate(prompts, params, lora_request=request)
        return [o.outputs[0].text for o in outputs]

    return generate
