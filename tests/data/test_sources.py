"""Training-data schemas and sources: real published schemas, first-N selection, errors with file:line."""

from __future__ import annotations

import json

import pytest

from lorasweep.data import formats, sources
from lorasweep.errors import UserError

ROWS = {
    "gsm8k": ({"question": "1+1?", "answer": "2\n#### 2"}, ("1+1?", "2\n#### 2")),
    "metamath": (
        {"query": "q", "response": "r The answer is: 3", "type": "GSM_Rephrased"},
        ("q", "r The answer is: 3"),
    ),
    "alpaca": ({"instruction": "Add", "input": "1 2", "output": "3"}, ("Add\n1 2", "3")),
    "codefeedback": (
        {"query": "write f", "answer": "def f(): pass", "resource": "x", "lang": "python"},
        ("write f", "def f(): pass"),
    ),
    "wizardlm": (
        {"idx": "1", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        ("hi", "hello"),
    ),
}


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_each_schema_maps_to_a_pair(fmt):
    row, pair = ROWS[fmt]
    assert formats.to_pair(row, fmt, "x:1") == pair
    assert formats.detect(row, "x:1") == fmt
    assert formats.to_pair(row, "auto", "x:1") == pair


def test_alpaca_without_input():
    assert formats.to_pair({"instruction": "Say hi", "input": "", "output": "hi"}, "alpaca", "w") == (
        "Say hi",
        "hi",
    )


@pytest.mark.parametrize(
    ("row", "fmt", "message"),
    [
        ({"query": "q"}, "metamath", "'response'"),
        ({"question": "q", "answer": ""}, "gsm8k", "empty string field 'answer'"),
        ({"instruction": 3, "output": "x"}, "alpaca", "'instruction'"),
        ({"conversations": [{"from": "gpt", "value": "x"}]}, "wizardlm", "no human turn"),
        ({"conversations": "hi"}, "wizardlm", "must be a list"),
        ({"text": "x"}, "auto", "matching no known schema"),
        (["not", "a", "dict"], "auto", "JSON object"),
    ],
)
def test_malformed_rows_name_the_problem_and_place(row, fmt, message):
    with pytest.raises(UserError, match=message) as e:
        formats.to_pair(row, fmt, "data.jsonl:7")
    assert e.value.where == "data.jsonl:7"


def test_jsonl_first_n_and_line_numbers(tmp_path):
    p = tmp_path / "m.jsonl"
    lines = [json.dumps({"query": f"q{i}", "response": f"r{i}"}) for i in range(5)]
    p.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")
    assert sources.load_training_pairs(str(p), "auto", 3) == [("q0", "r0"), ("q1", "r1"), ("q2", "r2")]
    p.write_text(lines[0] + "\n" + '{"query": "q1"}\n')
    with pytest.raises(UserError, match=r"m.jsonl:2: missing or empty string field 'response'"):
        sources.load_training_pairs(str(p), "metamath", 2)
    p.write_text(lines[0] + "\n{broken\n")
    with pytest.raises(UserError, match=r"m.jsonl:2: invalid JSON"):
        sources.load_training_pairs(str(p), "auto", 2)


def test_json_and_parquet(tmp_path):
    rows = [{"instruction": f"i{i}", "output": f"o{i}"} for i in range(4)]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    assert sources.load_training_pairs(str(tmp_path / "a.json"), "alpaca", 2) == [("i0", "o0"), ("i1", "o1")]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    assert sources.load_training_pairs(str(tmp_path / "a.parquet"), "auto", 4)[-1] == ("i3", "o3")
    (tmp_path / "bad.json").write_text(json.dumps([rows[0], {"instruction": "x"}]))
    with pytest.raises(UserError, match=r"bad.json\[1\]: missing or empty string field 'output'"):
        sources.load_training_pairs(str(tmp_path / "bad.json"), "alpaca", 2)


def test_too_few_rows_and_missing_file(tmp_path):
    p = tmp_path / "few.jsonl"
    p.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(UserError, match="asks for 9 rows"):
        sources.load_rows(str(p), "train", 9)
    with pytest.raises(UserError, match="data file not found"):
        sources.load_rows(str(tmp_path / "nope.jsonl"), "train", 1)


def test_hub_id_offline_fails_at_once_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"unreachable here.*local \.jsonl"):
        sources.load_training_pairs("meta-math/MetaMathQA", "metamath", 10)
    with pytest.raises(UserError, match="not a file, a built-in or a hub id"):
        sources.load_rows("no-such-thing", "train", 1)
