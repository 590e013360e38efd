"""The ``openai-compatible`` judge: POST ``{base_url}/chat/completions`` with the standard library.

Works with anything that speaks the OpenAI chat-completions protocol: OpenAI, Gemini's OpenAI-compatible
endpoint (``https://generativelanguage.googleapis.com/v1beta/openai``), vLLM and llama.cpp servers.
The judge decodes greedily (temperature 0), as MT-Bench's reference code does.

Failure handling (one request = one judgment):
- retried with exponential backoff (``RETRY_BASE_S * 2**attempt``, up to +25 % jitter, capped at
  ``RETRY_MAX_S``), at most ``max_retries`` times: timeouts and connection errors, HTTP 429, 408, 425
  and 5xx (waiting ``Retry-After`` seconds instead when the server sends it, capped the same way), a
  body that is not the expected JSON, and empty content.  Empty content is treated as transient because servers
  under load return it; a judge that always returns it (a safety filter) ends ``failed``, and the next
  run tries again, so it is never mistaken for a rating.
- not retried: any other HTTP status (400, 401, 403, 404, ...).  These mean the configuration is wrong,
  so the first one stops the batch: the remaining judgments end ``failed`` without a request.
- ``timeout_s`` bounds each socket operation (connect, each read), not the whole exchange.
The API key is read from the environment variable named by ``api_key_env`` once, sent only in the
``Authorization`` header, and scrubbed from every error message this module produces.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from lorasweep.errors import UserError
from lorasweep.evals.judge.reply import Reply

if TYPE_CHECKING:
    from lorasweep.config import JudgeConfig

RETRY_STATUS = frozenset({408, 425, 429})  # and every 5xx
RETRY_BASE_S = 1.0  # first backoff delay (tests shorten it)
RETRY_MAX_S = 60.0  # longest wait between two attempts, Retry-After included


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    pass


class OpenAICompatibleJudge:
    def __init__(self, cfg: JudgeConfig):
        if not cfg.base_url or not cfg.model:
            raise UserError("the openai-compatible judge needs base_url and model", "eval.judge")
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.model = cfg.model
        self.identity = f"openai-compatible:{self.model}"
        self.timeout_s = cfg.timeout_s
        self.max_retries = cfg.max_retries
        self.concurrency = cfg.concurrency
        self.max_tokens = cfg.max_tokens
        self._key = _read_key(cfg.api_key_env)
        self._stop = threading.Event()
        self._stop_reason = ""

    def __repr__(self) -> str:  # never the key
        return f"OpenAICompatibleJudge(url={self.url!r}, model={self.model!r})"

    def judge(self, prompts: list[list[dict]], on_reply: Callable[[int, Reply], None]) -> None:
        """Send every prompt (``concurrency`` in flight); ``on_reply(i, reply)`` as each one ends."""
        self._stop.clear()

        def one(i: int) -> None:
            on_reply(i, self.complete(prompts[i]))

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="judge") as pool:
            for future in [pool.submit(one, i) for i in range(len(prompts))]:
                future.result()

    def complete(self, messages: list[dict]) -> Reply:
        """One judgment with retries; never raises for a server or network failure."""
        error, attempts = "", 0
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                return Reply(None, f"not sent: {self._stop_reason}", attempts)
            attempts += 1
            try:
                return Reply(self._post(messages), None, attempts)
            except _Fatal as e:
                error = self._scrub(str(e))
                self._stop_reason = f"an earlier request failed without retry ({error})"
                self._stop.set()
                return Reply(None, error, attempts)
            except _Transient as e:
                error = self._scrub(str(e))
                if attempt < self.max_retries:
                    time.sleep(self._delay(attempt, e.retry_after))
        return Reply(None, f"gave up after {attempts} attempts: {error}", attempts)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, RETRY_MAX_S)
        return min(RETRY_BASE_S * 2**attempt * (1 + 0.25 * random.random()), RETRY_MAX_S)

    def _post(self, messages: list[dict]) -> str:
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = _body_excerpt(e)
            message = f"HTTP {e.code}: {detail}" if detail else f"HTTP {e.code}"
            if e.code in RETRY_STATUS or e.code >= 500:
                raise _Transient(message, _retry_after(e.headers.get("Retry-After"))) from None
            raise _Fatal(message) from None
        except TimeoutError as e:
            raise _Transient(f"timed out after {self.timeout_s:g} s ({e})") from None
        except urllib.error.URLError as e:
            raise _Transient(f"connection failed: {e.reason}") from None
        except (OSError, http.client.HTTPException) as e:  # reset or cut short mid-read
            raise _Transient(f"connection failed: {e}") from None
        return _content(raw)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text


def _read_key(env: str | None) -> str | None:
    if not env:
        return None  # a local vLLM or llama.cpp server without authentication
    key = os.environ.get(env)
    if not key:
        raise UserError(
            f"the judge's API key variable {env} is not set; export it, or set api_key_env to null "
            "for a server without authentication",
            "eval.judge.api_key_env",
        )
    return key


def _body_excerpt(error: urllib.error.HTTPError) -> str:
    try:
        return error.read(300).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds; an HTTP date counts as absent)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _content(raw: bytes) -> str:
    """The reply text of a chat-completions response; _Transient if it has none."""
    try:
        data = json.loads(raw)
        content = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Transient(f"malformed response body: {raw[:120]!r}") from None
    if not isinstance(content, str) or not content.strip():
        raise _Transient("empty content in the response")
    return content
