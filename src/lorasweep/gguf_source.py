"""Turn a GGUF checkpoint into a regular Hugging Face model folder, once, and cache it.

A GGUF file (llama.cpp's format) is how some models reach this machine offline. transformers reads
one with ``from_pretrained(folder, gguf_file=...)`` but dequantises it on every load and refuses to
``save_pretrained`` the result, so every later stage would need a GGUF special case.  Converting once
into ``config.json`` + fp32 ``model.safetensors`` + tokenizer files lets the rest of lorasweep load
it like any hub model.

What is covered: every architecture and tokenizer transformers' GGUF loader supports (Llama-family
models such as SmolLM2 included); quantised tensors (Q4_1, Q8_0, ...) are dequantised to fp32; the
chat template stored in the file is kept.
What is not covered: the original full-precision weights -- the folder holds the *quantised* model's
weights, exactly; split (multi-file) GGUFs; GGUF-only tokenizer quirks transformers does not map.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from lorasweep.errors import UserError
from lorasweep.locks import exclusive

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file (ggml docs/gguf.md)
GGUF_REQUIREMENT = "gguf==0.19.0"
PROVENANCE_FILE = "gguf_source.json"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where converted folders live: ``cache_dir``, else ``$LORASWEEP_CACHE``, else ~/.cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LORASWEEP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lorasweep" / "models"


def cache_folder_name(stem: str, sha256: str) -> str:
    """``<file stem>-<first 12 hex digits of its sha256>``: a changed file never reuses a folder."""
    return f"{stem}-{sha256[:12]}"


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check_gguf(gguf_path: str | Path) -> Path:
    """The path, if it names a readable GGUF file; a UserError saying what is wrong otherwise."""
    path = Path(gguf_path).expanduser()
    if not path.exists():
        raise UserError("no such file", str(path))
    if not path.is_file():
        raise UserError("expected a .gguf file, found a folder", str(path))
    with open(path, "rb") as fh:
        magic = fh.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise UserError(f"not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})", str(path))
    return path


def require_gguf_package() -> None:
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise UserError(
            f"reading GGUF files needs the `gguf` package: pip install '{GGUF_REQUIREMENT}'"
        ) from None


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Dequantise ``gguf_path`` into a new model folder ``out_dir`` (fp32 safetensors) and return it.

    The folder is built in a temporary directory beside ``out_dir`` and renamed into place, so a
    crash or a concurrent reader never sees a half-written model.
    """
    src = check_gguf(gguf_path)
    require_gguf_package()
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("already exists; delete it or choose another output folder", str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_folder(src, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the folder is an ordinary cache entry
        with contextlib.suppress(OSError):
            out.rmdir()  # an empty folder left by the caller; rename needs the name free
        try:
            tmp.rename(out)
        except OSError:
            raise UserError("was created by someone else during the conversion", str(out)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def cached_folder(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The converted folder for ``gguf_path`` in the cache, converting it on first use only."""
    src = check_gguf(gguf_path)
    root = cache_root(cache_dir)
    folder = root / cache_folder_name(src.stem, file_sha256(src))
    if folder.is_dir():  # only a finished conversion is ever renamed to this name
        return folder
    root.mkdir(parents=True, exist_ok=True)
    # Parallel trial workers may all ask at once: one converts, the others wait and reuse it.
    with exclusive(root / f".{folder.name}.lock"):
        if not folder.is_dir():
            convert_gguf(src, folder)
    return folder


def _write_folder(src: Path, dst: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(src.parent), src.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except (ValueError, NotImplementedError, KeyError) as e:  # unsupported architecture, damaged file
        raise UserError(f"transformers cannot load this GGUF file: {e}", str(src)) from None

    # transformers 5 marks a GGUF-loaded model as quantised and will not save it; the tensors are
    # already plain fp32, so copy them into an ordinary model built from the same config.
    settings = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        settings.pop(key, None)  # the last is the GGUF's free-text general.name, not a path
    config = type(loaded.config).from_dict(settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded

    # A GGUF states no tokenizer length limit; the context length is the one that matters.
    tokenizer.model_max_length = config.max_position_embeddings
    model.save_pretrained(dst)  # config.json, generation_config.json, model.safetensors
    tokenizer.save_pretrained(dst)  # tokenizer.json, tokenizer_config.json, chat template
    (dst / PROVENANCE_FILE).write_text(json.dumps(_provenance(src), indent=2) + "\n")


def _provenance(src: Path) -> dict:
    """What the folder was made from, so a result can name its exact base model."""
    from importlib.metadata import version

    from gguf import GGUFReader

    reader = GGUFReader(src)
    types: dict[str, int] = {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    return {
        "gguf_file": src.name,
        "sha256": file_sha256(src),
        "tensor_types": types,
        "saved_dtype": "float32",
        "versions": {pkg: version(pkg) for pkg in ("gguf", "transformers", "torch")},
    }
