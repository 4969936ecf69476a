"""Tests of toy.py's banded start (issue 15) and report.py's multi-start summary. Run: pytest test_toy.py"""
import json
import os
import random

import pytest
import torch

import data
import report
import toy


# ----------------------------------------------------------------------------------------------------
# The stopping rule

def test_band_distance_is_zero_inside_and_the_gap_outside():
    assert toy.band_distance(0.30, (0.30, 0.36)) == 0 and toy.band_distance(0.36, (0.30, 0.36)) == 0
    assert toy.band_distance(0.152, (0.30, 0.36)) == pytest.approx(0.148)
    assert toy.band_distance(0.40, (0.30, 0.36)) == pytest.approx(0.04)


@pytest.mark.parametrize("checks, max_steps, stop", [
    ([], 100, None),
    ([(25, 0.3, False)], 100, None),                                          # below the band, budget left: go on
    ([(25, 0.3, False), (50, 0.0, False)], 100, 50),                          # first check inside
    ([(25, 0.0, False), (50, 0.0, False)], 100, 25),                          # the first, not a later one
    ([(25, 0.3, False), (50, 0.1, False), (75, 0.2, False), (100, 0.4, False)], 100, 50),   # budget spent: closest
    ([(25, 0.1, False), (50, 0.1, False), (75, 0.2, False)], 75, 25),         # ties: the earliest
    ([(25, 0.3, False), (50, 0.1, False)], 40, 50),                           # a check past max_steps ends it too
    ([(25, 0.3, False), (50, 0.05, False), (75, 0.02, True)], 1000, 75),      # jumped over the band: closest so far
    ([(25, 0.3, False), (50, 0.01, False), (75, 0.02, True)], 1000, 50),      # ... which may be the check before
])
def test_band_stop(checks, max_steps, stop):
    assert toy.band_stop(checks, max_steps) == stop


@pytest.mark.parametrize("distances, stop", [
    ([0.3, 0.2, 0.1, 0.05], None),              # still coming closer
    ([0.3, 0.1, 0.2, 0.15], None),              # 2 checks without coming closer: patience 3 not used up
    ([0.3, 0.1, 0.2, 0.15, 0.1], 50),           # 3 without coming closer (an equal is not closer): levelled off
    ([0.3, 0.1, 0.2, 0.15, 0.09], None),        # the third came closer
    ([0.3, 0.1, 0.2, 0.15, 0.0], 125),          # inside the band beats levelling off
])
def test_band_stop_with_patience_stops_where_training_levels_off(distances, stop):
    checks = [(25 * (i + 1), d, False) for i, d in enumerate(distances)]
    assert toy.band_stop(checks, 1000, patience=3) == stop


def test_banded_stops_at_the_first_check_in_band_and_keeps_those_weights():
    module, trained, values = torch.nn.Linear(1, 1), [], iter([0.1, 0.2, 0.33, 0.5])
    with torch.no_grad():
        module.weight.fill_(0.0)

    def train_some(n):
        trained.append(n)
        with torch.no_grad():
            module.weight += 1
    steps, metrics, history = toy.banded(train_some, lambda: {"acc": next(values)},
                                         lambda m: (toy.band_distance(m["acc"], (0.3, 0.36)), m["acc"] > 0.36), 25, 1000, module,
                                         lambda text: None)
    assert (steps, metrics["acc"], trained) == (75, 0.33, [25, 25, 25])
    assert [h["step"] for h in history] == [25, 50, 75] and module.weight.item() == 3.0


def test_banded_out_of_budget_restores_the_closest_check():
    module, values = torch.nn.Linear(1, 1), iter([0.1, 0.28, 0.25, 0.2])
    with torch.no_grad():
        module.weight.fill_(0.0)

    def train_some(n):
        with torch.no_grad():
            module.weight += 1
    steps, metrics, history = toy.banded(train_some, lambda: {"acc": next(values)},
                                         lambda m: (toy.band_distance(m["acc"], (0.3, 0.36)), False), 10, 40, module,
                                         lambda text: None)
    # 0.28 (step 20) was closest; the module trained to step 40 but holds step 20's weights
    assert (steps, metrics["acc"], len(history)) == (20, 0.28, 4)
    assert module.weight.item() == 2.0


def test_banded_stops_when_a_check_jumps_over_the_band():
    module, values = torch.nn.Linear(1, 1), iter([0.1, 0.29, 0.45, 0.2])
    with torch.no_grad():
        module.weight.fill_(0.0)

    def train_some(n):
        with torch.no_grad():
            module.weight += 1
    band = (0.3, 0.38)
    steps, metrics, history = toy.banded(train_some, lambda: {"acc": next(values)},
                                         lambda m: (toy.band_distance(m["acc"], band), m["acc"] > band[1]), 10, 1000,
                                         module, lambda text: None)
    assert (steps, metrics["acc"], len(history), module.weight.item()) == (20, 0.29, 3, 2.0)


# ----------------------------------------------------------------------------------------------------
# The dev split and the RM's band

def test_dev_split_is_disjoint_from_warm_up_train_and_test_and_comes_from_rl_train():
    train, dev, test = toy.toy_dev_splits()
    rl_train, rl_test = data.toy_splits(**toy.TOY_TASK)
    q = lambda rows: {r["question"] for r in rows}
    assert len(dev) == toy.DEV_SIZE and len(train) + len(dev) == len(rl_train)
    assert not q(dev) & q(train) and not q(dev) & q(test) and not q(train) & q(test)
    assert q(dev) <= q(rl_train) and q(test) == q(rl_test)


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
    records = data.make_toy_problems(40, seed=5)
    probes = toy.slip_probes(records, random.Random(0))
    assert all(p["carried"] != p["solution"] and p["copy"] != p["solution"] for p in probes)
    rows = ([{"question": p["question"], "reference": p["reference"], "completion": p["solution"], "label": 1}
             for p in probes] + [{"question": p["question"], "reference": p["reference"], "completion": p["carried"],
                                  "label": 0} for p in probes])
    blind = toy.rm_dev_metrics(ShortcutRM(), rows, probes)
    assert blind == {"balanced_acc": 0.5, "carried_paid": 1.0, "copy_caught": 1.0, "solution_paid": 1.0}
    sighted = toy.rm_dev_metrics(ReferenceRM(), rows, probes)
    assert sighted == {"balanced_acc": 1.0, "carried_paid": 0.0, "copy_caught": 1.0, "solution_paid": 1.0}
    band = (0.74, 0.84)
    assert toy.rm_overshot(sighted, band) and not toy.rm_overshot({**blind, "balanced_acc": 0.8}, band)
    # a closed blind spot alone is no overshoot: early checks pass through it while the RM rejects everything
    assert not toy.rm_overshot({**sighted, "balanced_acc": 0.6, "solution_paid": 0.2}, band)
    assert toy.rm_band_distance(sighted, band) == pytest.approx(0.16 + toy.MIN_CARRIED_PAID)   # too good, no blind spot
    assert toy.rm_band_distance({**blind, "balanced_acc": 0.8}, band) == 0
    assert toy.rm_band_distance({**blind, "balanced_acc": 0.8, "copy_caught": 0.5}, band) == pytest.approx(
        toy.MIN_COPY_CAUGHT - 0.5)   # has not learned its own training data yet


def test_pretrain_rm_retries_from_a_fresh_head_and_stream_and_keeps_the_closest_attempt(toy_start):
    """An RM attempt that ends outside its band (here an impossible one) is retried from a fresh score head and pair
    stream; the closest attempt's weights are kept, and attempt 0 is the stream that fixed steps use."""
    train, dev, _ = toy.toy_dev_splits()
    probes = toy.slip_probes(dev[:16], random.Random(0))
    rows = [{"question": p["question"], "reference": p["reference"], "completion": p[k], "label": int(k == "solution")}
            for p in probes for k in ("solution", "carried")]
    policy, logs = str(toy_start / "policy"), []
    rm, steps, checks, tried = toy.pretrain_rm(policy, train, rows, probes, 1234, None, (0.999, 1.0), check_every=2,
                                               max_steps=2, patience=8, attempts=3, log=logs.append)
    assert [t["attempt"] for t in tried] == [0, 1, 2] and all(t["distance"] > 0 and t["steps"] == 2 for t in tried)
    assert sum("retrying from a fresh score head" in line for line in logs) == 2 and "keeping the closest" in logs[-1]
    assert len({t["solution_paid"] + t["balanced_acc"] + t["copy_caught"] for t in tried}) > 1   # different models
    kept = min(tried, key=lambda t: (t["distance"], t["attempt"]))
    assert [t["attempt"] for t in tried if t.get("kept")] == [kept["attempt"]]
    assert toy.rm_dev_metrics(rm, rows, probes) == {k: kept[k] for k in toy.rm_dev_metrics(rm, rows, probes)}
    assert steps == 2 and checks == [{"step": 2, **{k: kept[k] for k in checks[0] if k != "step"}}]
    fixed, n, fixed_checks, fixed_tried = toy.pretrain_rm(policy, train, rows, probes, 1234, 2, (0.999, 1.0), 2, 2,
                                                          8, 3, logs.append)
    assert (n, fixed_checks, fixed_tried) == (2, [], [])
    assert toy.rm_dev_metrics(fixed, rows, probes) == {k: tried[0][k] for k in toy.rm_dev_metrics(fixed, rows, probes)}


# ----------------------------------------------------------------------------------------------------
# prepare_toy: a start per seed, cached

def test_prepare_toy_caches_its_start_and_refuses_another_seed_in_the_same_folder(toy_start):
    summary = json.loads((toy_start / "start.json").read_text())
    assert summary["seed"] == 0 and (summary["sft_steps"], summary["rm_steps"]) == (
        toy.TEST_TOY["sft_steps"], toy.TEST_TOY["rm_steps"])
    assert summary["sft_checks"] == [] and summary["rm_checks"] == []   # fixed steps: no band checked
    assert summary["sft_in_band"] is None and summary["rm_in_band"] is None
    assert 0 <= summary["start_acc"] <= 1 and set(summary["rm_dev"]) >= {"balanced_acc", "carried_paid"}
    mtime = os.path.getmtime(toy_start / "start.json")
    assert toy.prepare_toy(str(toy_start)) == summary == toy.prepare_toy(str(toy_start), seed=0)   # cached
    assert os.path.getmtime(toy_start / "start.json") == mtime
    with pytest.raises(ValueError, match="holds the start of seed 0, not 1"):
        toy.prepare_toy(str(toy_start), seed=1)


def test_a_cached_start_of_any_seed_is_what_a_folder_alone_asks_for(tmp_path):
    (tmp_path / "start.json").write_text(json.dumps({"seed": 2, "start_acc": 0.31}))   # cooper.py --toy-dir DIR
    assert toy.prepare_toy(str(tmp_path)) == toy.prepare_toy(str(tmp_path), seed=2) == {"seed": 2, "start_acc": 0.31}
    with pytest.raises(ValueError, match="not 0"):
        toy.prepare_toy(str(tmp_path), seed=0)


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


def test_results_md_lists_each_start_with_its_phases_against_their_bands(tmp_path):
    pytest.importorskip("matplotlib")
    for k in (0, 1):
        toy_dir = tmp_path / f"toy{k}"
        toy_dir.mkdir()
        attempts = [{"attempt": 0, "steps": 600, "distance": 0.05}, {"attempt": 1, "steps": 300, "distance": 0.0,
                                                                       "kept": True}][:1 + k]
        (toy_dir / "start.json").write_text(json.dumps(
            {"seed": k, "sft_steps": 600 + 25 * k, "dev_acc": 0.33, "start_acc": 0.31, "rm_steps": 300 + 300 * (1 - k),
             "rm_dev": {"balanced_acc": 0.71, "carried_paid": 0.5, "copy_caught": 0.95}, "rm_attempts": attempts,
             "sft_in_band": True, "rm_in_band": True, "seconds": 400.4}))
        for mode in ("rule", "rm", "cooper"):
            _fake_run(tmp_path, mode, f"start{k}-seed0", 0.31, 0.45 if mode != "rm" else 0.1, 0.9 if mode == "rm" else
                      0.5, 0.1 if mode == "rm" else 0.5)
            (tmp_path / mode / f"start{k}-seed0" / "config.json").write_text(json.dumps({"toy_dir": str(toy_dir)}))
    report.summarize_reproduction(str(tmp_path))
    md = (tmp_path / "results.md").read_text()
    assert "| 0 | 600 | 0.330 | 0.310 | 600 | 0.710 | 0.50 | 0.95 | True, True | 400 |" in md
    assert "| 1 | 625 | 0.330 | 0.310 | 300 (attempt 1 of 2) |" in md


def test_starts_table_names_the_kept_rm_attempt_only_from_its_mark():
    """The attempt kept is the one pretrain_rm marked; a start.json without the mark (built before it) shows how
    many attempts ran, never an attempt guessed by a second copy of the rule."""
    start = {"seed": 3, "sft_steps": 575, "dev_acc": 0.3, "start_acc": 0.24, "rm_steps": 600,
             "rm_dev": {"balanced_acc": 0.64, "carried_paid": 0.61, "copy_caught": 0.97}}
    attempts = [{"attempt": 0, "distance": 0.007}, {"attempt": 1, "distance": 0.05}]
    marked = [{**attempts[0]}, {**attempts[1], "kept": True}]   # the mark wins over distance
    assert "| 600 (attempt 1 of 2) |" in report.starts_table([{**start, "rm_attempts": marked}])
    assert "| 600 (2 attempts) |" in report.starts_table([{**start, "rm_attempts": attempts}])
    assert "| 600 |" in report.starts_table([{**start, "rm_attempts": attempts[:1]}])
