"""Build the embedded default base model: a tiny Llama pre-trained on TinyWorld text.

``lorasweep build-default-model`` regenerates the folder shipped in ``lorasweep/assets/tinyworld-base``
(config, safetensors, tokenizer), a regular Hugging Face model folder that every other part of
lorasweep loads exactly like a hub model.  Deterministic for a given torch build and thread count.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from lorasweep.data import tinyworld

ASSET_DIR = Path(__file__).parent / "assets" / "tinyworld-base"
SPECIAL = {"bos": "<s>", "eos": "</s>", "pad": "<pad>"}


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE with single-digit number tokens (digits split so arithmetic is learnable)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # One token per digit (keeping its leading space), so numbers are sequences of digits.
    words = pre_tokenizers.Split(Regex(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+"), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [words, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL["bos"],
        eos_token=SPECIAL["eos"],
        pad_token=SPECIAL["pad"],
        model_max_length=256,
    )


def model_config(vocab_size: int, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _packed_batches(tokenizer, docs: list[str], seq_len: int, batch: int, seed: int):
    ids: list[int] = []
    for d in docs:
        ids += [tokenizer.bos_token_id, *tokenizer(d, add_special_tokens=False)["input_ids"]]
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // seq_len
    data = torch.tensor(ids[: n * seq_len]).view(n, seq_len)
    g = torch.Generator().manual_seed(seed)
    while True:
        for chunk in torch.randperm(n, generator=g).split(batch):
            if len(chunk) == batch:
                yield data[chunk]


def build(out_dir: Path = ASSET_DIR, steps: int = 2500, seed: int = 0, log=print) -> Path:
    """Pre-train the default base model and save it as a Hugging Face model folder."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    docs = list(tinyworld.pretraining_documents(60_000, seed=seed + 17))
    # The vocabulary covers the task's words too (questions and "####"); the model's weights never
    # see a question: only the tokenizer does.
    task_text = [p.question + "\n" + p.answer for p in tinyworld.generate(2_000, seed=seed + 99)]
    tokenizer = train_tokenizer(docs[:20_000] + task_text, vocab_size=512)
    model = LlamaForCausalLM(model_config(len(tokenizer), tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.95))
    warm = steps // 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))),
    )
    batches = _packed_batches(tokenizer, docs, seq_len=128, batch=32, seed=seed)
    t0 = time.time()
    model.train()
    for step in range(steps):
        x = next(batches)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == steps - 1:
            log(f"pretrain step {step:5d}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
