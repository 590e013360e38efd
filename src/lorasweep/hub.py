"""Is the Hugging Face hub reachable?  Asked once per process, so that offline a hub id fails at once
with advice instead of after a minute of retries."""

from __future__ import annotations

import functools
import os
import socket


def hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    return _probe()


@functools.lru_cache(maxsize=1)
def _probe(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True
