"""Tests of cooper.py (config, pairing rules, the step, the hacking monitor), toy.py, evaluate.py and report.py,
and end-to-end runs of each reward mode on the tiny model.

The drop-in modules have their own test files that travel with them: test_verify.py, test_grpo.py,
test_data.py, test_reward.py (and test_annotate.py). Run everything with `bash run.sh test`.
"""
import ast
import doctest
import importlib
import json
import random
import sys
from pathlib import Path

import pytest
import torch

import cooper
import data
import evaluate
import report
import reward
import toy

ROOT = Path(__file__).parent
PROJECT = sorted(p.stem for p in ROOT.glob("*.py") if not p.stem.startswith(("test_", "conftest")))


# ----------------------------------------------------------------------------------------------------
# The layout: drop-in files import no project file (reward.py at most verify.py), and nothing imports in a circle

def project_imports(module: str) -> set:
    """The project modules `module` imports anywhere in the file, function-level imports included."""
    imported = set()
    for node in ast.walk(ast.parse((ROOT / f"{module}.py").read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    return (imported & set(PROJECT)) - {module}


@pytest.mark.parametrize("module,allowed", [("verify", set()), ("grpo", set()), ("data", set()),
                                            ("reward", set()), ("annotate", {"verify", "reward"}),
                                            ("report", set()), ("distributed", {"grpo"})])
def test_drop_in_files_import_no_other_project_file(module, allowed):
    assert project_imports(module) <= allowed


def test_no_import_cycle_among_the_project_files():
    graph = {m: project_imports(m) for m in PROJECT}
    done, path = set(), []

    def visit(m):
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m in done:
            return
        path.append(m)
        for n in graph[m]:
            visit(n)
        path.pop()
        done.add(m)
    for m in PROJECT:
        visit(m)


@pytest.mark.parametrize("module", ["cooper", "distributed", "toy"])
def test_docstring_examples_hold(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_cooper_py_stays_a_file_a_reader_can_hold():
    assert len((ROOT / "cooper.py").read_text().splitlines()) <= 600


def test_every_flag_is_explained_by_help(capsys):
    import dataclasses
    with pytest.raises(SystemExit):
        cooper.parse_args(["--help"])
    shown = capsys.readouterr().out
    for f in dataclasses.fields(cooper.Config):
        assert len(f.metadata.get("help", "")) >= 10, f"--{f.name.replace('_', '-')} has no help text"
        assert "--" + f.name.replace("_", "-") in shown


# ----------------------------------------------------------------------------------------------------
# cooper.py: pairing rules and the offline assistant (toy.miscalculate)

def test_perturb_solution_makes_small_realistic_mistakes():
    import verify
    rng = random.Random(0)
    solution = "13+5=18, 18-7=11\n#### 11"
    seen, finals = {kind: set() for kind in ("carried", "final", "either")}, set()
    for kind in seen:
        for _ in range(60):
            wrong = toy.perturb_solution(solution, rng, kind=kind)
            final = verify.extract_answer(wrong)
            assert not verify.verify(wrong, "11") and abs(int(final) - 11) <= 10
            work = wrong.split("\n")[0]
            # carried: the last result is off and carried to the answer; final: only the answer is off
            assert work == (f"13+5=18, 18-7={final}" if kind == "carried" else "13+5=18, 18-7=11") or kind == "either"
            seen[kind].add(work == "13+5=18, 18-7=11")
            finals.add(final)
    assert seen == {"carried": {False}, "final": {True}, "either": {False, True}}
    assert finals == {"10", "12", "1", "21"}   # one digit off by one: the ones (+-1) or the tens (+-10)
    assert toy.perturb_solution("no numbers here", rng) == "no numbers here"
    assert toy.perturb_solution("#### 11", rng).startswith("#### ")   # nothing computed: a copy slip
    # work and answer disagree: a carried slip would not reach the answer, so the answer itself slips
    assert all(toy.perturb_solution("6-13=-8\n#### -7", rng).startswith("6-13=-8\n#### ") for _ in range(10))
    with pytest.raises(ValueError, match="kind"):
        toy.perturb_solution(solution, rng, kind="carry")


def test_miscalculate_writes_the_mistakes_the_policy_makes():
    import verify
    rng = random.Random(0)
    solution = "13+5=18, 18-7=11\n#### 11"
    finals = []
    for _ in range(400):
        wrong = toy.miscalculate(solution, rng)
        final = verify.extract_answer(wrong)
        assert wrong == f"13+5=18, 18-7={final}\n#### {final}"   # the last result is wrong, carried to the answer
        assert not verify.verify(wrong, "11")
        finals.append(final)
    # a carry mistake (off by ten) half the time, else one edit: a digit replaced, dropped or repeated, the sign flipped
    replaced = {"10", "12", "13", "14", "15", "16", "17", "18", "19"} | {f"{d}1" for d in range(2, 10)}
    assert set(finals) == {"1", "21", "111", "-11"} | replaced
    assert 0.4 < sum(f in ("1", "21") for f in finals) / len(finals) < 0.7
    assert 0.05 < finals.count("-11") / len(finals) < 0.2
    assert all(toy.calculation_mistake("0", rng) not in ("0", "00", "-0") for _ in range(50))
    assert toy.miscalculate("no numbers here", rng) == "no numbers here"
    assert toy.miscalculate("#### 11", rng).startswith("#### ")
    assert all(toy.miscalculate("6-13=-8\n#### -7", rng).startswith("6-13=-8\n#### ") for _ in range(10))
    assert all(verify.extract_answer(toy.miscalculate("#### 2.50", rng)) != "2.50" for _ in range(20))


def test_negative_rejection_names_why_a_rewrite_cannot_be_the_negative():
    pos = "2+3=5\n#### 5"
    assert cooper.negative_rejection("2+3=6\n#### 6", pos, "5") is None
    assert cooper.negative_rejection("2+3=5.0\n#### 5.0", pos, "5") == "same answer as the positive"
    assert cooper.negative_rejection("Let me think.\nI cannot finish this.", pos, "5") == "no final answer"
    assert cooper.negative_rejection(None, pos, "5") == "the assistant returned nothing"
    assert cooper.negative_rejection("#### 7", "#### 5", "7") == "same answer as the reference"


def test_choose_positive():
    assert cooper.choose_positive([False, False], "random", random.Random(0)) is None
    assert cooper.choose_positive([False, True, True], "first", random.Random(0)) == 1
    picks = {cooper.choose_positive([True, False, True, True], "random", random.Random(s)) for s in range(30)}
    assert picks == {0, 2, 3}


def test_make_pairs_masks_prompts_without_positive_or_negative():
    rewrite = cooper.make_assistant(cooper.parse_args(["--assistant", "perturb"]))
    questions, references = ["1+1=?", "2+2=?", "3+3=?"], ["2", "4", "6"]
    texts = ["#### 3", "1+1=2\n#### 2",      # prompt 0: second rollout correct
             "#### 5", "#### 3",             # prompt 1: none correct -> no positive
             "#### 6", "#### 1"]             # prompt 2: a correct rollout with no '=' still perturbs
    correct = [False, True, False, False, True, False]
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, rewrite, [random.Random(i) for i in range(3)],
                              positive="first")
    assert pairs["mask"] == [1.0, 0.0, 1.0] and pairs["positive_index"] == [1, None, 0]
    assert pairs["attempts"][1] == [] and pairs["attempts"][0][-1][1] is None
    assert pairs["positives"][0] == "1+1=2\n#### 2" and pairs["no_positive"] == 1
    # an unreachable endpoint: every negative fails and is masked
    rewrite = cooper.make_assistant(cooper.parse_args(["--assistant", "openai", "--assistant-url", "http://127.0.0.1:9/v1",
                                                       "--assistant-model", "m", "--assistant-retries", "0"]))
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, rewrite, [random.Random(i) for i in range(3)],
                              positive="first", tries=1)
    assert pairs["mask"] == [0.0, 0.0, 0.0] and pairs["no_negative"] == 2
    assert pairs["attempts"][0] == [(None, "the assistant returned nothing")]


def test_rejected_negatives_is_off_by_default_and_picks_a_wrong_rollout_of_the_same_prompt():
    rewrite = cooper.make_assistant(cooper.parse_args([]))
    questions, references = ["1+1=?", "2+2=?", "3+3=?"], ["2", "4", "6"]
    texts = ["#### 3", "1+1=2\n#### 2", "#### 5", "#### 3", "#### 6", "3+3=6\n#### 6"]
    correct = [False, True, False, False, True, True]
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, rewrite, [random.Random(i) for i in range(3)])
    assert pairs["rejected"] == [None, None, None]
    assert cooper.parse_args([]).rejected_negatives is False
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, rewrite, [random.Random(i) for i in range(3)],
                              rejected_negatives=True)
    # prompt 0: its one wrong rollout; prompt 1: no positive; prompt 2: no wrong rollout
    assert pairs["rejected"] == ["#### 3", None, None]


def test_batch_for_step_is_a_pure_function_covering_each_epoch():
    records = list(range(10))
    a = [data.batch_for_step(records, s, 3, seed=1) for s in range(6)]
    assert a == [data.batch_for_step(records, s, 3, seed=1) for s in range(6)]
    assert sorted(sum(a[:3], [])) == sorted(set(sum(a[:3], [])))   # no repeat inside an epoch
    assert a[:3] != a[3:6]   # each epoch is shuffled anew


def test_sampled_evaluation_leaves_the_training_random_stream_alone(tmp_path):
    import data
    from transformers import AutoModelForCausalLM
    data.build_tiny_model(str(tmp_path / "tiny"), hidden_size=32, num_layers=1)
    policy = AutoModelForCausalLM.from_pretrained(str(tmp_path / "tiny" / "policy"))
    tokenizer = data.load_tokenizer(str(tmp_path / "tiny" / "policy"))
    records = data.toy_splits(8, 0, seed=0)[0]
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    evaluate.rule_accuracy(policy, tokenizer, records, max_new_tokens=4, temperature=1.0, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)   # the next rollouts draw what they would have drawn


def test_hacking_monitor_warns_once_after_patience(capsys):
    mon = cooper.HackingMonitor(gap=0.25, patience=3)
    paid = [(0.9, 0.1), (0.9, 0.1), (0.5, 0.5), (0.9, 0.1), (0.9, 0.1), (0.9, 0.1), (0.9, 0.0)]
    warnings = [mon.update(step, r, acc) for step, (r, acc) in enumerate(paid)]
    assert [w is not None for w in warnings] == [False] * 5 + [True, False]
    assert "step 5" in warnings[5] and capsys.readouterr().err.count("reward hacking?") == 1


@pytest.mark.parametrize("policy", [["--policy", "p"], ["--policy=p"]])
def test_the_toy_preset_applies_only_without_policy(policy):
    toy_run = cooper.parse_args([])
    assert toy_run.preset == "toy" and toy_run.lr == toy.TOY_PRESET["lr"]
    assert cooper.parse_args(["--lr", "3e-5"]).lr == 3e-5
    real = cooper.parse_args(policy + ["--reward-model", "r", "--train", "a", "--test", "b"])
    assert real.preset == "paper" and real.lr == 1e-6 and real.group_size == 16 and real.beta == 0.001
    assert real.max_new_tokens == 512
    assert cooper.parse_args(policy + ["--train", "a", "--test", "b", "--reward", "rule", "--preset", "toy"]).lr == toy.TOY_PRESET["lr"]


def test_abbreviated_flags_are_refused(capsys):
    with pytest.raises(SystemExit):
        cooper.parse_args(["--pol", "p"])
    assert "unrecognized arguments: --pol" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, least", [("--group-size", "1", 2), ("--eval-every", "-5", 0), ("--rm-steps", "0", 1)])
def test_counts_out_of_range_are_named(capsys, flag, value, least):
    with pytest.raises(SystemExit):
        cooper.parse_args([flag, value])
    assert f"{flag} must be >= {least}, got {value}" in capsys.readouterr().err


def test_eval_args_name_a_bad_data_spec(capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_eval_args(["--policy", "p", "--data", "gsm8k.jsonl"])
    assert "--data expects NAME:FILE, got 'gsm8k.jsonl'" in capsys.readouterr().err


def test_benchmark_eval_protocol_and_output(tmp_path, capsys):
    import data
    data.build_tiny_model(str(tmp_path / "tiny"))
    rows = data.make_toy_problems(5, seed=3)
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps({"question": r["question"], "answer": r["solution"].replace("\n", " ")})
                                                + "\n" for r in rows))
    base = ["--policy", str(tmp_path / "tiny" / "policy"), "--data", f"toy:{tmp_path / 'toy.jsonl'}",
            "--max-new-tokens", "6", "--limit", "4", "--out", str(tmp_path / "eval.json")]
    args = evaluate.parse_eval_args(base + ["--samples", "3"])
    assert (args.temperature, args.top_p, args.backend) == (0.7, 0.95, "auto")   # the paper's protocol
    summary = evaluate.benchmark_eval(args)
    r = summary["datasets"]["toy"]
    assert summary["backend"] == "hf" and r["problems"] == 4 and len(r["correct_per_problem"]) == 4
    assert r["accuracy"] == sum(r["correct_per_problem"]) / 12
    assert json.loads((tmp_path / "eval.json").read_text())["datasets"]["toy"]["samples"] == 3
    assert "| toy | 4 |" in capsys.readouterr().out
    # temperature 0: the k samples are one greedy answer, so each problem scores 0 or k
    greedy = evaluate.benchmark_eval(evaluate.parse_eval_args(base + ["--samples", "2", "--temperature", "0"]))
    assert set(greedy["datasets"]["toy"]["correct_per_problem"]) <= {0, 2}


# ----------------------------------------------------------------------------------------------------
# End to end on the tiny model: a few steps of each reward mode from one small start

# toy_start: the small embedded start, built once per test session (conftest.py)

def _params(path):
    from safetensors.torch import load_file
    return load_file(str(Path(path) / "model.safetensors"))


@pytest.mark.parametrize("mode", ["rule", "rm", "cooper"])
def test_few_steps_of_each_mode(toy_start, tmp_path, mode):
    out = tmp_path / mode
    args = cooper.parse_args(["--reward", mode, "--steps", "3", "--seed", "0", "--out", str(out),
                              "--toy-dir", str(toy_start), "--eval-every", "0", "--eval-size", "16",
                              "--prompts-per-step", "8", "--group-size", "4"])
    summary = cooper.train(args)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        for key in ("reward_mean", "rule_acc", "kl", "pg_loss"):
            assert torch.isfinite(torch.tensor(r[key])), (key, r)
    assert ["test_acc" in r for r in rows] == [False, False, True]   # --eval-every 0: the last step only
    assert "test_acc_sampled" in rows[-1] and 0 <= summary["final_acc"] <= 1
    dumped = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [d["step"] for d in dumped] == [1, 1]   # --sample-prompts 2 at step 1
    assert len(dumped[0]["rollouts"]) == 4 and {"text", "reward", "correct", "advantage"} <= set(dumped[0]["rollouts"][0])
    assert (out / "report.png").stat().st_size > 10_000 and "| reward_mean |" in (out / "report.md").read_text()
    before, after = _params(toy_start / "policy"), _params(out / "policy")
    assert any(not torch.equal(before[k], after[k]) for k in before), "the policy did not change"
    if mode == "rule":
        assert not (out / "reward").exists() and "rm_acc" not in rows[-1]
        return
    assert 0 <= rows[-1]["rm_bacc"] <= 1 and all(0 <= r["rm_bacc_rollouts"] <= 1 for r in rows)
    rm_before, rm_after = _params(toy_start / "reward"), _params(out / "reward")
    rm_changed = any(not torch.equal(rm_before[k], rm_after[k]) for k in rm_before)
    if mode == "rm":
        assert not rm_changed, "a frozen reward model changed"
    else:
        assert sum(r["valid_pairs"] for r in rows) > 0 and all(r["rm_loss"] is not None for r in rows if r["valid_pairs"])
        assert rm_changed, "Cooper did not update the reward model"
        tried = [n for d in dumped for n in d["negatives"]]
        assert all(n["accepted"] == (n["rejected_because"] is None) for n in tried)
        assert all((d["positive_index"] is None) == (d["negatives"] == []) for d in dumped)


def test_cooper_step_pays_with_the_rm_of_step_t_and_its_update_first_pays_at_t_plus_1(toy_start):
    """The paper's order: rewards and advantages come from phi_t; stage 2 then updates phi_t -> phi_t+1 on the
    step's own pairs, which changes what the same rollouts would be paid at the next step."""
    import copy
    import grpo
    cfg = cooper.parse_args(["--toy-dir", str(toy_start), "--prompts-per-step", "16", "--group-size", "8",
                             "--rm-lr", "1e-2", "--positive", "first"])
    train_set, _, policy_path, rm_path, _ = cooper.load_task(cfg, main=True)
    policy = cooper.build_policy(cfg, policy_path, None)
    rm = cooper.build_reward_model(cfg, rm_path, None)
    phi_t = reward.RewardModel(copy.deepcopy(rm.rm.model), rm.rm.tokenizer, max_length=cfg.rm_max_length)
    batch = train_set[:16]
    q, ref = [r["question"] for r in batch], [r["answer"] for r in batch]
    m, details = cooper.cooper_step(1, q, ref, policy, rm, cooper.make_assistant(cfg), cfg, list(range(16)))
    q_rep, ref_rep = [x for x in q for _ in range(8)], [x for x in ref for _ in range(8)]
    paid = torch.tensor(details["rewards"])
    assert torch.allclose(paid, phi_t.score(q_rep, ref_rep, details["texts"]))
    assert torch.allclose(torch.tensor(details["advantages"]), grpo.group_advantages(paid, 8))
    assert m["valid_pairs"].value > 0 and m["rm_loss"].value > 0
    assert not torch.allclose(rm.rm.score(q_rep, ref_rep, details["texts"]), paid, atol=1e-4)


def test_a_bf16_checkpoint_trained_through_policy_moves_as_far_as_its_fp32_copy(toy_start, tmp_path):
    """Real checkpoints ship in bf16; trained through --policy at the paper's lr 1e-6 they must learn like fp32
    (fp32 master weights), and the saved policy/ holds the trained fp32 weights. VerifyRM pays (its rewards differ
    within a group, so every step has a gradient)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    import data
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"question": r["question"], "answer": r["solution"]}) + "\n"
                                for r in data.make_toy_problems(16, seed=7)))
    start = {}
    for dtype in (torch.float32, torch.bfloat16):
        folder = tmp_path / str(dtype)
        model = AutoModelForCausalLM.from_pretrained(str(toy_start / "policy"))
        model.to(dtype).save_pretrained(folder)
        data.load_tokenizer(str(toy_start / "policy")).save_pretrained(folder)
        start[dtype] = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        cooper.train(cooper.parse_args(["--reward", "rm", "--reward-model", str(toy_start / "reward"),
                                        "--policy", str(folder), "--train", str(problems),
                                        "--test", str(problems), "--out", str(tmp_path / f"run-{dtype}"),
                                        "--steps", "3", "--lr", "1e-6", "--warmup-steps", "0",
                                        "--prompts-per-step", "4", "--group-size", "4", "--max-new-tokens", "24",
                                        "--eval-size", "4", "--eval-every", "0", "--sample-every", "0"]))
    moved, norms = {}, {}
    for dtype in start:
        after = load_file(str(tmp_path / f"run-{dtype}" / "policy" / "model.safetensors"))
        assert all(v.dtype == torch.float32 for v in after.values())   # the trained weights, not a bf16 rounding
        # weight matrices; embedding rows of tokens no rollout holds get no gradient in any run
        deltas = [after[k] - start[dtype][k] for k in after if after[k].dim() == 2 and "embed" not in k]
        norms[dtype] = torch.sqrt(sum((d ** 2).sum() for d in deltas)).item()
        moved[dtype] = sum((d != 0).sum().item() for d in deltas) / sum(d.numel() for d in deltas)
    assert 0.5 <= norms[torch.bfloat16] / norms[torch.float32] <= 2, norms
    assert moved[torch.bfloat16] >= 0.5 * moved[torch.float32] and moved[torch.float32] > 0.5, moved


def test_report_without_matplotlib_writes_the_markdown_and_says_so(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"reward": "rm", "seed": 1, "hack_gap": 0.25}))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward_mean": r, "rule_acc": 0.2}) + "\n"
                                                    for s, r in [(1, 0.5), (2, 0.9)]))
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib now raises ImportError
    text = report.report(str(tmp_path))
    assert "| reward_mean | 0.500 | 0.900 |" in text and "report.png" not in text
    assert (tmp_path / "report.md").read_text() == text and not (tmp_path / "report.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_table_reads_summaries(toy_start, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps(
        {"mode": "rule", "seed": 0, "start_acc": 0.3, "final_acc": 0.5, "best_acc": 0.55, "final_reward": 0.5,
         "final_rule_acc": 0.5, "final_kl": 0.01, "hacked": False}))
    assert "| rule | 0 | 0.300 | 0.500 | 0.550 | 0.500 | 0.500 | 0.0100 | False |" in report.table([str(tmp_path / "a")])
