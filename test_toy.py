"""Tests of toy.py's start (issue 15: a start fixed by its data, not by when training stops) and report.py's
multi-start summary. Run: pytest test_toy.py"""
import collections
import json
import os
import random

import pytest
import torch

import data
import report
import toy


# ----------------------------------------------------------------------------------------------------
# The student's data

def test_carries_and_the_forgotten_carry_on_every_kind_of_problem():
    cases = [("13+9=?", "22", True, "12"), ("5+7=?", "12", True, "2"), ("13+5=?", "18", False, None),
             ("17-3=?", "14", False, None), ("23-7=?", "16", True, "26"), ("3-7=?", "-4", True, "6"),
             ("3-17=?", "-14", True, "-4"), ("20-20=?", "0", False, None), ("29+29=?", "58", True, "48")]
    for question, answer, carry, wrong in cases:
        assert toy.carries(question) is carry
        if wrong is not None:
            assert toy.forgot_carry({"question": question, "answer": answer}) == f"{question[:-1]}{wrong}\n#### {wrong}"
    with pytest.raises(ValueError, match="not a two-term toy problem"):
        toy.carries("1+2+3=?")


def test_every_toy_problem_is_read_and_its_forgotten_carry_is_off_by_ten_and_checked_wrong():
    import verify
    train, test = data.toy_splits(**toy.TOY_TASK)
    problems = train + test
    assert len(problems) == 1800 and len({p["question"] for p in problems}) == 1800   # every problem, once
    carrying = [p for p in problems if toy.carries(p["question"])]
    assert 0.4 < len(carrying) / len(problems) < 0.5
    for p in carrying:
        wrong = toy.forgot_carry(p)
        assert abs(int(verify.extract_answer(wrong)) - int(p["answer"])) == 10 and not verify.verify(wrong, p["answer"])


def test_warmup_solutions_follow_the_students_shares():
    """The warm-up's data is the student: on a carrying problem the carry forgotten (forgot), right (carry_right),
    or a slip; on the others right but for a share `noise` of slips."""
    rng, n = random.Random(0), 4000
    carry = {"question": "13+9=?", "answer": "22", "solution": "13+9=22\n#### 22"}
    plain = {"question": "13+5=?", "answer": "18", "solution": "13+5=18\n#### 18"}
    kinds = collections.Counter(
        "forgot" if t == toy.forgot_carry(carry) else "right" if t == carry["solution"] else "slip"
        for t in (toy.warmup_solution(carry, rng) for _ in range(n)))
    assert kinds["forgot"] / n == pytest.approx(toy.TOY_START["forgot"], abs=0.03)
    assert kinds["right"] / n == pytest.approx(toy.TOY_START["carry_right"], abs=0.03)
    plain_right = sum(toy.warmup_solution(plain, rng) == plain["solution"] for _ in range(n)) / n
    assert plain_right == pytest.approx(1 - toy.TOY_START["noise"], abs=0.03)
    draws = lambda: (lambda r: [toy.warmup_solution(carry, r) for _ in range(20)])(random.Random(3))
    assert draws() == draws() and len(set(draws())) > 1   # one rng, one sequence of targets


def test_the_settling_schedule_warms_up_then_decays_to_zero():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule, lrs = toy.settling_schedule(optimizer, steps=200, warmup=10), []
    for _ in range(201):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0, abs=0.01) and max(lrs) <= 1.0
    assert lrs[100] == pytest.approx(0.5) and lrs[200] == 0.0 and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_the_tiny_tokenizer_keeps_verifyrm_template_tags_whole():
    """data.TINY_MERGES names reward.TEMPLATE's tags (data.py cannot import reward.py): each is one token, so a toy
    VerifyRM input is ~31 tokens, and the text the RM reads is still the exact template."""
    import re
    import reward
    assert set(re.findall(r"</?[a-z_]+>", reward.TEMPLATE)) <= set(data.TINY_MERGES)
    tok = data.make_char_tokenizer()
    text = reward.rm_input("13+9=?", "22", "13+9=22\n#### 22")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and len(ids) == 31


def test_dev_split_is_disjoint_from_warm_up_train_and_test_and_comes_from_rl_train():
    train, dev, test = toy.toy_dev_splits()
    rl_train, rl_test = data.toy_splits(**toy.TOY_TASK)
    q = lambda rows: {r["question"] for r in rows}
    assert len(dev) == toy.DEV_SIZE and len(train) + len(dev) == len(rl_train)
    assert not q(dev) & q(train) and not q(dev) & q(test) and not q(train) & q(test)
    assert q(dev) <= q(rl_train) and q(test) == q(rl_test)


# ----------------------------------------------------------------------------------------------------
# The RM's blind spot, measured

class ShortcutRM:
    """An RM with exactly the toy's blind spot: pays a completion whose final answer equals its worked step."""
    def score(self, questions, references, completions):
        ok = [c.split("=")[-1].split("\n")[0] == c.split("#### ")[-1] for c in completions]
        return torch.tensor([0.9 if o else 0.1 for o in ok])


class ReferenceRM:
    """An RM that compares the final answer with the reference: no blind spot."""
    def score(self, questions, references, completions):
        return torch.tensor([0.9 if c.split("#### ")[-1] == r else 0.1 for c, r in zip(completions, references)])


def test_rm_dev_metrics_measure_the_blind_spot():
    records = data.make_toy_problems(60, seed=5, max_value=29)
    probes = toy.slip_probes(records, random.Random(0))
    assert all(p["carried"] != p["solution"] and p["copy"] != p["solution"] for p in probes)
    assert [p["forgot"] is not None for p in probes] == [toy.carries(r["question"]) for r in records]
    rows = ([{"question": p["question"], "reference": p["reference"], "completion": p["solution"], "label": 1}
             for p in probes] + [{"question": p["question"], "reference": p["reference"], "completion": p["carried"],
                                  "label": 0} for p in probes])
    blind = toy.rm_dev_metrics(ShortcutRM(), rows, probes)
    assert blind == {"balanced_acc": 0.5, "forgot_paid": 1.0, "carried_paid": 1.0, "copy_caught": 1.0,
                     "solution_paid": 1.0}
    sighted = toy.rm_dev_metrics(ReferenceRM(), rows, probes)
    assert sighted == {"balanced_acc": 1.0, "forgot_paid": 0.0, "carried_paid": 0.0, "copy_caught": 1.0,
                       "solution_paid": 1.0}
    in_band = lambda m: all(lo <= m[k] <= hi for k, (lo, hi) in toy.START_BANDS.items() if k in m)
    assert in_band(blind) and not in_band(sighted)   # a start's RM must keep the blind spot


def test_pretrain_rm_is_one_stream_per_seed_and_learns_the_copy_check(toy_start):
    """Same seed, same RM (the score head and the pair stream come from it); and a few steps already move it
    towards catching copy slips, the only mistake it is shown."""
    train, dev, _ = toy.toy_dev_splits()
    probes = toy.slip_probes(dev[:32], random.Random(0))
    policy = str(toy_start / "policy")
    measure = lambda rm: toy.rm_dev_metrics(rm, [], probes)
    a, trace = toy.pretrain_rm(policy, train, 20, seed=7, measure=measure)
    b, _ = toy.pretrain_rm(policy, train, 20, seed=7)
    c, _ = toy.pretrain_rm(policy, train, 20, seed=8)
    weights = lambda rm: torch.cat([p.detach().flatten() for p in rm.model.parameters()])
    assert torch.equal(weights(a), weights(b)) and not torch.equal(weights(a), weights(c))
    assert [t["step"] for t in trace] == list(range(2, 21, 2)) and measure(a) == {k: trace[-1][k] for k in measure(a)}


# ----------------------------------------------------------------------------------------------------
# prepare_toy: a start per seed, cached

def test_prepare_toy_records_its_checks_and_caches_its_start(toy_start):
    summary = json.loads((toy_start / "start.json").read_text())
    assert summary["seed"] == 0 and (summary["sft_steps"], summary["rm_steps"]) == (
        toy.TEST_TOY["sft_steps"], toy.TEST_TOY["rm_steps"])
    assert set(summary["in_band"]) == set(toy.START_BANDS) and set(summary["checks"]) >= set(toy.START_BANDS)
    assert summary["in_band"] == {k: lo <= summary["checks"][k] <= hi for k, (lo, hi) in toy.START_BANDS.items()}
    assert 0 <= summary["start_acc"] <= 1 and len(summary["sft_trace"]) == 10 and len(summary["rm_trace"]) == 10
    assert summary["sft_trace"][-1]["dev_acc"] == pytest.approx(summary["checks"]["dev_acc"], abs=1e-3)   # after the last step
    mtime = os.path.getmtime(toy_start / "start.json")
    assert toy.prepare_toy(str(toy_start)) == summary == toy.prepare_toy(str(toy_start), seed=0)   # cached
    assert os.path.getmtime(toy_start / "start.json") == mtime
    with pytest.raises(ValueError, match="holds the start of seed 0, not 1"):
        toy.prepare_toy(str(toy_start), seed=1)


def test_a_cached_start_of_any_seed_is_what_a_folder_alone_asks_for(tmp_path):
    (tmp_path / "start.json").write_text(json.dumps({"seed": 2, "start_acc": 0.31, "checks": {}}))   # --toy-dir DIR
    assert toy.prepare_toy(str(tmp_path)) == toy.prepare_toy(str(tmp_path), seed=2)
    with pytest.raises(ValueError, match="not 0"):
        toy.prepare_toy(str(tmp_path), seed=0)


def test_a_start_built_by_an_older_toy_py_is_refused_not_trained_from(tmp_path):
    (tmp_path / "start.json").write_text(json.dumps({"seed": 0, "start_acc": 0.34, "sft_in_band": True}))
    with pytest.raises(ValueError, match="older toy.py: delete the folder"):
        toy.prepare_toy(str(tmp_path))


def test_default_toy_dirs_are_one_folder_per_start_seed():
    assert toy.default_toy_dir() == toy.default_toy_dir(0) == "runs/toy"   # cooper.py's --toy-dir default
    assert len({toy.default_toy_dir(k) for k in range(5)}) == 5


# ----------------------------------------------------------------------------------------------------
# report.py: the multi-start summary

def _fake_run(root, mode, name, start_acc, final_acc, reward, rule_acc):
    d = root / mode / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(
        {"mode": mode, "seed": int(name[-1]), "start_acc": start_acc, "final_acc": final_acc, "best_acc": final_acc,
         "final_reward": reward, "final_rule_acc": rule_acc, "final_kl": 0.05, "hacked": reward - rule_acc > 0.25}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(
        {"step": s, "reward_mean": reward, "rule_acc": rule_acc, **({"test_acc": final_acc} if s == 2 else {})}) + "\n"
        for s in (1, 2)))


def test_summarize_reproduction_pools_over_starts_and_keeps_each_start(tmp_path):
    pytest.importorskip("matplotlib")
    for k, start in ((0, 0.32), (1, 0.30)):
        _fake_run(tmp_path, "rule", f"start{k}-seed0", start, start + 0.18, 0.6, 0.6)
        _fake_run(tmp_path, "rm", f"start{k}-seed0", start, 0.1, 0.9, 0.12)
        _fake_run(tmp_path, "cooper", f"start{k}-seed0", start, start + 0.15 - 0.1 * k, 0.5, 0.48)
    text = report.summarize_reproduction(str(tmp_path))
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["start_seed"] for r in results["rm"]] == [0, 1] and results["rm"][0]["seed"] == 0
    assert (tmp_path / "curves.png").exists() and (tmp_path / "results.md").read_text().startswith(text.split("\n")[0])
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert "| **rm** | 0,1 | 2 | 0.310 +- 0.014 | 0.100 +- 0.000 |" in text and rows[-1].startswith("| cooper | 1 | 1 |")
    assert len(rows) == 1 + 3 + 6   # the header, a pooled row per mode, a row per mode and start
    checks = [line for line in text.splitlines() if line.startswith("- start")]
    assert "- start 0:" in checks[0] and "Cooper 0.470 (+0.150 over the start, >= 0.1: yes" in checks[0]
    assert "(+0.050 over the start, >= 0.1: NO" in checks[1] and checks[2].startswith("- start all:")
    assert all("frozen RM hacked on every run (final 0.100 < start, paid >= 0.8): yes" in c for c in checks)


def test_a_run_outside_reproduce_finds_its_start_seed_in_its_toy_dir(tmp_path, toy_start):
    run = tmp_path / "seed0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"toy_dir": str(toy_start)}))
    assert report.run_start_seed(str(run)) == 0 and report.run_start_seed(str(tmp_path / "start3-seed1")) == 3
    (run / "config.json").write_text(json.dumps({"toy_dir": None}))
    assert report.run_start_seed(str(run)) is None


def test_results_md_lists_each_start_with_its_checks(tmp_path):
    pytest.importorskip("matplotlib")
    for k in (0, 1):
        toy_dir = tmp_path / f"toy{k}"
        toy_dir.mkdir()
        checks = {"dev_acc": 0.55, "dev_acc_no_carry": 0.97, "dev_acc_carry": 0.05 + 0.3 * k, "balanced_acc": 0.62,
                  "forgot_paid": 0.9, "carried_paid": 0.8, "copy_caught": 0.99, "solution_paid": 1.0}
        in_band = {key: lo <= checks[key] <= hi for key, (lo, hi) in toy.START_BANDS.items()}
        (toy_dir / "start.json").write_text(json.dumps({"seed": k, "start_acc": 0.57, "checks": checks,
                                                        "in_band": in_band, "seconds": 200.4}))
        for mode in ("rule", "rm", "cooper"):
            _fake_run(tmp_path, mode, f"start{k}-seed0", 0.57, 0.85 if mode != "rm" else 0.1, 0.9 if mode == "rm" else
                      0.8, 0.1 if mode == "rm" else 0.8)
            (tmp_path / mode / f"start{k}-seed0" / "config.json").write_text(json.dumps({"toy_dir": str(toy_dir)}))
    report.summarize_reproduction(str(tmp_path))
    md = (tmp_path / "results.md").read_text()
    assert "| 0 | 0.550 (0.97 / 0.05) | 0.570 | 0.90 | 0.80 | 0.99 | 1.00 | 0.620 | none | 200 |" in md
    assert "| 1 | 0.550 (0.97 / 0.35) | 0.570 |" in md and "| dev_acc_carry | 200 |" in md
