"""One node, several processes: 2 ranks (torchrun, gloo on CPU) train as 1 process does; a killed run resumes exactly.

Both are real runs of cooper.py in subprocesses on the small embedded start (conftest.py), a few steps each.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
RUN = ["--eval-size", "16", "--prompts-per-step", "8", "--group-size", "4", "--seed", "0", "--device", "cpu"]
# What two runs must agree on exactly when they sampled the same tokens and built the same pairs.
SAME_ROLLOUTS = ("rollouts", "response_tokens", "response_len", "rule_acc", "zero_var_groups", "valid_pairs",
                 "no_positive", "no_negative")


def cooper(args: list, nproc: int = 0) -> list:
    """The command line of cooper.py: plain (nproc 0) or under torchrun with nproc processes (--standalone:
    a free local port)."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else []
    return [sys.executable, *torchrun, str(ROOT / "cooper.py"), *args]


def run(args: list, nproc: int = 0) -> None:
    done = subprocess.run(cooper(args, nproc), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def params(folder: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


def distance(a: dict, b: dict) -> tuple[float, float]:
    """(largest |a - b| over all parameters, ||a - b|| over all parameters)."""
    return (max((a[k] - b[k]).abs().max().item() for k in a),
            sum(((a[k] - b[k]) ** 2).sum() for k in a).sqrt().item())


@pytest.mark.parametrize("mode,steps", [("rule", 3), ("cooper", 1)])
def test_two_ranks_train_as_one_process(toy_start, tmp_path, mode, steps):
    """Same global batch (8 prompts x 4), same seeds: torchrun with 1 process vs 2 ranks of 4 prompts each.

    The rollouts are identical (seeded per prompt, not per rank), so what differs is floating-point
    summation order only (each rank sums its own tokens, then the all-reduce adds the two sums); per-step
    losses and gradient norms agree within 1e-4 relative. Parameters are compared by the norm of their
    difference over the norm of the update: AdamW divides by sqrt(v) + 1e-8, so the few weights whose
    gradient is a near-cancellation of ~1e-8 move by up to lr either way on rounding noise, and no
    elementwise bound is both tight and safe. Measured: policy 1.3e-5 (tolerance 1e-3), reward model
    1.2e-4 after its two Adam steps (tolerance 1e-2). The usual mistake, DDP's plain average of per-rank
    means, gives 0.16 and 0.35 on these batches.

    mode rule: 3 steps, the policy compared (the rule reward is exact). mode cooper: one step, the reward
    model compared after its pairwise update. The cooper policy is not compared: this small start's
    VerifyRM scores a group's rollouts within ~1e-5 of each other, and A = (r - mean) / (std + 1e-6) turns
    the ~1e-8 difference of scoring 16 rather than 32 texts in one batch into ~1e-3 of an advantage.
    """
    args = RUN + ["--reward", mode, "--steps", str(steps), "--eval-every", str(steps), "--toy-dir", str(toy_start)]
    one, two = tmp_path / "one", tmp_path / "two"
    run(args + ["--out", str(one)], nproc=1)
    run(args + ["--out", str(two)], nproc=2)
    m1, m2 = metrics(one), metrics(two)
    assert [m["step"] for m in m2] == list(range(1, steps + 1))
    for a, b in zip(m1, m2):
        assert {k: a.get(k) for k in SAME_ROLLOUTS} == {k: b.get(k) for k in SAME_ROLLOUTS}, a["step"]
        keys = ("reward_mean", "pg_loss", "kl", "grad_norm") if mode == "rule" else ("rm_loss", "rm_grad_norm")
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-7), (a["step"], k)
    model = "policy" if mode == "rule" else "reward"
    start, p1, p2 = params(toy_start / model), params(one / model), params(two / model)
    update = distance(p1, start)[1]
    largest, norm = distance(p1, p2)
    print(f"{mode}: ||2 ranks - 1 process|| / ||update|| = {norm / update:.2e}, largest |difference| {largest:.1e}")
    assert update > 0 and norm < (1e-3 if mode == "rule" else 1e-2) * update
    if mode == "cooper":
        assert m1[0]["valid_pairs"] > 0, "no reward-model update to compare"


def test_killed_run_resumes_exactly(toy_start, tmp_path):
    """SIGKILL after step 3 of 5 (checkpoint every 2 steps), --resume: the final parameters of the policy and
    the reward model and every step's metrics equal the uninterrupted run's bit for bit (timings aside).
    A plain process: its rollouts draw from the global RNG, so this also checks the RNG states saved."""
    args = RUN + ["--reward", "cooper", "--steps", "5", "--save-every", "2", "--eval-every", "3",
                  "--toy-dir", str(toy_start)]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run(args + ["--out", str(whole)])

    proc = subprocess.Popen(cooper(args + ["--out", str(cut)]), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, deadline = cut / "metrics.jsonl", time.time() + 600
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(log.read_text().splitlines())
    assert killed_at < 5, "killed too late to test anything"

    run(["--resume", str(cut)])
    for model in ("policy", "reward"):
        a, b = params(whole / model), params(cut / model)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{model} differs after resuming"
    untimed = lambda rows: [{k: v for k, v in m.items() if not k.startswith("time_")} for m in rows]
    assert untimed(metrics(cut)) == untimed(metrics(whole))
    assert json.loads((cut / "summary.json").read_text()) == json.loads((whole / "summary.json").read_text())
