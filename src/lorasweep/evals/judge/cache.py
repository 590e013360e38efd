"""The judgment cache: an append-only JSONL file of every judge reply ever paid for.

One line per answered judgment, keyed by (judge identity, prompt version, question id, turn, hash of
everything the judge was shown: questions, the model's answers, the reference).  Replies are stored as
text and parsed again on every read, so a parser fix never costs a request.  Failed judgments are not
stored: they are exactly what the next run asks for again.

Appends hold an exclusive lock on the cache file (``locks.exclusive``: worker processes may share one) and are flushed at
once, so an interrupted run keeps everything it paid for.  A line cut short by a crash is skipped on
reading (that judgment is asked again once); the last line for a key wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

from lorasweep.jsonl import iter_jsonl
from lorasweep.locks import exclusive


def content_hash(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def cache_key(judge: str, prompt_version: str, question_id: object, turn: int, digest: str) -> str:
    return f"{judge}|{prompt_version}|{question_id}|{turn}|{digest}"


class JudgmentCache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        if self.path.exists():
            # a torn last line is skipped: that judgment is simply asked again
            for _, entry in iter_jsonl(self.path, skip_invalid=True):
                if isinstance(entry, dict) and "key" in entry:
                    self._entries[entry["key"]] = entry

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict | None:
        return self._entries.get(key)

    def put(self, key: str, text: str, **fields: object) -> dict:
        """Record one paid-for reply (thread- and process-safe) and return the stored entry."""
        entry = {"key": key, **fields, "text": text, "time": time.time()}
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with exclusive(self.path), self.path.open("ab+") as f:
                if f.seek(0, os.SEEK_END):
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        line = b"\n" + line  # after a torn line: start a fresh one
                f.write(line)
                f.flush()
            self._entries[key] = entry
        return entry
