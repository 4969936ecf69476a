"""Tests of annotate.py's offline parts: the judge's verdicts, hybrid labels, GSM8K's model solutions.
The client and `annotate --judge openai` against real local HTTP servers are in test_endpoints.py,
against a real vLLM server in test_vllm_server.py."""
import doctest
import json
from pathlib import Path

import pytest

import annotate
import reward

ROOT = Path(__file__).parent
GSM8K_SOLUTIONS = ROOT.parent / "shared" / "data" / "gsm8k" / "example_model_solutions.jsonl"


def test_docstring_examples_hold():
    result = doctest.testmod(annotate)
    assert result.attempted > 0 and result.failed == 0


def test_parse_verdict():
    assert annotate.parse_verdict("The final answer 18 matches.\nVerdict: Yes") is True
    assert annotate.parse_verdict("**Verdict**: **NO**") is False
    assert annotate.parse_verdict("Verdict: no... wait, 2.5 = 5/2.\nVerdict: yes.") is True   # the last one counts
    assert annotate.parse_verdict("Yes.") is True and annotate.parse_verdict("No, the student wrote 17.") is False
    for unclear in ["There is no final answer here", "I cannot tell", "", None, "Yesterday it rained"]:
        assert annotate.parse_verdict(unclear) is None


def test_hybrid_labels_keep_agreements_and_count_the_rest():
    rows = [{"question": "q", "reference": "5", "completion": c, "label": gold}
            for c, gold in [("#### 5", 1), ("#### 5", 1), ("#### 6", 1), ("#### 6", 0), ("#### 5", 1)]]
    kept, stats = annotate.hybrid_labels(rows, [True, False, False, True, None])
    assert [(r["completion"], r["label"]) for r in kept] == [("#### 5", 1), ("#### 6", 0)]
    assert stats["no_verdict"] == 1 and stats["rule_yes_judge_no"] == 1 and stats["rule_no_judge_yes"] == 1
    assert stats["agreement"] == 0.5 and stats["kept_per_label"] == {"1": 1, "0": 1}
    assert stats["gold_agreement"] == 0.5   # the kept "#### 6" row was labelled correct in the input


def test_read_labelled_without_labels_for_annotation(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text('{"question": "q", "answer": "1", "completion": "#### 1"}\n')
    assert reward.read_labelled(str(src), need_label=False)[0]["label"] is None
    with pytest.raises(ValueError, match="expected fields"):
        reward.read_labelled(str(src))


def _gsm8k_solution_row(question, truth, answers):
    row = {"question": question, "ground_truth": f"work\nA: {truth}"}
    for solver, (final, ok) in zip(annotate.GSM8K_SOLVERS, answers):
        row[solver] = {"is_correct": ok, "solution": f"some steps\nA: {final}"}
    return row


def test_convert_gsm8k_solutions_writes_four_labelled_rows_per_question(tmp_path, capsys):
    src = tmp_path / "sol.jsonl"
    src.write_text(json.dumps(_gsm8k_solution_row("q1", "1,200", [("1200", True), ("7", False), ("1,200", True),
                                                                  ("", False)])) + "\n")
    for out in (tmp_path / "c.jsonl", tmp_path / "c.parquet"):
        annotate.main(["convert-gsm8k", str(src), str(out)])
        rows = reward.read_labelled(str(out))
        assert [r["label"] for r in rows] == [1, 0, 1, 0] and {r["reference"] for r in rows} == {"1,200"}
        assert rows[1]["completion"] == "some steps\nA: 7"
    assert "wrote 4 rows (2 correct)" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**_gsm8k_solution_row("q", "3", [("3", True)] * 4), "ground_truth": "no final line"})
                   + "\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl: row 1: field 'ground_truth'"):
        annotate.main(["convert-gsm8k", str(bad), str(tmp_path / "x.jsonl")])


@pytest.mark.skipif(not GSM8K_SOLUTIONS.exists(), reason="../shared/data not present")
def test_converted_gsm8k_solutions_match_the_dataset_and_the_rule_verifier():
    import verify
    rows = annotate.convert_gsm8k_solutions(str(GSM8K_SOLUTIONS))
    assert len(rows) == 4 * 1319
    assert abs(sum(r["label"] for r in rows) / len(rows) - 0.379) < 0.001   # the dataset README's 37.9 %
    agree = sum(verify.verify(r["completion"], r["reference"]) == bool(r["label"]) for r in rows) / len(rows)
    assert agree > 0.98   # the labels come from the same final answers (about 1 % calculator-bug noise)


@pytest.mark.parametrize("flag,value", [("--concurrency", "0"), ("--timeout", "0"), ("--judge-max-tokens", "0"),
                                        ("--limit", "0")])
def test_annotate_rejects_out_of_range_flags_at_parse_time(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stop:
        annotate.main(["annotate", "in.jsonl", "out.jsonl", "--judge", "openai", "--judge-url", "http://127.0.0.1:9/v1",
                       "--judge-model", "m", flag, value])
    assert stop.value.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err


def test_annotate_with_an_hf_judge_names_a_missing_model_folder(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text('{"question": "q", "answer": "1", "completion": "#### 1"}\n')
    with pytest.raises(SystemExit, match=rf"^error: {tmp_path / 'nowhere'}: no such folder$"):
        annotate.main(["annotate", str(src), str(tmp_path / "o.jsonl"), "--judge", "hf",
                       "--judge-model", str(tmp_path / "nowhere")])
