"""The openai-compatible judge against a real chat-completions server on 127.0.0.1 that misbehaves.

Every case checks: no crash, the number of requests the server saw (retries), the final state of each
judgment, and that after the server recovers a re-run asks for exactly the missing judgments.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lorasweep.config import JudgeConfig
from lorasweep.errors import UserError
from lorasweep.evals import mtbench
from lorasweep.evals.judge import openai_compatible
from lorasweep.evals.judge.cache import JudgmentCache
from lorasweep.models import load_base
from lorasweep.results import read_jsonl, write_jsonl
from tests.evals.judge_server import JudgeServer, rating_for

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mtbench_sample.jsonl"
KEY_ENV, KEY = "LORASWEEP_TEST_JUDGE_KEY", "sk-test-9f2c1e7d-NEVER-WRITE-ME"
N = 6  # 3 questions x 2 turns


@pytest.fixture(scope="module")
def server():
    model, tok = load_base("builtin:tinyworld")
    srv = JudgeServer(model, tok, slow_s=1.0).start()
    yield srv
    srv.stop()


@pytest.fixture
def srv(server):
    """The shared server, healthy, with empty counters (slow answers of an earlier test drained)."""
    server.recover()
    server.delay_s = 0.0
    deadline = time.monotonic() + 5
    while server.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    server.log.clear()
    server.max_in_flight = 0
    yield server
    server.recover()


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """An eval folder holding a generations file (canned answers): judging runs on it alone."""
    monkeypatch.setenv(KEY_ENV, KEY)
    questions = mtbench.load_questions(FIXTURE)[:3]
    records = [{**q, "answers": [f"Answer one to {q['question_id']}", "Answer two"]} for q in questions]
    write_jsonl(tmp_path / mtbench.GENERATIONS, records)
    return tmp_path


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch):
    monkeypatch.setattr(openai_compatible, "RETRY_BASE_S", 0.005)


def cfg(srv, **kw) -> JudgeConfig:
    settings = {
        "backend": "openai-compatible",
        "base_url": srv.url,
        "model": "tinyworld-judge",
        "api_key_env": KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 2,
        "concurrency": 2,
        "max_tokens": 32,
    }
    return JudgeConfig(**{**settings, **kw})


def timeout(fault: str) -> float:
    """Short only where the server is made slow (1 s): a healthy answer takes a few ms."""
    return 0.5 if fault == "slow" else 5.0


def judgments(run_dir: Path) -> list[dict]:
    return read_jsonl(run_dir / mtbench.JUDGMENTS)


def assert_recovers(srv, run_dir: Path, missing: int, **kw) -> None:
    """After recovery a re-run sends exactly ``missing`` requests and completes; a third sends none."""
    srv.recover()
    before = srv.count
    metrics = mtbench.judge_generations(run_dir, cfg(srv, **kw))
    assert srv.count - before == missing
    assert metrics["n_failed"] == 0 and metrics["complete"] and metrics["score"] is not None
    before = srv.count
    assert mtbench.judge_generations(run_dir, cfg(srv, **kw)) == metrics
    assert srv.count == before


def test_healthy_server_scores_every_turn(srv, run_dir):
    metrics = mtbench.judge_generations(run_dir, cfg(srv))
    assert srv.count == N and all(r["auth"] == f"Bearer {KEY}" for r in srv.log)
    expected = [rating_for(r["content"]) for r in srv.log]
    assert sorted(j["score"] for j in judgments(run_dir)) == sorted(expected)
    assert metrics["score"] == pytest.approx(sum(expected) / N)
    assert metrics["n_scored"] == N and metrics["n_failed"] == metrics["n_unparseable"] == 0


def test_torn_cache_line_costs_one_request(srv, run_dir):
    mtbench.judge_generations(run_dir, cfg(srv))
    cache = run_dir / mtbench.CACHE
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text("".join(lines[:-1]) + lines[-1][:40])  # a crash mid-append
    metrics = mtbench.judge_generations(run_dir, cfg(srv))
    assert srv.count == N + 1 and metrics["complete"]
    assert mtbench.judge_generations(run_dir, cfg(srv)) == metrics and srv.count == N + 1


@pytest.mark.parametrize("fault", ["slow", "429", "500", "malformed", "empty"])
def test_outage_fails_every_judgment_then_rerun_fills_all(srv, run_dir, fault):
    srv.fail(fault)
    metrics = mtbench.judge_generations(run_dir, cfg(srv, timeout_s=timeout(fault)))
    assert srv.count == N * 3  # 1 try + max_retries=2 retries each
    assert metrics["n_failed"] == N and metrics["score"] is None and not metrics["complete"]
    assert all(j["status"] == "failed" and j["attempts"] == 3 for j in judgments(run_dir))
    assert len(JudgmentCache(run_dir / mtbench.CACHE)) == 0  # failures are never cached
    assert_recovers(srv, run_dir, missing=N)


@pytest.mark.parametrize("fault", ["slow", "429", "500", "malformed", "empty"])
def test_one_transient_fault_is_retried(srv, run_dir, fault):
    srv.fail(fault, times=1)
    metrics = mtbench.judge_generations(run_dir, cfg(srv, timeout_s=timeout(fault), concurrency=1))
    assert srv.count == N + 1
    assert metrics["n_scored"] == N and metrics["complete"]
    assert sorted(j["attempts"] for j in judgments(run_dir)) == [1] * (N - 1) + [2]


def test_partial_failure_rerun_fills_exactly_the_missing(srv, run_dir):
    srv.fail("500", match="sum of a list")  # both turns of question 121 show its first question
    metrics = mtbench.judge_generations(run_dir, cfg(srv, max_retries=1))
    assert srv.count == 4 + 2 * 2
    failed = [j for j in judgments(run_dir) if j["status"] == "failed"]
    assert [(j["question_id"], j["turn"]) for j in failed] == [(121, 1), (121, 2)]
    assert metrics["n_failed"] == 2 and metrics["score"] is None
    assert metrics["partial_score"] == pytest.approx(
        sum(j["score"] for j in judgments(run_dir) if j["status"] == "ok") / 4
    )
    assert "HTTP 500" in failed[0]["error"]
    assert_recovers(srv, run_dir, missing=2)


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The judge's back-off sleeps, recorded instead of slept: asserted exactly, and no test waits."""
    recorded: list[float] = []

    class Clock:
        def __getattr__(self, name):
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            recorded.append(seconds)

    monkeypatch.setattr(openai_compatible, "time", Clock())
    return recorded


def test_retry_after_is_honoured(srv, run_dir, waits):
    srv.fail("429", times=1, retry_after=30)
    mtbench.judge_generations(run_dir, cfg(srv, concurrency=1))
    assert srv.count == N + 1
    assert waits == [30.0]  # base delay is 5 ms: the header ruled


def test_backoff_without_retry_after_is_exponential(srv, run_dir, waits, monkeypatch):
    srv.fail("429", times=3)
    monkeypatch.setattr(openai_compatible, "RETRY_BASE_S", 0.05)
    mtbench.judge_generations(run_dir, cfg(srv, concurrency=1, max_retries=3))
    assert srv.count == N + 3 and len(waits) == 3
    for wait, floor in zip(waits, (0.05, 0.1, 0.2), strict=True):
        assert floor <= wait <= floor * 1.25  # base x 2^attempt, plus up to 25 % jitter
    assert all(j["status"] == "ok" for j in judgments(run_dir))


@pytest.mark.parametrize(
    ("action", "status"),
    [("rating:11", "out_of_range"), ("rating:0", "out_of_range"), ("norating", "unparseable")],
)
def test_invalid_rating_is_recorded_not_retried_not_zero(srv, run_dir, action, status):
    srv.fail(action, match="lighthouse")  # both turns of question 81
    metrics = mtbench.judge_generations(run_dir, cfg(srv))
    assert srv.count == N  # a judge that answered is never asked again
    bad = [j for j in judgments(run_dir) if j["question_id"] == 81]
    assert [(j["status"], j["score"]) for j in bad] == [(status, None)] * 2
    assert metrics["n_unparseable"] == 2 and metrics["n_failed"] == 0 and metrics["n_scored"] == N - 2
    assert metrics["n_out_of_range"] == (2 if status == "out_of_range" else 0)
    assert metrics["score"] is not None and metrics["complete"]
    srv.recover()
    mtbench.judge_generations(run_dir, cfg(srv))
    assert srv.count == N  # answered judgments come from the cache


def test_auth_error_stops_the_batch_without_retries(srv, run_dir):
    srv.fail("401")
    metrics = mtbench.judge_generations(run_dir, cfg(srv, concurrency=1))
    assert srv.count == 1 and metrics["n_failed"] == N
    errors = [j["error"] for j in judgments(run_dir)]
    assert errors[0].startswith("HTTP 401")
    assert all(e.startswith("not sent: ") for e in errors[1:])
    assert_recovers(srv, run_dir, missing=N)


def test_concurrency_limit(srv, run_dir):
    srv.delay_s = 0.1
    mtbench.judge_generations(run_dir, cfg(srv, concurrency=2))
    assert srv.max_in_flight == 2


def test_unreachable_server_fails_without_crash(run_dir):
    metrics = mtbench.judge_generations(
        run_dir, JudgeConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None, max_retries=1)
    )
    assert metrics["n_failed"] == N and "connection failed" in judgments(run_dir)[0]["error"]


def test_missing_key_variable_is_a_user_error(srv, run_dir, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(UserError, match=KEY_ENV):
        mtbench.judge_generations(run_dir, cfg(srv))
    assert srv.count == 0


def test_api_key_never_written(srv, run_dir, capsys):
    srv.fail("500-echo", times=2)  # the server echoes the Authorization header in its error body
    srv.fail("500-echo", match="lighthouse")
    lines: list[str] = []
    mtbench.judge_generations(run_dir, cfg(srv, max_retries=1), log=lines.append)
    assert any(KEY in r["auth"] for r in srv.log)  # the key was sent...
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {mtbench.JUDGMENTS, mtbench.CACHE, mtbench.METRICS}
    for path in files:  # ...and is in no file the run wrote, nor in its log or output
        assert KEY not in path.read_text(errors="replace"), path
    assert "[redacted]" in (run_dir / mtbench.JUDGMENTS).read_text()
    out = capsys.readouterr()
    assert KEY not in "\n".join(lines) + out.out + out.err
