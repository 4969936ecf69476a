"""The embedded toy start: what `bash run.sh` trains from when no --policy is given.

A tiny model (byte-level tokenizer, random-init Qwen2) learns the toy task (`13+5=?` -> `13+5=18\n#### 18`)
from a short, deliberately noisy supervised warm-up; VerifyRM (its trunk the warmed-up policy) is pre-trained
on (worked solution, copy slip) pairs, which gives it the blind spot the README describes; rm_eval.jsonl holds
labelled policy samples on test questions, scored during RL to see whether the RM stays right.
perturb_solution is also the offline assistant of `--assistant perturb` (cooper.py).

    python toy.py [TOY_DIR]          build the start once (cached in TOY_DIR, default runs/toy)
"""
import json
import os
import random
import re
import sys
import time

import torch

import data
import evaluate
import grpo
import reward
import verify

# The task (fixed across RL seeds: 800 problems in all) and the RL settings that suit the tiny model, measured on a
# 2-core CPU (see README): a slow policy (lr, KL) and more RM updates than policy updates.
TOY_TASK = dict(n_train=544, n_test=256, seed=1234, n_terms=2, max_value=19)
TOY_PRESET = dict(prompts_per_step=16, group_size=8, max_new_tokens=24, lr=1e-4, warmup_steps=0, beta=0.05,
                  rm_lr=1e-4, rm_steps=4, rm_max_length=256, eval_every=10)
TOY_START = dict(sft_steps=600, rm_steps=600)   # what `bash run.sh` uses
TEST_TOY = dict(sft_steps=150, rm_steps=60)     # a smaller start for the end-to-end tests

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def perturb_solution(solution: str, rng: random.Random, kind: str = "carried") -> str:
    """The offline assistant: a small, plausible mistake that changes the final answer.

    kind="carried" (the assistant's, as NEGATIVE_PROMPT asks): a slip in the last computed result (the last
    number after '='), carried to every later copy of it, the final answer included - the mistake the toy
    policy itself makes. kind="final": a slip in copying the final answer (the last number) alone - the toy
    RM's pre-training negatives (see prepare_toy). kind="either": one or the other, half and half - the
    warm-up's noise. Where nothing is computed, or the final answer is not a copy of the last result (work
    and answer disagree, so a carried slip would leave the answer as it is), the final-answer slip.
    >>> perturb_solution("13+5=18\\n#### 18", random.Random(1))
    '13+5=17\\n#### 17'
    >>> perturb_solution("13+5=18\\n#### 18", random.Random(1), kind="final")
    '13+5=18\\n#### 17'
    """
    if kind not in ("carried", "final", "either"):
        raise ValueError(f"perturb_solution: kind must be carried, final or either, got {kind!r}")
    numbers = list(NUMBER.finditer(solution))
    if not numbers:
        return solution
    results = [m for m in numbers if solution[:m.start()].rstrip().endswith("=")]
    carries = bool(results) and results[-1].group() == numbers[-1].group()
    carried = carries and (kind == "carried" or kind == "either" and rng.random() < 0.5)
    target = results[-1] if carried else numbers[-1]
    old = target.group()
    value = float(old) + rng.choice([-3, -2, -1, 1, 2, 3, 10, -10])
    new = str(int(value)) if "." not in old else f"{value:.{len(old.split('.')[1])}f}"
    tail = solution[target.end():]
    if carried:
        tail = re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d.])", new, tail)
    return solution[:target.start()] + new + tail




def sft_warmup(policy, tokenizer, records, steps, batch_size, lr, noise, rng) -> None:
    """Supervised warm-up on worked solutions, a fraction `noise` of them with a slip (perturb_solution, either
    kind), so that RL starts from a policy with room to improve."""
    from tqdm import tqdm
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
    policy.train()
    for _ in tqdm(range(steps), desc="SFT warm-up"):
        batch = rng.sample(records, batch_size)
        prompts = [data.chat_prompt(tokenizer, r["question"]) for r in batch]
        targets = [perturb_solution(r["solution"], rng, kind="either") if rng.random() < noise else r["solution"]
                   for r in batch]
        rollouts = grpo.rollouts_from_text(tokenizer, prompts, targets)
        logp = grpo.response_logprobs(policy, rollouts)
        loss = -(logp * rollouts.response_mask).sum() / rollouts.response_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def rule_labelled_samples(policy, tokenizer, records: list[dict], per_prompt: int, max_new_tokens: int) -> list[dict]:
    """VerifyRM rows (question, reference, completion, label) from the policy's own samples, labelled by
    the rule verifier - the paper's data pipeline, with the rule alone standing in for the rule + LLM-judge
    agreement, since on the toy the rule is exact."""
    prompts = [data.chat_prompt(tokenizer, r["question"]) for r in records]
    out = grpo.generate_rollouts(policy, tokenizer, prompts, per_prompt, max_new_tokens, temperature=1.0)
    repeated = [r for r in records for _ in range(per_prompt)]
    return [{"question": r["question"], "reference": r["answer"], "completion": t,
             "label": int(verify.verify(t, r["answer"]))} for r, t in zip(repeated, out.texts)]


def balanced(rows: list[dict], n_per_label: int, rng: random.Random) -> list[dict]:
    """Up to n_per_label rows of each label, shuffled."""
    picked = [r for label in (1, 0) for r in rng.sample([r for r in rows if r["label"] == label],
                                                          min(n_per_label, sum(r["label"] == label for r in rows)))]
    rng.shuffle(picked)
    return picked


def prepare_toy(toy_dir: str, sft_steps: int = TOY_START["sft_steps"], rm_steps: int = TOY_START["rm_steps"]) -> dict:
    """Build the embedded default start once (cached in toy_dir): the warmed-up policy, the pre-trained
    VerifyRM, and rm_eval.jsonl (a balanced, labelled set of policy samples on test questions, never trained
    on, scored during RL to see whether the RM stays right). Returns the start's summary."""
    ready = os.path.join(toy_dir, "start.json")
    if os.path.exists(ready):
        with open(ready) as f:
            return json.load(f)
    from transformers import AutoModelForCausalLM
    t0 = time.time()
    rng = random.Random(TOY_TASK["seed"])
    torch.manual_seed(TOY_TASK["seed"])
    train, test = data.toy_splits(**TOY_TASK)
    n_new = TOY_PRESET["max_new_tokens"]
    init = os.path.join(toy_dir, "init")
    data.build_tiny_model(init, seed=TOY_TASK["seed"])
    tokenizer = data.load_tokenizer(os.path.join(init, "policy"))
    policy = AutoModelForCausalLM.from_pretrained(os.path.join(init, "policy"))
    sft_warmup(policy, tokenizer, train, steps=sft_steps, batch_size=32, lr=1e-3, noise=0.3, rng=rng)
    start_acc = evaluate.rule_accuracy(policy, tokenizer, test, n_new)
    print(f"warm-up done: greedy test accuracy {start_acc:.3f}")

    # VerifyRM pre-training on (correct, wrong) pairs of training questions: the worked solution and a fresh
    # copy slip of it per draw (the final answer miscopied, the worked step kept: "13+5=18\n#### 16"), with
    # L_BCE on both triples plus L_RM on the pair. The trunk starts from the warmed-up policy, as the paper's
    # VerifyRM starts from a math-instruct LM (a random-init 4-layer trunk learns ~4x slower).
    # The narrow mistakes are deliberate: they make the toy VerifyRM what the paper says a static RM is - right
    # on the data it saw (balanced accuracy ~0.8 on the policy's samples), with a blind spot the policy can
    # find. A copy slip is caught by comparing the final answer with the worked step, no reference needed, and
    # that shortcut is what it learns: it pays "14+15=28\n#### 28" more than "14+15=29\n#### 29". Cooper's
    # online negatives are carried slips (perturb_solution), on the policy's own correct rollouts.
    # Trained on both kinds it reaches 0.91 and a frozen copy is not hacked within 150 steps (see README).
    # What it learns besides the shortcut depends on its random draws (another stream: balanced accuracy 0.63,
    # the shortcut alone), so they come from streams of their own, seeded here, not from the warm-up's.
    pair_rng = random.Random(TOY_TASK["seed"])
    pairs = [{"question": r["question"], "reference": r["answer"], "positive": r["solution"],
              "negative": perturb_solution(r["solution"], pair_rng, kind="final")}
             for r in (pair_rng.choice(train) for _ in range(32 * rm_steps))]
    policy.save_pretrained(os.path.join(toy_dir, "policy"))
    tokenizer.save_pretrained(os.path.join(toy_dir, "policy"))
    torch.manual_seed(TOY_TASK["seed"])   # the new score head's initialisation
    rm = reward.RewardModel.load(os.path.join(toy_dir, "policy"), allow_new_head=True,
                                 max_length=TOY_PRESET["rm_max_length"])
    reward.train_pairs(rm, pairs, steps=rm_steps, lr=1e-3, batch_size=32, seed=TOY_TASK["seed"])
    rm_eval = balanced(rule_labelled_samples(policy, tokenizer, test, 4, n_new), 128, rng)
    rm_eval_metrics = reward.evaluate(rm, rm_eval)
    print(f"VerifyRM pre-training: on rm_eval.jsonl (policy samples, test questions) {rm_eval_metrics}")

    rm.save(os.path.join(toy_dir, "reward"))
    with open(os.path.join(toy_dir, "rm_eval.jsonl"), "w") as f:
        for r in rm_eval:
            f.write(json.dumps({"question": r["question"], "reference_answer": r["reference"],
                                "completion": r["completion"], "label": r["label"]}) + "\n")
    summary = {"start_acc": start_acc, "rm_eval": rm_eval_metrics, "rm_pairs": len(pairs),
               "seconds": round(time.time() - t0, 1)}
    with open(ready, "w") as f:
        json.dump(summary, f)
    return summary



if __name__ == "__main__":
    print(json.dumps(prepare_toy(sys.argv[1] if len(sys.argv) > 1 else "runs/toy")))
