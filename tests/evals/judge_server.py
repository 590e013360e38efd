"""A real chat-completions server on 127.0.0.1 for judge tests, answering with a real local model.

Each request's last user message is fed (its last 160 tokens: the tiny model has 256 positions) to the
built-in TinyWorld model, which writes a few greedy tokens.  That model was never taught to grade, so
it never writes ``[[N]]`` itself: the server appends ``Rating: [[N]]`` with N derived deterministically
from the prompt (``rating_for``), which lets tests predict every score.

Faults are rules added with ``fail(action, times=None, match=None)``: the first live rule whose
``match`` is in the prompt applies (``times`` None = until ``recover()``).  Actions: ``slow`` (answer
after ``slow_s``), ``429`` (``retry_after`` optional), ``500``, ``500-echo`` (echoes the Authorization
header in the error body), ``401``, ``malformed`` (a body that is not JSON), ``empty`` (content ""),
``rating:X`` (the reply rates X), ``norating`` (the reply has no rating).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


def rating_for(content: str) -> int:
    return 1 + int(hashlib.sha256(content.encode()).hexdigest(), 16) % 10


@dataclass
class Rule:
    action: str
    times: int | None
    match: str | None
    retry_after: str | None


class JudgeServer:
    def __init__(self, model, tokenizer, slow_s: float = 0.5):
        self.model, self.tok, self.slow_s = model, tokenizer, slow_s
        self.delay_s = 0.0  # added to every normal answer (to observe concurrency)
        self.rules: list[Rule] = []
        self.log: list[dict] = []  # one entry per request: time, action, auth, content
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._here = threading.local()

    # ------------------------------------------------------------ control

    def fail(self, action: str, times: int | None = None, match: str | None = None, retry_after=None):
        with self._lock:
            self.rules.append(Rule(action, times, match, None if retry_after is None else str(retry_after)))

    def recover(self) -> None:
        with self._lock:
            self.rules.clear()

    @property
    def count(self) -> int:
        return len(self.log)

    def start(self) -> JudgeServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                server._handle(self)

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    # ------------------------------------------------------------ serving

    def _action(self, content: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if (rule.times is None or rule.times > 0) and (rule.match is None or rule.match in content):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        if h.path != "/v1/chat/completions":
            return self._send(h, 404, b'{"error": "not found"}')
        content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        rule = self._action(content)
        action = rule.action if rule else "ok"
        auth = h.headers.get("Authorization")
        with self._lock:
            self.log.append({"time": time.monotonic(), "action": action, "auth": auth, "content": content})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self._here.busy = True
        try:
            self._respond(h, action, rule, content, body, auth)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and hung up: expected in the slow tests
        finally:
            self._leave()

    def _leave(self) -> None:
        """Count this request out once, before its answer is written: the client may send its next
        request as soon as it has read the answer, before this thread gets to run again."""
        if getattr(self._here, "busy", False):
            self._here.busy = False
            with self._lock:
                self.in_flight -= 1

    def _respond(self, h, action: str, rule: Rule | None, content: str, body: dict, auth) -> None:
        if action == "429":
            headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
            return self._send(h, 429, b'{"error": {"message": "rate limited"}}', headers)
        if action in ("500", "401"):
            return self._send(h, int(action), b'{"error": {"message": "server error"}}')
        if action == "500-echo":
            return self._send(h, 500, json.dumps({"error": f"bad header {auth}"}).encode())
        if action == "malformed":
            return self._send(h, 200, b'{"choices": [{"message": {"content": "Rating: [[5]]"')
        if action == "slow":
            time.sleep(self.slow_s)
        text = "" if action == "empty" else self._generate(content, body.get("max_tokens", 16))
        if action.startswith("rating:"):
            text += f"\nRating: [[{action.split(':', 1)[1]}]]"
        elif action not in ("empty", "norating"):
            text += f"\nRating: [[{rating_for(content)}]]"
        time.sleep(self.delay_s)
        reply = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
        }
        self._send(h, 200, json.dumps(reply).encode())

    def _generate(self, content: str, max_tokens: int) -> str:
        ids = self.tok(content, add_special_tokens=False)["input_ids"][-160:]
        with self._model_lock, torch.no_grad():
            out = self.model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=min(max_tokens, 12),
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        return self.tok.decode(out[0, len(ids) :], skip_special_tokens=True)

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict | None = None
    ) -> None:
        self._leave()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(payload)
