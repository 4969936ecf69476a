"""Tests of reward.py and cooper.py, and end-to-end runs of each reward mode on the tiny model.

The drop-in modules have their own test files that travel with them: test_verify.py, test_grpo.py,
test_data.py. Run everything with `bash run.sh test` (or `python -m pytest -q`).
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
import reward

ROOT = Path(__file__).parent


# ----------------------------------------------------------------------------------------------------
# The import rule: drop-in files import no project file (reward.py at most verify.py)

@pytest.mark.parametrize("module,allowed", [("verify", set()), ("grpo", set()), ("data", set()),
                                            ("reward", {"verify"})])
def test_drop_in_files_import_no_other_project_file(module, allowed):
    project = {p.stem for p in ROOT.glob("*.py")}
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert (imported & project) - {module} <= allowed


@pytest.mark.parametrize("module", ["reward", "cooper", "distributed"])
def test_docstring_examples_hold(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------------------------------
# reward.py: template, truncation, losses, update step, labelled files

def test_rm_input_is_the_exact_template():
    assert reward.rm_input("What is 2+3?", "5", "2+3=5\n#### 5") == (
        "<question>What is 2+3?</question>\n<reference_answer>5</reference_answer>\n"
        "<completion>2+3=5\n#### 5</completion>")


def test_truncate_middle_keeps_first_500_and_last_1000_chars():
    text = "a" * 600 + "b" * 400 + "c" * 1000
    cut = reward.truncate_middle(text)
    assert cut == "a" * 500 + "c" * 1000
    assert reward.truncate_middle("x" * 1500) == "x" * 1500   # at the limit: unchanged


def test_bce_loss_matches_hand_computed_values():
    logits, labels = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1, 0, 0])
    # -log(0.5), -log(1 - sigmoid(2)), -log(1 - sigmoid(-1))
    expected = (0.693147 + 2.126928 + 0.313262) / 3
    assert reward.bce_loss(logits, labels).item() == pytest.approx(expected, abs=1e-5)


def test_pairwise_loss_masks_invalid_pairs_and_matches_hand_values():
    s_pos = torch.tensor([1.0, 0.0, 9.0], requires_grad=True)
    s_neg = torch.tensor([0.0, 2.0, -9.0])
    mask = torch.tensor([1.0, 1.0, 0.0])
    loss = reward.pairwise_loss(s_pos, s_neg, mask)
    # -(log sigmoid(1) + log sigmoid(-2)) / (2 + 1e-6)
    assert loss.item() == pytest.approx((0.313262 + 2.126928) / (2 + 1e-6), abs=1e-5)
    loss.backward()
    assert s_pos.grad[2] == 0   # a masked pair contributes no gradient
    assert s_pos.grad[0] < 0 and s_pos.grad[1] < 0   # minimising pushes positives up


def test_pairwise_loss_of_an_all_masked_batch_is_zero():
    s = torch.tensor([3.0, -3.0], requires_grad=True)
    loss = reward.pairwise_loss(s, torch.zeros(2), torch.zeros(2))
    loss.backward()
    assert loss.item() == 0 and torch.all(s.grad == 0)


def test_rm_step_skips_a_non_finite_gradient():
    model = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    loss = model(torch.tensor([[float("inf"), 1.0]])).sum()
    norm, stepped = reward.rm_step(model, opt, loss)
    assert not stepped and not torch.isfinite(torch.tensor(norm))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    norm, stepped = reward.rm_step(model, opt, model(torch.tensor([[1.0, 1.0]])).sum())
    assert stepped and not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_classification_metrics():
    m = reward.classification_metrics(torch.tensor([0.9, 0.6, 0.4, 0.1]), torch.tensor([1, 0, 1, 0]))
    assert m == {"acc": 0.5, "precision": 0.5, "recall": 0.5, "balanced_acc": 0.5, "n": 4}
    # a shifted base rate: all-"wrong" predictions score acc 0.9 but balanced accuracy 0.5
    m = reward.classification_metrics(torch.zeros(10), torch.tensor([1] + [0] * 9))
    assert m["acc"] == 0.9 and m["balanced_acc"] == 0.5
    assert reward.classification_metrics(torch.tensor([0.9, 0.1]), torch.tensor([1, 1]))["balanced_acc"] == 0.5


def test_read_labelled_accepts_both_formats_and_names_a_bad_row(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "q", "reference_answer": "1", "completion": "#### 1", "label": 1}\n'
                    '{"question": "q", "reference_answer": "1", "completion": "#### 2", "label": false}\n')
    assert [r["label"] for r in reward.read_labelled(str(good))] == [1, 0]
    vb = tmp_path / "vb.jsonl"
    vb.write_text('{"question": "q", "answer": "1", "completion": "#### 1", "gold_correct": true}\n')
    assert reward.read_labelled(str(vb))[0] == {"question": "q", "reference": "1", "completion": "#### 1", "label": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"question": "q", "reference_answer": "1", "completion": "x", "label": "maybe"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: row 3: field 'label'"):
        reward.read_labelled(str(bad))
    with pytest.raises(ValueError, match=r"row 1: expected fields"):
        (tmp_path / "x.jsonl").write_text('{"prompt": "q"}\n')
        reward.read_labelled(str(tmp_path / "x.jsonl"))


GSM8K_SOLUTIONS = ROOT.parent / "shared" / "data" / "gsm8k" / "example_model_solutions.jsonl"


def _gsm8k_solution_row(question, truth, answers):
    row = {"question": question, "ground_truth": f"work\nA: {truth}"}
    for solver, (final, ok) in zip(reward.GSM8K_SOLVERS, answers):
        row[solver] = {"is_correct": ok, "solution": f"some steps\nA: {final}"}
    return row


def test_convert_gsm8k_solutions_writes_four_labelled_rows_per_question(tmp_path, capsys):
    src = tmp_path / "sol.jsonl"
    src.write_text(json.dumps(_gsm8k_solution_row("q1", "1,200", [("1200", True), ("7", False), ("1,200", True), ("", False)])) + "\n")
    for out in (tmp_path / "c.jsonl", tmp_path / "c.parquet"):
        reward.main(["convert-gsm8k", str(src), str(out)])
        rows = reward.read_labelled(str(out))
        assert [r["label"] for r in rows] == [1, 0, 1, 0] and {r["reference"] for r in rows} == {"1,200"}
        assert rows[1]["completion"] == "some steps\nA: 7"
    assert "wrote 4 rows (2 correct)" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**_gsm8k_solution_row("q", "3", [("3", True)] * 4), "ground_truth": "no final line"}) + "\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl: row 1: field 'ground_truth'"):
        reward.main(["convert-gsm8k", str(bad), str(tmp_path / "x.jsonl")])


@pytest.mark.skipif(not GSM8K_SOLUTIONS.exists(), reason="../shared/data not present")
def test_converted_gsm8k_solutions_match_the_dataset_and_the_rule_verifier():
    import verify
    rows = reward.convert_gsm8k_solutions(str(GSM8K_SOLUTIONS))
    assert len(rows) == 4 * 1319
    assert abs(sum(r["label"] for r in rows) / len(rows) - 0.379) < 0.001   # the dataset README's 37.9 %
    agree = sum(verify.verify(r["completion"], r["reference"]) == bool(r["label"]) for r in rows) / len(rows)
    assert agree > 0.98   # the labels come from the same final answers (about 1 % calculator-bug noise)


@pytest.mark.parametrize("fields", [("reference_answer", "label"), ("answer", "gold_correct")])
def test_reward_eval_cli_on_both_formats(tmp_path, capsys, fields):
    import data
    data.build_tiny_model(str(tmp_path / "tiny"))
    ref, lab = fields
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"question": f"{a}+1=?", ref: str(a + 1), "completion": f"#### {a + d}",
                                       lab: d == 1}) + "\n" for a in range(3) for d in (1, 2)))
    reward.main(["eval", str(src), "--model", str(tmp_path / "tiny" / "reward"), "--max-length", "64"])
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and set(out) == {"file", "acc", "precision", "recall", "balanced_acc", "n"}
    rm = reward.RewardModel.load(str(tmp_path / "tiny" / "reward"), max_length=64)
    assert out["acc"] == reward.evaluate(rm, reward.read_labelled(str(src)))["acc"]


def test_reward_model_cuts_long_inputs_from_the_left_so_the_final_answer_is_read(tmp_path):
    import data
    data.build_tiny_model(str(tmp_path / "tiny"), hidden_size=32, num_layers=1)
    rm = reward.RewardModel.load(str(tmp_path / "tiny" / "reward"), max_length=48)
    long = "step " * 40   # the input is ~300 tokens: only its last 48 are read
    s = rm.logits(["1+1=?"] * 2, ["2"] * 2, [long + "#### 2", long + "#### 3"])
    assert s[0].item() != s[1].item()   # cut from the right, both rows would read the same first 48 tokens
    # and what is read is exactly the last 48 tokens
    ids = rm.tokenizer(reward.rm_input("1+1=?", "2", long + "#### 2"), add_special_tokens=False).input_ids[-48:]
    assert torch.allclose(rm.model(input_ids=torch.tensor([ids])).logits[0, 0], s[0], atol=1e-5)


def test_reward_model_scores_each_distinct_triple_once(tmp_path):
    import data
    data.build_tiny_model(str(tmp_path / "tiny"), hidden_size=32, num_layers=1)
    rm = reward.RewardModel.load(str(tmp_path / "tiny" / "reward"))
    q, ref = ["1+1=?", "1+1=?", "2+2=?", "1+1=?"], ["2", "2", "4", "2"]
    c = ["1+1=2\n#### 2", "1+1=3\n#### 3", "1+1=2\n#### 2", "1+1=2\n#### 2"]   # rows 0 and 3 repeat
    rows = []
    hook = rm.model.register_forward_hook(lambda m, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]),
                                          with_kwargs=True)
    try:
        r = rm.score(q, ref, c)
    finally:
        hook.remove()
    assert rows == [3] and r.shape == (4,) and r[0] == r[3]
    assert torch.allclose(r, torch.cat([rm.score([a], [b], [d]) for a, b, d in zip(q, ref, c)]), atol=1e-6)
    assert rm.score([], [], []).shape == (0,)


def test_parse_verdict():
    assert reward.parse_verdict("The final answer 18 matches.\nVerdict: Yes") is True
    assert reward.parse_verdict("**Verdict**: **NO**") is False
    assert reward.parse_verdict("Verdict: no... wait, 2.5 = 5/2.\nVerdict: yes.") is True   # the last one counts
    assert reward.parse_verdict("Yes.") is True and reward.parse_verdict("No, the student wrote 17.") is False
    for unclear in ["There is no final answer here", "I cannot tell", "", None, "Yesterday it rained"]:
        assert reward.parse_verdict(unclear) is None


def test_hybrid_labels_keep_agreements_and_count_the_rest():
    rows = [{"question": "q", "reference": "5", "completion": c, "label": gold}
            for c, gold in [("#### 5", 1), ("#### 5", 1), ("#### 6", 1), ("#### 6", 0), ("#### 5", 1)]]
    kept, stats = reward.hybrid_labels(rows, [True, False, False, True, None])
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


# ----------------------------------------------------------------------------------------------------
# cooper.py: pairing rules and the offline assistant

def test_perturb_solution_makes_small_realistic_mistakes():
    import verify
    rng = random.Random(0)
    solution = "13+5=18, 18-7=11\n#### 11"
    seen, finals = {kind: set() for kind in ("carried", "final", "either")}, set()
    for kind in seen:
        for _ in range(60):
            wrong = cooper.perturb_solution(solution, rng, kind=kind)
            final = verify.extract_answer(wrong)
            assert not verify.verify(wrong, "11") and abs(int(final) - 11) <= 10
            work = wrong.split("\n")[0]
            # carried: the last result is off and carried to the answer; final: only the answer is off
            assert work == (f"13+5=18, 18-7={final}" if kind == "carried" else "13+5=18, 18-7=11") or kind == "either"
            seen[kind].add(work == "13+5=18, 18-7=11")
            finals.add(final)
    assert seen == {"carried": {False}, "final": {True}, "either": {False, True}} and len(finals) > 4
    assert cooper.perturb_solution("no numbers here", rng) == "no numbers here"
    assert cooper.perturb_solution("#### 11", rng).startswith("#### ")   # nothing computed: a copy slip
    # work and answer disagree: a carried slip would not reach the answer, so the answer itself slips
    assert all(cooper.perturb_solution("6-13=-8\n#### -7", rng).startswith("6-13=-8\n#### ") for _ in range(10))
    with pytest.raises(ValueError, match="kind"):
        cooper.perturb_solution(solution, rng, kind="carry")


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
    args = cooper.parse_args([])
    args.assistant, args.positive = "perturb", "first"
    questions, references = ["1+1=?", "2+2=?", "3+3=?"], ["2", "4", "6"]
    texts = ["#### 3", "1+1=2\n#### 2",      # prompt 0: second rollout correct
             "#### 5", "#### 3",             # prompt 1: none correct -> no positive
             "#### 6", "#### 1"]             # prompt 2: a correct rollout with no '=' still perturbs
    correct = [False, True, False, False, True, False]
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, args,
                              [random.Random(i) for i in range(3)])
    assert pairs["mask"] == [1.0, 0.0, 1.0] and pairs["positive_index"] == [1, None, 0]
    assert pairs["attempts"][1] == [] and pairs["attempts"][0][-1][1] is None
    assert pairs["positives"][0] == "1+1=2\n#### 2" and pairs["no_positive"] == 1
    args.assistant = "openai"          # an unreachable endpoint: every negative fails and is masked
    args.assistant_url, args.assistant_model, args.negative_tries, args.assistant_retries = "http://127.0.0.1:9/v1", "m", 1, 0
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, args,
                              [random.Random(i) for i in range(3)])
    assert pairs["mask"] == [0.0, 0.0, 0.0] and pairs["no_negative"] == 2
    assert pairs["attempts"][0] == [(None, "the assistant returned nothing")]


def test_rejected_negatives_is_off_by_default_and_picks_a_wrong_rollout_of_the_same_prompt():
    args = cooper.parse_args([])
    questions, references = ["1+1=?", "2+2=?", "3+3=?"], ["2", "4", "6"]
    texts = ["#### 3", "1+1=2\n#### 2", "#### 5", "#### 3", "#### 6", "3+3=6\n#### 6"]
    correct = [False, True, False, False, True, True]
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, args, [random.Random(i) for i in range(3)])
    assert pairs["rejected"] == [None, None, None]
    args = cooper.parse_args(["--rejected-negatives"])
    pairs = cooper.make_pairs(questions, references, texts, correct, 2, args, [random.Random(i) for i in range(3)])
    # prompt 0: its one wrong rollout; prompt 1: no positive; prompt 2: no wrong rollout
    assert pairs["rejected"] == ["#### 3", None, None]


def test_train_pairs_learns_to_rank_the_correct_completion_first(tmp_path):
    import data
    data.build_tiny_model(str(tmp_path / "tiny"), seed=0, hidden_size=32, num_layers=1)
    rm = reward.RewardModel.load(str(tmp_path / "tiny" / "reward"), max_length=64)
    pairs = [{"question": f"{a}+1=?", "reference": str(a + 1), "positive": f"#### {a + 1}", "negative": "#### x"}
             for a in range(8)]
    losses = reward.train_pairs(rm, pairs, steps=30, lr=3e-3, batch_size=8, warmup_steps=1, progress=False)
    q, ref = [p["question"] for p in pairs], [p["reference"] for p in pairs]
    margin = rm.score(q, ref, [p["positive"] for p in pairs]) - rm.score(q, ref, [p["negative"] for p in pairs])
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0] and bool((margin > 0).all())


def test_batch_for_step_is_a_pure_function_covering_each_epoch():
    records = list(range(10))
    a = [cooper.batch_for_step(records, s, 3, seed=1) for s in range(6)]
    assert a == [cooper.batch_for_step(records, s, 3, seed=1) for s in range(6)]
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
    cooper.evaluate(policy, tokenizer, records, max_new_tokens=4, temperature=1.0, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)   # the next rollouts draw what they would have drawn


def test_hacking_monitor_warns_once_after_patience(capsys):
    mon = cooper.HackingMonitor(gap=0.25, patience=3)
    paid = [(0.9, 0.1), (0.9, 0.1), (0.5, 0.5), (0.9, 0.1), (0.9, 0.1), (0.9, 0.1), (0.9, 0.0)]
    warnings = [mon.update(step, r, acc) for step, (r, acc) in enumerate(paid)]
    assert [w is not None for w in warnings] == [False] * 5 + [True, False]
    assert "step 5" in warnings[5] and capsys.readouterr().err.count("reward hacking?") == 1


def test_toy_defaults_apply_only_without_policy():
    assert cooper.parse_args([]).lr == cooper.TOY_DEFAULTS["lr"]
    assert cooper.parse_args(["--lr", "3e-5"]).lr == 3e-5
    real = cooper.parse_args(["--policy", "p", "--reward-model", "r", "--train", "a", "--test", "b"])
    assert real.lr == 1e-6 and real.group_size == 16 and real.beta == 0.001


@pytest.mark.parametrize("flag, value, least", [("--group-size", "0", 1), ("--eval-every", "-5", 0), ("--rm-steps", "0", 1)])
def test_counts_out_of_range_are_named(capsys, flag, value, least):
    with pytest.raises(SystemExit):
        cooper.parse_args([flag, value])
    assert f"{flag} must be >= {least}, got {value}" in capsys.readouterr().err


def test_eval_args_name_a_bad_data_spec(capsys):
    with pytest.raises(SystemExit):
        cooper.parse_eval_args(["--policy", "p", "--data", "gsm8k.jsonl"])
    assert "--data expects NAME:FILE, got 'gsm8k.jsonl'" in capsys.readouterr().err


def test_benchmark_eval_protocol_and_output(tmp_path, capsys):
    import data
    data.build_tiny_model(str(tmp_path / "tiny"))
    rows = data.make_toy_problems(5, seed=3)
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps({"question": r["question"], "answer": r["solution"].replace("\n", " ")})
                                                + "\n" for r in rows))
    base = ["--policy", str(tmp_path / "tiny" / "policy"), "--data", f"toy:{tmp_path / 'toy.jsonl'}",
            "--max-new-tokens", "6", "--limit", "4", "--out", str(tmp_path / "eval.json")]
    args = cooper.parse_eval_args(base + ["--samples", "3"])
    assert (args.temperature, args.top_p, args.backend) == (0.7, 0.95, "auto")   # the paper's protocol
    summary = cooper.benchmark_eval(args)
    r = summary["datasets"]["toy"]
    assert summary["backend"] == "hf" and r["problems"] == 4 and len(r["correct_per_problem"]) == 4
    assert r["accuracy"] == sum(r["correct_per_problem"]) / 12
    assert json.loads((tmp_path / "eval.json").read_text())["datasets"]["toy"]["samples"] == 3
    assert "| toy | 4 |" in capsys.readouterr().out
    # temperature 0: the k samples are one greedy answer, so each problem scores 0 or k
    greedy = cooper.benchmark_eval(cooper.parse_eval_args(base + ["--samples", "2", "--temperature", "0"]))
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


def test_report_without_matplotlib_writes_the_markdown_and_says_so(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"reward": "rm", "seed": 1, "hack_gap": 0.25}))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward_mean": r, "rule_acc": 0.2}) + "\n"
                                                    for s, r in [(1, 0.5), (2, 0.9)]))
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib now raises ImportError
    text = cooper.report(str(tmp_path))
    assert "| reward_mean | 0.500 | 0.900 |" in text and "report.png" not in text
    assert (tmp_path / "report.md").read_text() == text and not (tmp_path / "report.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err


def test_table_reads_summaries(toy_start, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text(json.dumps(
        {"mode": "rule", "seed": 0, "start_acc": 0.3, "final_acc": 0.5, "best_acc": 0.55, "final_reward": 0.5,
         "final_rule_acc": 0.5, "final_kl": 0.01, "hacked": False}))
    assert "| rule | 0 | 0.300 | 0.500 | 0.550 | 0.500 | 0.500 | 0.0100 | False |" in cooper.table([str(tmp_path / "a")])
