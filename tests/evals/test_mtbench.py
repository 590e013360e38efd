"""MT-Bench: the question data, two-turn prompts, judge prompts, aggregation, and the full path
generate -> judge (a real chat-completions server on 127.0.0.1, and the in-process local judge) ->
aggregate -> report."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lorasweep import results
from lorasweep.config import JudgeConfig
from lorasweep.errors import UserError
from lorasweep.evals import mtbench
from lorasweep.evals.generate import generate
from lorasweep.evals.judge import openai_compatible
from lorasweep.evals.judge.prompts import build_messages
from lorasweep.evals.pipeline import GenerationSettings
from lorasweep.models import load_base
from lorasweep.report.load import load_trials
from tests.evals.judge_server import JudgeServer, rating_for

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "mtbench_sample.jsonl"
KEY_ENV, KEY = "LORASWEEP_TEST_JUDGE_KEY", "sk-test-5b7e-DO-NOT-PERSIST"
SETTINGS = GenerationSettings(template="plain", max_new_tokens=6, batch_size=2)


@pytest.fixture(scope="module")
def tiny():
    return load_base("builtin:tinyworld")


@pytest.fixture(scope="module")
def server(tiny):
    srv = JudgeServer(*tiny).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch):
    monkeypatch.setattr(openai_compatible, "RETRY_BASE_S", 0.005)


def judge_cfg(url: str) -> JudgeConfig:
    return JudgeConfig(
        backend="openai-compatible",
        base_url=url,
        model="tinyworld-judge",
        api_key_env=KEY_ENV,
        timeout_s=10.0,
        max_retries=2,
        concurrency=2,
        max_tokens=32,
    )


# ---------------------------------------------------------------- data


def test_builtin_questions():
    rows = mtbench.load_builtin()
    assert [r["question_id"] for r in rows] == list(range(81, 161))
    counts = {c: sum(r["category"] == c for r in rows) for c in mtbench.CATEGORIES}
    assert counts == dict.fromkeys(mtbench.CATEGORIES, 10)
    assert all(len(r["turns"]) == 2 for r in rows)
    with_ref = {r["category"] for r in rows if r["reference"]}
    assert with_ref == {"math", "reasoning", "coding"}
    assert sum(bool(r["reference"]) for r in rows) == 30


def test_local_file_and_hub_schema(tmp_path):
    rows = mtbench.load_questions(FIXTURE)
    assert [r["question_id"] for r in rows] == [81, 111, 121, 91]
    assert rows[1]["reference"][0].startswith("3 x 4") and rows[0]["reference"] is None
    hub = {"prompt_id": 7, "category": "writing", "prompt": ["a", "b"], "reference": []}
    assert mtbench.normalise(hub) == {"question_id": 7, "category": "writing", "turns": ["a", "b"],
                                      "reference": None}  # fmt: skip


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "invalid JSON"),
        ('{"question_id": 1, "category": "writing", "turns": ["only one"]}', "two non-empty strings"),
        ('{"question_id": 1, "category": "math", "turns": ["a", "b"]}', "graded against a reference"),
        ('{"category": "writing", "turns": ["a", "b"]}', "missing 'question_id'"),
        ('{"question_id": 1, "turns": ["a", "b"]}', "missing 'category'"),
        ('{"question_id": 1, "category": "coding", "turns": ["a", "b"], "reference": ["x"]}', "reference"),
    ],
)
def test_bad_file_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text(FIXTURE.read_text().splitlines()[0] + "\n\n" + line + "\n")
    with pytest.raises(UserError, match=message) as e:
        mtbench.load_questions(path)
    assert e.value.where == f"{path}:3"


# ---------------------------------------------------------------- prompts


def test_two_turn_prompts(tiny):
    _, tok = tiny
    turns, answers = ["Q one?", "Q two?"], ["A one."]
    assert mtbench.conversation_prompt("plain", turns, [], tok) == "Question: Q one?\nAnswer:"
    assert mtbench.conversation_prompt("plain", turns, answers, tok) == (
        "Question: Q one?\nAnswer: A one.\nQuestion: Q two?\nAnswer:"
    )
    alpaca = mtbench.conversation_prompt("alpaca", turns, answers, tok)
    assert alpaca.endswith("### Response:A one.\n\n### Instruction:\nQ two?\n\n### Response:")
    with pytest.raises(ValueError, match="chat template"):
        mtbench.conversation_prompt("chat", turns, answers, tok)
    chat_tok = copy.deepcopy(tok)
    chat_tok.chat_template = (
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    assert mtbench.conversation_prompt("chat", turns, answers, chat_tok) == (
        "<user>Q one?\n<assistant>A one.\n<user>Q two?\n<assistant>"
    )


def test_judge_prompts_follow_the_rubric():
    turns, answers = ["What is 2+2?", "And 3+3?"], ["4", "6"]
    general = build_messages(turns, answers, 1, "writing", None)[1]["content"]
    assert "[[rating]]" in general and "helpful" in general and "REFERENCE" not in general
    math = build_messages(turns, answers, 1, "math", ["four", "six"])[1]["content"]
    assert "four" in math and "correct" in math and "six" not in math
    second = build_messages(turns, answers, 2, "math", ["four", "six"])[1]["content"]
    assert all(s in second for s in ("SECOND", "What is 2+2?", "And 3+3?", "4", "6", "four", "six"))
    writing_ref = build_messages(turns, answers, 1, "writing", ["ignored"])[1]["content"]
    assert "ignored" not in writing_ref  # references are for math/reasoning/coding only


def test_changed_judge_prompt_or_version_is_judged_again(server, tmp_path, monkeypatch):
    """A cached judgment is reused only for the same prompt version and the same words shown."""
    from lorasweep.evals.judge import prompts, stage

    monkeypatch.setenv(KEY_ENV, KEY)
    records = [{**q, "answers": ["A one.", "A two."]} for q in mtbench.load_questions(FIXTURE)[:2]]
    results.write_jsonl(tmp_path / mtbench.GENERATIONS, records)
    before = server.count
    for _ in range(2):
        mtbench.judge_generations(tmp_path, judge_cfg(server.url))
    assert server.count - before == 4  # 2 questions x 2 turns, the second run from the cache
    monkeypatch.setattr(stage, "PROMPT_VERSION", "test-version-2")
    mtbench.judge_generations(tmp_path, judge_cfg(server.url))
    assert server.count - before == 8
    judged = results.read_jsonl(tmp_path / mtbench.JUDGMENTS)
    assert {j["prompt_version"] for j in judged} == {"test-version-2"}
    assert not any(j["cached"] for j in judged)
    monkeypatch.setattr(prompts, "SYSTEM", prompts.SYSTEM + " Be brief.")  # same version, other words
    mtbench.judge_generations(tmp_path, judge_cfg(server.url))
    assert server.count - before == 12


# ---------------------------------------------------------------- aggregate


def j(qid, turn, cat, status, score=None):
    return {"question_id": qid, "turn": turn, "category": cat, "status": status, "score": score}


def test_aggregate_table():
    rows = [j(1, 1, "math", "ok", 8), j(1, 2, "math", "ok", 6), j(2, 1, "writing", "ok", 10),
            j(2, 2, "writing", "unparseable"), j(3, 1, "writing", "out_of_range"), j(3, 2, "writing", "ok", 1)]  # fmt: skip
    m = mtbench.aggregate(rows, 3)
    assert m["score"] == pytest.approx(25 / 4) and m["partial_score"] == m["score"]
    assert m["turn_1"] == 9 and m["turn_2"] == pytest.approx(3.5)
    assert m["category"] == {"writing": pytest.approx(5.5), "math": 7}
    assert list(m["category"]) == ["writing", "math"]  # MT-Bench's category order
    assert (m["n_scored"], m["n_unparseable"], m["n_out_of_range"], m["n_failed"]) == (4, 2, 1, 0)
    failed = mtbench.aggregate([*rows[:5], j(3, 2, "writing", "failed")], 3)
    assert failed["score"] is None and failed["partial_score"] == 8 and not failed["complete"]
    assert mtbench.aggregate([], 0)["score"] is None


# ---------------------------------------------------------------- full path


def test_generate_judge_aggregate_report(tiny, server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    model, tok = tiny
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()[:3]]
    out = tmp_path / "trials" / "t0" / "eval"
    before = server.count
    metrics = mtbench.run_mtbench(model, tok, rows, SETTINGS, out, {"judge": judge_cfg(server.url)})

    records = results.read_jsonl(out / mtbench.GENERATIONS)
    assert [r["question_id"] for r in records] == [81, 111, 121] and all(
        len(r["answers"]) == 2 for r in records
    )
    # turn 2 continues the model's own turn-1 answer, batched like turn 1
    prompts = [mtbench.conversation_prompt("plain", r["turns"], r["answers"][:1], tok) for r in records]
    assert [r["answers"][1] for r in records] == [t.strip() for t in generate(model, tok, prompts, 6, 2)]

    sent = server.log[before:]
    assert len(sent) == 6 and all(r["auth"] == f"Bearer {KEY}" for r in sent)
    ratings = {r["content"]: rating_for(r["content"]) for r in sent}
    assert metrics["score"] == pytest.approx(sum(ratings.values()) / 6)
    assert metrics["n_scored"] == 6 and metrics["complete"]
    assert set(metrics["category"]) == {"writing", "math", "coding"}
    assert metrics["judge"] == "openai-compatible:tinyworld-judge" and metrics["decoding"] == "greedy"

    # judging alone, again: everything from the cache
    assert mtbench.judge_generations(out, judge_cfg(server.url)) == metrics
    assert server.count == before + 6

    # the score lands in the report like any task's
    trial = out.parent
    results.atomic_write_json(
        trial / "config.json", {"trial": {"method": "lora", "batch_size": 4, "lr": 1e-3, "seed": 0}}
    )
    results.atomic_write_json(trial / "metrics.json", {"mtbench": metrics})
    results.write_status(trial, "completed")
    (row,) = load_trials(tmp_path, "mtbench.score")
    assert row["value"] == pytest.approx(metrics["score"])

    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


def test_local_judge_in_process(tiny, tmp_path):
    model, tok = tiny
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()[:2]]
    local = JudgeConfig(backend="local", model="builtin:tinyworld", max_tokens=8, concurrency=4)
    metrics = mtbench.run_mtbench(model, tok, rows, SETTINGS, tmp_path, {"judge": local})
    judged = results.read_jsonl(tmp_path / mtbench.JUDGMENTS)
    # TinyWorld never learnt to grade: its replies carry no [[N]], so they are unparseable (never 0)
    assert [x["status"] for x in judged] == ["unparseable"] * 4 and all(x["judgment"] for x in judged)
    assert metrics["n_unparseable"] == 4 and metrics["score"] is None and metrics["complete"]
    again = mtbench.judge_generations(tmp_path, local)
    assert again == metrics
    assert all(x["cached"] for x in results.read_jsonl(tmp_path / mtbench.JUDGMENTS))


def test_shared_cache_path_and_temperatures(tiny, server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    model, tok = tiny
    rows = [json.loads(FIXTURE.read_text().splitlines()[0])]
    opts = {"judge": judge_cfg(server.url), "judge_cache": str(tmp_path / "run-cache.jsonl"),
            "temperatures": {"writing": 0.7}, "seed": 3}  # fmt: skip
    first = mtbench.run_mtbench(model, tok, rows, SETTINGS, tmp_path / "a", opts)
    second = mtbench.run_mtbench(model, tok, rows, SETTINGS, tmp_path / "b", opts)
    assert first["decoding"] == "sampled" and first == second  # same seed, same answers: judged once
    assert len((tmp_path / "run-cache.jsonl").read_text().splitlines()) == 2
    with pytest.raises(UserError, match="unknown category"):
        mtbench.run_mtbench(model, tok, rows, SETTINGS, tmp_path, {**opts, "temperatures": {"poetry": 1}})


def test_bad_judge_config_fails_before_generating(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    rows = [json.loads(FIXTURE.read_text().splitlines()[0])]
    with pytest.raises(UserError, match="did you mean 'local'"):
        mtbench.run_mtbench(
            model, tok, rows, SETTINGS, tmp_path, {"judge": JudgeConfig(backend="locl", model="m")}
        )
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(UserError, match=KEY_ENV):
        mtbench.run_mtbench(model, tok, rows, SETTINGS, tmp_path, {"judge": judge_cfg("http://127.0.0.1:9")})
    assert not (tmp_path / mtbench.GENERATIONS).exists()


def test_task_entry_runs_through_the_pipeline(tiny, server, tmp_path, monkeypatch):
    """The registered mtbench task drives ``evaluate``: row checks, two turns, judge, every metric."""
    from lorasweep.evals import registry
    from lorasweep.evals.pipeline import evaluate

    monkeypatch.setenv(KEY_ENV, KEY)
    model, tok = tiny
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()[:2]]
    spec = registry.get("mtbench")
    for row in rows:
        spec.check_row(row)
    with pytest.raises(ValueError, match="reference"):
        spec.check_row({**rows[1], "reference": None})
    metrics = evaluate("mtbench", model, tok, rows, SETTINGS, tmp_path, {"judge": judge_cfg(server.url)})
    assert metrics["n_scored"] == 4 and metrics["score"] is not None
    assert metrics["protocol"]["template"] == "plain"
    assert set(spec.metrics) <= set(metrics)  # the names the report reads are the names produced
    assert spec.reference is None and not spec.percent  # no held-out loss; 1-10 scores, not fractions


def test_lorasweep_run_puts_mtbench_in_the_report(server, tmp_path, monkeypatch, capsys):
    """`lorasweep run` with MT-Bench as a second task: trial metrics, baseline, report section, no key."""
    from lorasweep.cli import main

    monkeypatch.setenv(KEY_ENV, KEY)
    out = tmp_path / "run"
    args = [
        f"output_dir={out}",
        "adapter.methods=[lora]",
        "train.batch_sizes=[8]",
        "train.lr_search=grid",
        "report.reference_batch_size=null",
        "report.reference_lr=null",
        "eval.selection.num_examples=8",
        "train.learning_rates=[5e-3]",
        "train.seeds=[0]",
        "data.num_train=16",
        "eval.num_examples=3",
        "eval.max_new_tokens=6",
        "sweep.backend=inprocess",
        "eval.tasks=[gsm8k,mtbench]",
        f"eval.data={{mtbench: {FIXTURE}}}",
        f"eval.judge.base_url={server.url}",
        "eval.judge.model=tinyworld-judge",
        f"eval.judge.api_key_env={KEY_ENV}",
        "eval.judge.max_tokens=32",
        "report.curvature_examples=0",
    ]
    assert main(["run", "configs/demo.yaml", *args]) == 0
    m = json.loads((out / "trials" / "lora-b8-lr0.005-s0" / "metrics.json").read_text())
    assert 1 <= m["mtbench"]["score"] <= 10 and m["mtbench"]["n_scored"] == 6
    report = (out / "report" / "report.md").read_text()
    assert "## `mtbench.score`" in report and "Batch size alone moves the score (mtbench.score)" not in report
    assert "| lora | 8 | 0.005 |" in report.split("## `mtbench.score`")[1]
    assert (out / "report" / "accuracy_vs_batch_mtbench.png").exists()
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
