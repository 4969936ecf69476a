"""Bad input and broken parts, as a user meets them: each gives one clear line and a non-zero exit (or a loud,
counted degradation), never a traceback from deep inside and never a run that quietly trains on nothing.

Real parts throughout: the small embedded start (conftest.py), real files with bad bytes and BOMs, a real local
HTTP server that refuses (test_endpoints.ChatServer) and a port where nothing listens.
"""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import cooper
from test_endpoints import ChatServer

SMALL = ["--steps", "3", "--prompts-per-step", "4", "--group-size", "2", "--eval-size", "4", "--eval-every", "0",
         "--sample-every", "0"]


def run(args: list[str]):
    """cooper.py's main path in this process: parse, then train."""
    return cooper.train(cooper.parse_args(args))


def stops_with(args: list[str]) -> str:
    """The one line a run that must not go on exits with (SystemExit's message)."""
    with pytest.raises(SystemExit) as stop:
        run(args)
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    """A small GSM8K-format file of toy problems."""
    import data
    path = tmp_path_factory.mktemp("problems") / "toy.jsonl"
    path.write_text("".join(json.dumps({"question": r["question"], "answer": r["solution"]}) + "\n"
                            for r in data.make_toy_problems(12, seed=5)))
    return path


# ----------------------------------------------------------------------------------------------------
# Broken parts: the run stops after --halt-after steps in a row, saying what broke and what the server said

def test_a_dead_assistant_endpoint_stops_cooper_instead_of_training_a_frozen_rm(toy_start, tmp_path):
    message = stops_with(["--reward", "cooper", "--toy-dir", str(toy_start), "--out", str(tmp_path / "run"),
                          *SMALL, "--steps", "6", "--prompts-per-step", "16", "--group-size", "4",
                          "--assistant", "openai", "--assistant-url", "http://127.0.0.1:9/v1",
                          "--assistant-model", "m", "--assistant-retries", "0", "--halt-after", "2"])
    assert "the assistant answered none of its" in message and "--halt-after 2" in message
    assert "error" in message and "last error:" in message   # the client's breakdown and its own words
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(r["assistant_ok"] == 0 and r["valid_pairs"] == 0 for r in rows)
    assert not (tmp_path / "run" / "summary.json").exists()


def test_an_endpoint_that_refuses_every_request_shows_the_servers_reason(toy_start, tmp_path):
    with ChatServer(behaviour="refuse") as srv:
        message = stops_with(["--reward", "cooper", "--toy-dir", str(toy_start), "--out", str(tmp_path / "run"),
                              *SMALL, "--steps", "6", "--prompts-per-step", "16", "--group-size", "4",
                              "--assistant", "openai", "--assistant-url", srv.url, "--assistant-model", "toy",
                              "--halt-after", "1"])
    assert "refused" in message and "max_model_len" in message, message   # vLLM's own 400 text


def test_a_reward_model_that_outputs_nan_stops_the_run_and_logs_valid_json(toy_start, tmp_path):
    from safetensors.torch import load_file, save_file
    broken = tmp_path / "nan-rm"
    shutil.copytree(toy_start / "reward", broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights["score.weight"] = torch.full_like(weights["score.weight"], float("nan"))
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    train = tmp_path / "train.jsonl"
    import data
    train.write_text("".join(json.dumps({"question": r["question"], "answer": r["solution"]}) + "\n"
                             for r in data.toy_splits(16, 4, seed=1)[0]))
    message = stops_with(["--reward", "rm", "--policy", str(toy_start / "policy"), "--preset", "toy",
                          "--reward-model", str(broken), "--train", str(train), "--test", str(train),
                          "--out", str(tmp_path / "run"), *SMALL, "--halt-after", "2"])
    assert "rewards are not finite" in message
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]   # valid JSON: null where the value was NaN, never a bare NaN
    assert len(rows) == 2 and all(r["reward_mean"] is None for r in rows)
    assert all("rm_acc_rollouts" not in r for r in rows)   # no accuracy made up from NaN scores


# ----------------------------------------------------------------------------------------------------
# Wrong models and paths: one line naming the path

def test_the_reward_model_folder_as_policy_and_the_policy_folder_as_reward_model_are_refused(toy_start, problems,
                                                                                              tmp_path):
    common = ["--train", str(problems), "--test", str(problems), "--out", str(tmp_path / "run"), *SMALL]
    message = stops_with(["--reward", "rule", "--policy", str(toy_start / "reward"), *common])
    assert str(toy_start / "reward") in message and "LM head" in message
    message = stops_with(["--reward", "rm", "--policy", str(toy_start / "policy"),
                          "--reward-model", str(toy_start / "policy"), *common])
    assert str(toy_start / "policy") in message and "score head" in message


@pytest.mark.parametrize("what", ["missing", "not a model"])
def test_a_policy_path_that_is_no_model_is_one_line(problems, tmp_path, what):
    path = tmp_path / "nothing-here"
    if what == "not a model":
        path.mkdir()
        (path / "README.md").write_text("notes\n")
    message = stops_with(["--reward", "rule", "--policy", str(path), "--train", str(problems), "--test",
                          str(problems), "--out", str(tmp_path / "run"), *SMALL])
    assert str(path) in message


def test_a_missing_or_malformed_rm_eval_is_one_line(toy_start, tmp_path):
    message = stops_with(["--reward", "rm", "--toy-dir", str(toy_start), "--rm-eval", str(tmp_path / "no.jsonl"),
                          "--out", str(tmp_path / "run"), *SMALL])
    assert "no.jsonl" in message and "not found" in message
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "reference_answer": "1", "completion": "#### 1", "label": "maybe"}\n')
    message = stops_with(["--reward", "rm", "--toy-dir", str(toy_start), "--rm-eval", str(bad),
                          "--out", str(tmp_path / "run"), *SMALL])
    assert "bad.jsonl: row 1" in message and "label" in message


# ----------------------------------------------------------------------------------------------------
# Files as they come: bad bytes, BOMs, directories

def test_a_bad_byte_is_that_rows_error_and_skippable_and_a_bom_is_tolerated(toy_start, tmp_path):
    rows = [json.dumps({"question": f"{a}+1=?", "answer": f"#### {a + 1}"}).encode() for a in range(6)]
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(rows[:3] + [rows[3][:-3] + b"\xff\"}"] + rows[4:]) + b"\n")
    common = ["--reward", "rule", "--policy", str(toy_start / "policy"), "--preset", "toy", "--test", str(path),
              "--out", str(tmp_path / "run"), *SMALL, "--steps", "1"]
    message = stops_with(common + ["--train", str(path)])
    assert "train.jsonl: row 4: not valid UTF-8" in message
    summary = run(common + ["--train", str(path), "--skip-bad-rows"])
    assert summary["mode"] == "rule"   # the BOM row 1 and rows 2-3, 5-6 were read; row 4 skipped and counted


def test_a_start_cached_by_an_older_toy_py_is_one_line_naming_its_folder(tmp_path):
    """A user upgrading with runs/toy from before the settled start: told to delete it, not trained from."""
    old = tmp_path / "toy"
    old.mkdir()
    (old / "start.json").write_text(json.dumps({"seed": 0, "start_acc": 0.34, "sft_in_band": True}))
    message = stops_with(["--toy-dir", str(old), "--out", str(tmp_path / "run"), *SMALL])
    assert str(old) in message and "older toy.py" in message and "delete the folder" in message


def test_a_directory_given_as_the_training_file_is_named_as_such(toy_start, tmp_path):
    message = stops_with(["--reward", "rule", "--policy", str(toy_start / "policy"), "--train", str(tmp_path),
                          "--test", str(tmp_path), "--out", str(tmp_path / "run"), *SMALL])
    assert "is a directory" in message


# ----------------------------------------------------------------------------------------------------
# Flags that make the loss undefined or the run meaningless: refused at parse time, naming the flag

@pytest.mark.parametrize("flag, value, says", [("--temperature", "0", "must be > 0"), ("--lr", "-1", "must be > 0"),
                                               ("--group-size", "1", "must be >= 2"), ("--top-p", "1.5", "(0, 1]"),
                                               ("--beta", "nan", "must be >= 0"), ("--halt-after", "0", ">= 1")])
def test_flags_out_of_range_are_refused_at_parse_time(capsys, flag, value, says):
    with pytest.raises(SystemExit):
        cooper.parse_args([flag, value])
    err = capsys.readouterr().err
    assert flag in err and says in err


def test_an_openai_assistant_without_its_url_is_refused_at_parse_time(capsys):
    with pytest.raises(SystemExit):
        cooper.parse_args(["--reward", "cooper", "--assistant", "openai", "--assistant-model", "m"])
    assert "--assistant-url" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# --resume: the newest readable checkpoint, or one line naming what is broken

def test_resume_falls_back_past_a_broken_checkpoint_and_names_it(toy_start, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--reward", "rule", "--toy-dir", str(toy_start), "--out", str(out), *SMALL, "--steps", "4",
            "--save-every", "1"]
    run(args)
    root = out / "checkpoint"
    assert sorted(d for d in os.listdir(root) if d.startswith("step-")) == ["step-000003", "step-000004"]
    trainer = root / "step-000004" / "trainer.pt"
    trainer.write_bytes(trainer.read_bytes()[:100])   # truncated, as by a full disk
    run(["--resume", str(out)])
    captured = capsys.readouterr()
    assert "trainer.pt" in captured.err and "resuming from" in captured.err and "step-000003" in captured.err
    assert "resumed from" in captured.out and "at step 4" in captured.out
    # and when nothing readable is left, one line naming each broken file
    for name in ("step-000003", "step-000004"):
        (root / name / "trainer.pt").write_bytes(b"")
    message = stops_with(["--resume", str(out)])
    assert "no readable checkpoint" in message and "step-000003" in message


def test_resume_with_latest_naming_a_missing_folder_uses_the_one_before(toy_start, tmp_path, capsys):
    out = tmp_path / "run"
    run(["--reward", "rule", "--toy-dir", str(toy_start), "--out", str(out), *SMALL, "--steps", "2",
         "--save-every", "1"])
    shutil.rmtree(out / "checkpoint" / "step-000002")
    run(["--resume", str(out)])
    assert "at step 2" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["mode"] == "rule"   # valid JSON, a finished run
