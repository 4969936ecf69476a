"""Several processes: 2 ranks (torchrun, gloo on CPU; DDP or --fsdp) train as 1 process does, 2 single-process nodes
as 1 node of 2; a killed run resumes exactly (one process, and --fsdp on 2 ranks); the memory plan of real shapes.

The runs are real runs of cooper.py in subprocesses on the small embedded start (conftest.py), a few steps each.
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


@pytest.mark.parametrize("mode,steps,micro", [("rule", 3, None), ("rule", 3, 6), ("cooper", 1, None)])
def test_two_ranks_train_as_one_process(toy_start, tmp_path, mode, steps, micro):
    """Same global batch (8 prompts x 4), same seeds: torchrun with 1 process vs 2 ranks of 4 prompts each
    (micro: the 2 ranks also split their 16 rollouts into micro-batches of 6, so 6 + 6 + 4).

    The rollouts are identical (seeded per prompt, not per rank), so what differs is floating-point
    summation order only (each rank sums its own tokens, then the all-reduce adds the two sums); per-step
    losses and gradient norms agree within 1e-4 relative. Parameters are compared by the norm of their
    difference over the norm of the update: AdamW divides by sqrt(v) + 1e-8, so the few weights whose
    gradient is a near-cancellation of ~1e-8 move by up to lr either way on rounding noise, and no
    elementwise bound is both tight and safe (tolerance: policy 1e-3, reward model 1e-2; the README's
    Multi-GPU table has the measured values, and those of the usual mistake, DDP's plain average of
    per-rank means).

    mode rule: 3 steps, the policy compared (the rule reward is exact). mode cooper: one step, the reward
    model compared after its pairwise update. The cooper policy is not compared: where VerifyRM scores a
    group's rollouts alike, A = (r - mean) / (std + 1e-6) turns the ~1e-8 difference of scoring 16 rather
    than 32 texts in one batch into ~1e-3 of an advantage, GRPO's own sensitivity.
    """
    args = RUN + ["--reward", mode, "--steps", str(steps), "--eval-every", str(steps), "--toy-dir", str(toy_start)]
    one, two = tmp_path / "one", tmp_path / "two"
    run(args + ["--out", str(one)], nproc=1)
    run(args + ["--out", str(two)] + (["--micro-batch-size", str(micro)] if micro else []), nproc=2)
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
    print(f"{mode}{f' micro-batch {micro}' if micro else ''}: ||2 ranks - 1 process|| / ||update|| = "
          f"{norm / update:.2e}, largest |difference| {largest:.1e}")
    assert update > 0 and norm < (1e-3 if mode == "rule" else 1e-2) * update
    if mode == "cooper":
        assert m1[0]["valid_pairs"] > 0, "no reward-model update to compare"


def assert_same_run(whole: Path, cut: Path) -> None:
    """The resumed run ended where the uninterrupted one did: the same models bit for bit, the same metrics
    (timings aside) and the same summary."""
    for model in ("policy", "reward"):
        a, b = params(whole / model), params(cut / model)
        assert all(torch.equal(a[k], b[k]) for k in a), f"{model} differs after resuming"
    untimed = lambda rows: [{k: v for k, v in m.items() if not k.startswith("time_")} for m in rows]
    assert untimed(metrics(cut)) == untimed(metrics(whole))
    assert json.loads((cut / "summary.json").read_text()) == json.loads((whole / "summary.json").read_text())


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
    assert_same_run(whole, cut)


# ----------------------------------------------------------------------------------------------------
# FSDP2 (--fsdp), several nodes, the memory plan

def popen(cmd: list) -> subprocess.Popen:
    """A run in a process group of its own (torchrun and its workers end together: os.killpg)."""
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(procs: list, timeout: float = 900) -> None:
    """Wait for every process (bounded), end all of them on the first failure or at the deadline, and assert each
    exited 0 with its output's tail in the message."""
    deadline, outputs = time.time() + timeout, []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.time()))
            outputs.append(out)
            assert p.returncode == 0, out[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def relative_change(start: Path, a: Path, b: Path, model: str) -> float:
    """||b - a|| / ||a - start|| over all parameters of the saved `model` folders."""
    s, p1, p2 = params(start / model), params(a / model), params(b / model)
    assert sorted(p1) == sorted(p2)
    update = distance(p1, s)[1]
    assert update > 0
    return distance(p1, p2)[1] / update


@pytest.mark.parametrize("mode,steps", [("rule", 3), ("cooper", 1)])
def test_fsdp_two_ranks_train_as_one_process(toy_start, tmp_path, mode, steps):
    """--fsdp on 2 ranks (policy and VerifyRM sharded per decoder layer, each rank's loss scaled by share_r * W
    before FSDP's averaging reduce-scatter) vs one process under torchrun (no sharding): same rollouts and pairs,
    losses and gradient norms (the global norm over the shards, clipped: the cooper step's policy norm is
    above --max-grad-norm 1) within 1e-4, parameters within 1e-3 of the update (measured: the README's Multi-GPU
    table). The cooper run also pairs rule-rejected rollouts (--rejected-negatives), so
    rejected_pairs, a distributed.Sum, must be the whole step's count on 2 ranks. As in the DDP test, the cooper
    policy is not compared: where a group's rollouts are scored alike, A = (r - mean) / (std + 1e-6) turns the
    rounding of scoring 16 rather than 32 texts in one batch into ~1e-3 of an advantage (its pg_loss: 8e-4)."""
    args = RUN + ["--reward", mode, "--steps", str(steps), "--eval-every", str(steps), "--toy-dir", str(toy_start)]
    if mode == "cooper":
        args += ["--rejected-negatives"]
    one, two = tmp_path / "one", tmp_path / "two"
    run(args + ["--out", str(one)], nproc=1)
    run(args + ["--out", str(two), "--fsdp"], nproc=2)
    m1, m2 = metrics(one), metrics(two)
    assert [m["step"] for m in m2] == list(range(1, steps + 1))
    same = SAME_ROLLOUTS + (("rejected_pairs",) if mode == "cooper" else ())
    for a, b in zip(m1, m2):
        assert {k: a.get(k) for k in same} == {k: b.get(k) for k in same}, a["step"]
        keys = ("reward_mean", "pg_loss", "kl", "grad_norm") if mode == "rule" else ("reward_mean", "rm_loss",
                                                                                     "rm_grad_norm")
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-7), (a["step"], k)
    for model in ("reward",) if mode == "cooper" else ("policy",):
        rel = relative_change(toy_start, one, two, model)
        print(f"fsdp {mode} {model}: ||2 ranks - 1 process|| / ||update|| = {rel:.2e}")
        assert rel < 1e-3
    if mode == "cooper":
        assert m1[0]["valid_pairs"] > 0 and m1[0]["rejected_pairs"] > 0, "no reward-model update to compare"
        assert m2[0]["grad_norm"] > 1.0, "the policy's gradient was not clipped: clipping untested"


def test_fsdp_killed_run_resumes_exactly(toy_start, tmp_path):
    """--fsdp on 2 ranks: SIGKILL (torchrun and both workers) after step 3 of 5, checkpoint every 2 steps, then
    --resume on 2 ranks: the checkpoint's full weights and gathered optimizer states (get_/set_optimizer_state_dict)
    reshard exactly, so the final parameters and every step's metrics equal the uninterrupted run's bit for bit."""
    args = RUN + ["--reward", "cooper", "--steps", "5", "--save-every", "2", "--eval-every", "3",
                  "--toy-dir", str(toy_start), "--fsdp"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run(args + ["--out", str(whole)], nproc=2)

    proc = subprocess.Popen(cooper(args + ["--out", str(cut)], nproc=2), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log, deadline = cut / "metrics.jsonl", time.time() + 600
    try:
        while not (log.exists() and len(log.read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = len(log.read_text().splitlines())
    assert killed_at < 5, "killed too late to test anything"

    run(["--resume", str(cut)], nproc=2)
    assert_same_run(whole, cut)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_train_as_one_node(toy_start, tmp_path):
    """Two single-process "nodes" on 127.0.0.1 (torchrun --nnodes 2 --node-rank 0|1, c10d rendezvous) vs one
    node of 2 processes: the same job - every metric (rejected_pairs, a Sum, included) and both models equal bit
    for bit. A rank's device is its LOCAL_RANK (0 on both nodes), everything else its global rank."""
    args = RUN + ["--reward", "cooper", "--rejected-negatives", "--steps", "1", "--eval-every", "1",
                  "--toy-dir", str(toy_start)]
    nodes, node = tmp_path / "nodes", tmp_path / "node"
    port = free_port()
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
              "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "cooper-test"]
    finish([popen([*launch, "--node-rank", str(i), str(ROOT / "cooper.py"), *args, "--out", str(nodes)])
            for i in (0, 1)], timeout=900)
    run(args + ["--out", str(node)], nproc=2)
    untimed = lambda rows: [{k: v for k, v in m.items() if not k.startswith("time_")} for m in rows]
    m_nodes, m_node = untimed(metrics(nodes)), untimed(metrics(node))
    assert m_nodes == m_node
    assert m_node[0]["valid_pairs"] > 0 and m_node[0]["rejected_pairs"] > 0
    for model in ("policy", "reward"):
        a, b = params(node / model), params(nodes / model)
        print(f"two nodes vs one node, {model}: largest |difference| {distance(a, b)[0]:.1e}")
        assert all(torch.equal(a[k], b[k]) for k in a), f"{model} differs between 2 nodes and 1 node"


# Qwen2.5 shapes (config.json of the Hugging Face releases): no weights needed, the plan is built on the meta device
QWEN25 = {"1.5B": dict(vocab_size=151936, hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, intermediate_size=8960, tie_word_embeddings=True),
          "7B": dict(vocab_size=151936, hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                     num_key_value_heads=4, intermediate_size=18944, tie_word_embeddings=False)}


def test_memory_plan_of_real_shapes():
    """distributed.memory_plan for Qwen2.5-1.5B / -7B policy and VerifyRM (same shape, --reward cooper) on 8 ranks,
    bf16 compute: parameter counts as released (1.54B, 7.61B; the RM without the LM head), DDP's replicas vs
    FSDP's 1/8 shards plus the gathered bf16 weights. The printed lines are the README's."""
    import distributed
    from transformers import Qwen2Config
    expected = {"1.5B": (1.54e9, 60.4, 14.4), "7B": (7.62e9, 287.7, 68.9)}
    for name, shape in QWEN25.items():
        config = Qwen2Config(**shape)
        ddp, fsdp = (distributed.memory_plan(config, config, 8, f, torch.bfloat16, True) for f in (False, True))
        print(name, distributed.format_memory_plan(ddp))
        print(name, distributed.format_memory_plan(fsdp))
        n, ddp_total, fsdp_total = expected[name]
        assert ddp["params"]["policy"] == pytest.approx(n, rel=0.01)
        assert ddp["total"] == pytest.approx(ddp_total, abs=0.1) and fsdp["total"] == pytest.approx(fsdp_total, abs=0.1)
        # 16 bytes a trained parameter (fp32 weights, grads, two AdamW moments) + DDP's 4 of buckets, /8 under FSDP
        assert ddp["policy"]["adamw"] == pytest.approx(8 * fsdp["policy"]["adamw"])
        assert fsdp["policy"]["gathered"] == pytest.approx(ddp["reference"])
    rule = distributed.memory_plan(Qwen2Config(**QWEN25["1.5B"]), None, 1, False, torch.float32, False)
    assert "reward_model" not in rule and rule["total"] == pytest.approx(16 * 1.54e9 / 2 ** 30 + 4 * 1.54e9 / 2 ** 30, rel=0.01)
