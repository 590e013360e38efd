"""The embedded base model is a regular HF folder, genuinely pre-trained, and does not solve the task."""

from __future__ import annotations

import torch

from lorasweep import evals, models
from lorasweep.data import sources
from lorasweep.default_model import ASSET_DIR
from lorasweep.evals.generate import generate


def test_is_a_regular_model_folder():
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    names = {p.name for p in ASSET_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert AutoConfig.from_pretrained(ASSET_DIR).model_type == "llama"
    plain, info = AutoModelForCausalLM.from_pretrained(ASSET_DIR, output_loading_info=True)
    # every weight comes from the file: nothing left at its random init, nothing in the file unused
    assert {k: v for k, v in info.items() if v} == {}
    ours, _ = models.load_base("builtin:tinyworld")  # lorasweep's loader sees the same model
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, ours(input_ids=ids).logits)
    tok = AutoTokenizer.from_pretrained(ASSET_DIR)
    text = "Tom has 12 apples.\n#### 12"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_is_pretrained_it_knows_arithmetic():
    model, tok = models.load_base("builtin:tinyworld")
    prompts = ["12 + 7 =", "30 - 4 =", "6 * 7 =", "25 + 25 =", "9 * 9 ="]
    out = generate(model, tok, prompts, max_new_tokens=4, batch_size=5)
    right = [o.strip().split("\n")[0] == str(eval(p[:-2])) for p, o in zip(prompts, out, strict=True)]  # noqa: S307
    assert sum(right) >= 4, out
    random_model = type(model)(model.config)
    ids = tok("3 + 4 = 7\n10 - 2 = 8", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        trained = model(input_ids=ids, labels=ids).loss
        untrained = random_model(input_ids=ids, labels=ids).loss
    assert trained < 0.5 * untrained


def test_does_not_solve_the_task_before_fine_tuning(tmp_path):
    model, tok = models.load_base("builtin:tinyworld")
    rows = sources.load_rows("builtin:tinyworld", "test", 64)
    settings = evals.GenerationSettings("plain", max_new_tokens=16, batch_size=32)
    metrics = evals.evaluate("gsm8k", model, tok, rows, settings, tmp_path)
    assert metrics["strict"] == 0.0
    assert metrics["flexible"] <= 0.1
