"""The embedded toy start: what `bash run.sh` trains from when no --policy is given.

A tiny model (byte-level tokenizer, random-init Qwen2) learns the toy task (`13+9=?` -> `13+9=22\n#### 22`) in a
supervised warm-up on the worked solutions of a student who forgets the carry: on a problem whose ones digits carry
(or borrow) most solutions are off by ten (`13+9=12\n#### 12`), the rest are right or hold a small slip. VerifyRM
(its trunk the warmed-up policy) is pre-trained on (worked solution, copy slip) pairs (`13+9=22\n#### 21`), which
can be told apart by comparing the answer with the worked step, no reference needed: it learns mostly that, and
pays many slips carried from the worked step to the answer - the student's mistake among them - its blind spot.
rm_eval.jsonl holds labelled policy samples on test questions, scored during RL to see whether the RM stays right.
miscalculate is the offline assistant of `--assistant perturb` (cooper.py).

Both phases train for a fixed schedule whose learning rate decays to zero (cosine), long enough to settle where
their data puts them: the warm-up at the student's accuracy (no-carry problems right, carry problems mostly off
by ten), the RM at the shortcut. A start is thus fixed by its data, not by the step at which training stops,
which a CPU's rounding moved (issue 15; README). What each start must be is checked on a dev split once it is built
(START_BANDS, in start.json).

    python toy.py [TOY_DIR] [--seed N]   build start seed N (default 0) once (cached in TOY_DIR, default runs/toy,
                                         runs/toy-start<N> for N > 0)
"""
import json
import math
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

# The task (fixed across RL seeds: all 1,800 problems a+b and a-b with a, b in 0..29) and the RL settings that suit
# the tiny model, measured on a 2-core CPU (see README): a slow policy (lr, KL) and a reward model that learns
# faster than it (4x its learning rate, 4 updates a step), with 32 prompts a step for pairs enough to learn from.
TOY_TASK = dict(n_train=1544, n_test=256, seed=1234, n_terms=2, max_value=29)
TOY_PRESET = dict(prompts_per_step=32, group_size=8, max_new_tokens=24, lr=5e-5, warmup_steps=0, beta=0.05,
                  rm_lr=2e-4, rm_steps=4, rm_max_length=256, eval_every=10)
# The start (prepare_toy). The warm-up's data: on a problem that carries, the carry forgotten (forgot), the right
# solution (carry_right), else a slip; on the others the right solution but for a share `noise` of slips.
TOY_START = dict(sft_steps=1500, sft_batch=64, sft_lr=1e-3, forgot=0.65, carry_right=0.30, noise=0.2,
                 rm_steps=600, rm_batch=32, rm_lr=1e-3, warmup=100)
TEST_TOY = dict(sft_steps=400, rm_steps=100)    # a smaller start for the end-to-end tests (~40 s)
DEV_SIZE = 128   # dev problems carved from the training split (TOY_TASK uses every distinct problem)
# What every start must be, measured on the dev split once it is built ([low, high]; start.json "checks" and
# "in_band"; the build warns where one is missed): the warm-up learned the task but forgets the carry; VerifyRM
# learned what it was taught (copy slips caught, solutions paid) and pays the student's mistake.
START_BANDS = {"dev_acc_no_carry": (0.9, 1.0), "dev_acc_carry": (0.0, 0.3), "copy_caught": (0.9, 1.0),
               "solution_paid": (0.9, 1.0), "forgot_paid": (0.5, 1.0)}

SLIPS = (-1, 1, -10, 10)   # a slip: one digit of a number off by one, the ones or the tens
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
TWO_TERMS = re.compile(r"(\d+)([+-])(\d+)=\?")


def carries(question: str) -> bool:
    """Whether a two-term toy problem carries (a+b: the ones digits sum to 10 or more) or borrows (a-b: a's ones
    digit is below b's) - where the toy student slips.
    >>> carries("13+9=?"), carries("13+5=?"), carries("3-17=?"), carries("17-3=?")
    (True, False, True, False)
    """
    found = TWO_TERMS.fullmatch(question)
    if not found:
        raise ValueError(f"carries: not a two-term toy problem: {question!r}")
    a, op, b = int(found[1]), found[2], int(found[3])
    return a % 10 + b % 10 >= 10 if op == "+" else a % 10 < b % 10


def forgot_carry(record: dict) -> str:
    """The toy student's mistake: the worked solution with the carry (borrow) forgotten, off by ten, carried to
    the final answer.
    >>> forgot_carry({"question": "13+9=?", "answer": "22"}), forgot_carry({"question": "3-17=?", "answer": "-14"})
    ('13+9=12\\n#### 12', '3-17=-4\\n#### -4')
    """
    found = TWO_TERMS.fullmatch(record["question"])
    wrong = int(record["answer"]) + (-10 if found[2] == "+" else 10)
    return f"{record['question'][:-1]}{wrong}\n#### {wrong}"


def shift(number: str, delta: int) -> str:
    """number + delta, written with as many decimals as number.
    >>> shift("18", -10), shift("2.50", 1)
    ('8', '3.50')
    """
    value = float(number) + delta
    return str(int(value)) if "." not in number else f"{value:.{len(number.split('.')[1])}f}"


def slip(number: str, rng: random.Random) -> str:
    """One digit of a number off by one, the ones or the tens (SLIPS): the student's slips and the RM's copy slips.
    >>> slip("18", random.Random(1)), slip("2.50", random.Random(3))
    ('19', '3.50')
    """
    return shift(number, rng.choice(SLIPS))


def calculation_mistake(number: str, rng: random.Random) -> str:
    """A calculation mistake in a number, of the kinds the policy makes: half the time a carry mistake (off by ten),
    else one edit - a digit replaced by any other, a digit dropped, a digit repeated, or the sign flipped. An RM
    taught only some kinds pays the others, and the policy finds them (off by 2, 6 or 8; `-11` for 11; `411` for 41).
    >>> [calculation_mistake("-14", random.Random(seed)) for seed in (1, 6, 20, 5, 0)]  # carry replace drop repeat sign
    ['-24', '-15', '-1', '-114', '14']
    """
    if rng.random() < 0.5:
        return shift(number, rng.choice((-10, 10)))
    digits = [i for i, ch in enumerate(number) if ch.isdigit()]
    edit, i = rng.choice(("replace", "drop", "repeat", "sign")), rng.choice(digits)
    if float(number) == 0:   # 00, -0: still zero
        edit = "replace"
    if edit == "drop" and len(digits) > 1:
        return number[:i] + number[i + 1:]
    if edit == "repeat":
        return number[:i + 1] + number[i:]
    if edit == "sign":
        return number[1:] if number.startswith("-") else "-" + number
    leading = i == digits[0] and len(digits) > 1 and number[i + 1:i + 2] != "."
    return number[:i] + rng.choice([d for d in "0123456789" if d != number[i] and not (leading and d == "0")]) + \
        number[i + 1:]


def perturb_solution(solution: str, rng: random.Random, kind: str = "carried", change=slip) -> str:
    """A mistake that changes the final answer: `change` (slip, or calculation_mistake) applied to one number.

    kind="carried": to the last computed result (the last number after '='), carried to every later copy of it,
    the final answer included - the start's probes of carried slips, and, with calculation_mistake, the offline
    assistant (miscalculate). kind="final": to the final answer (the last number) alone, a copying mistake - the toy
    RM's pre-training negatives (see prepare_toy). kind="either": one or the other, half and half - the warm-up's
    noise.
    Where nothing is computed, or the final answer is not a copy of the last result (work and answer disagree, so
    a carried change would leave the answer as it is), the final answer is changed.
    >>> perturb_solution("13+5=18\\n#### 18", random.Random(1))
    '13+5=19\\n#### 19'
    >>> perturb_solution("13+5=18\\n#### 18", random.Random(1), kind="final")
    '13+5=18\\n#### 19'
    """
    if kind not in ("carried", "final", "either"):
        raise ValueError(f"perturb_solution: kind must be carried, final or either, got {kind!r}")
    numbers = list(NUMBER.finditer(solution))
    if not numbers:
        return solution
    results = [m for m in numbers if solution[:m.start()].rstrip().endswith("=")]
    answer_is_result = bool(results) and results[-1].group() == numbers[-1].group()
    carried = answer_is_result and (kind == "carried" or kind == "either" and rng.random() < 0.5)
    target = results[-1] if carried else numbers[-1]
    old = target.group()
    new = change(old, rng)
    tail = solution[target.end():]
    if carried:
        tail = re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d.])", new, tail)
    return solution[:target.start()] + new + tail


def miscalculate(solution: str, rng: random.Random) -> str:
    """The offline assistant (`--assistant perturb`, cooper.py): a calculation mistake in the last computed result,
    carried to the final answer, as NEGATIVE_PROMPT asks an LLM for (perturb_solution with calculation_mistake).
    >>> miscalculate("13+5=18\\n#### 18", random.Random(1))
    '13+5=8\\n#### 8'
    """
    return perturb_solution(solution, rng, "carried", calculation_mistake)


def warmup_solution(record: dict, rng: random.Random, forgot: float = TOY_START["forgot"],
                    carry_right: float = TOY_START["carry_right"], noise: float = TOY_START["noise"]) -> str:
    """One draw of the warm-up's target for a problem: the student's solution (module docstring)."""
    if carries(record["question"]):
        u = rng.random()
        if u < forgot:
            return forgot_carry(record)
        return record["solution"] if u < forgot + carry_right else perturb_solution(record["solution"], rng, "either")
    return perturb_solution(record["solution"], rng, "either") if rng.random() < noise else record["solution"]


def settling_schedule(optimizer, steps: int, warmup: int = TOY_START["warmup"]):
    """Linear warm-up over `warmup` steps, then a cosine decay that reaches 0 at `steps`: training ends settled,
    not wherever its last noisy step left it."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, steps) / steps)))


def sft_train(policy, tokenizer, records: list[dict], steps: int, rng: random.Random, log=None, dev=None,
              batch_size: int = TOY_START["sft_batch"], lr: float = TOY_START["sft_lr"]) -> list[dict]:
    """The supervised warm-up: `steps` AdamW steps on warmup_solution targets, lr on settling_schedule. With dev,
    greedy dev accuracy is measured (and logged) at every tenth of the way. Returns those measurements."""
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
    schedule = settling_schedule(optimizer, steps)
    trace = []
    for step in range(1, steps + 1):
        policy.train()
        batch = rng.sample(records, batch_size)
        prompts = [data.chat_prompt(tokenizer, r["question"]) for r in batch]
        rollouts = grpo.rollouts_from_text(tokenizer, prompts, [warmup_solution(r, rng) for r in batch])
        logp = grpo.response_logprobs(policy, rollouts)
        loss = -(logp * rollouts.response_mask).sum() / rollouts.response_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if dev is not None and step % max(1, steps // 10) == 0:
            trace.append({"step": step, "loss": round(loss.item(), 4),
                          "dev_acc": evaluate.rule_accuracy(policy, tokenizer, dev, TOY_PRESET["max_new_tokens"])})
            if log:
                log(f"warm-up {trace[-1]}")
    return trace


def pretrain_rm(policy_dir: str, records: list[dict], steps: int, seed: int, measure=None, log=None,
                batch_size: int = TOY_START["rm_batch"], lr: float = TOY_START["rm_lr"]):
    """VerifyRM pre-training on (correct, wrong) pairs of training questions, its trunk the warmed-up policy (as the
    paper's VerifyRM starts from a math-instruct LM): per draw the worked solution and a fresh copy slip of it (the
    final answer miscopied, the worked step kept: "13+9=22\n#### 21"), with L_BCE on both triples plus L_RM on the
    pair, for `steps` AdamW steps on settling_schedule.

    The narrow mistakes are deliberate: they make the toy VerifyRM what the paper says a static RM is - right on the
    data it saw, with a blind spot the policy can find. A copy slip is caught by comparing the final answer with the
    worked step, no reference needed; that shortcut is mostly what it learns (how far it also reads the reference is
    left to its random draws), so it pays many wrong worked steps carried to the answer - the student's forgotten
    carry among them - which only the reference exposes (Cooper's online negatives are such slips).
    measure(rm) -> metrics at every tenth of the way (logged). Returns (rm, those metrics)."""
    torch.manual_seed(seed)   # the new score head's initialisation
    rm = reward.RewardModel.load(policy_dir, allow_new_head=True, max_length=TOY_PRESET["rm_max_length"])
    pair_rng = random.Random(seed)
    optimizer = torch.optim.AdamW(rm.model.parameters(), lr=lr, weight_decay=0.01)
    schedule = settling_schedule(optimizer, steps)
    trace = []
    for step in range(1, steps + 1):
        rm.model.train()
        batch = [pair_rng.choice(records) for _ in range(batch_size)]
        q, ref = [r["question"] for r in batch], [r["answer"] for r in batch]
        s_pos = rm.logits(q, ref, [r["solution"] for r in batch])
        s_neg = rm.logits(q, ref, [perturb_solution(r["solution"], pair_rng, kind="final") for r in batch])
        labels = torch.cat([torch.ones_like(s_pos), torch.zeros_like(s_neg)])
        loss = reward.bce_loss(torch.cat([s_pos, s_neg]), labels) + reward.pairwise_loss(
            s_pos, s_neg, torch.ones_like(s_pos))
        reward.rm_step(rm.model, optimizer, loss, 1.0)
        schedule.step()
        if measure is not None and step % max(1, steps // 10) == 0:
            trace.append({"step": step, "loss": round(loss.item(), 4), **measure(rm)})
            if log:
                log(f"VerifyRM {trace[-1]}")
    return rm, trace


def toy_dev_splits() -> tuple[list[dict], list[dict], list[dict]]:
    """(warm-up train, dev, test): the toy task's splits (data.toy_splits(**TOY_TASK), which RL uses) with the
    last DEV_SIZE training problems held out of the start's training as the dev split that its bands are
    checked on. TOY_TASK takes all 1,800 distinct problems, so dev must come from train; RL still trains on all
    of train (dev only checks the start), and the build only measures the test split (the start's accuracy)."""
    train, test = data.toy_splits(**TOY_TASK)
    return train[:-DEV_SIZE], train[-DEV_SIZE:], test


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


def slip_probes(records: list[dict], rng: random.Random) -> list[dict]:
    """Per problem its worked solution, a carried slip and a copy slip of it (perturb_solution), and where it
    carries the student's forgotten carry: what the pre-trained RM's blind spot is measured on."""
    return [{"question": r["question"], "reference": r["answer"], "solution": r["solution"],
             "carried": perturb_solution(r["solution"], rng, kind="carried"),
             "copy": perturb_solution(r["solution"], rng, kind="final"),
             "forgot": forgot_carry(r) if carries(r["question"]) else None} for r in records]


def rm_dev_metrics(rm, rows: list[dict], probes: list[dict]) -> dict:
    """VerifyRM on the dev split: balanced accuracy on labelled policy samples, and its blind spot - the share of
    forgotten carries and of carried slips it pays (scores >= 0.5), of copy slips it rejects, of worked solutions
    it pays."""
    share = lambda paid: round(paid.float().mean().item(), 4) if len(paid) else 0.0
    with torch.no_grad():
        bacc = reward.evaluate(rm, rows)["balanced_acc"] if rows else 0.0
        paid = {}
        for k in ("forgot", "carried", "copy", "solution"):
            some = [p for p in probes if p[k] is not None]
            paid[k] = rm.score([p["question"] for p in some], [p["reference"] for p in some],
                               [p[k] for p in some]) >= 0.5 if some else torch.zeros(0, dtype=torch.bool)
    return {"balanced_acc": round(bacc, 4), "forgot_paid": share(paid["forgot"]), "carried_paid": share(paid["carried"]),
            "copy_caught": share(~paid["copy"]), "solution_paid": share(paid["solution"])}


def default_toy_dir(seed: int = 0) -> str:
    """Where start seed `seed` is cached: runs/toy (the default start, cooper.py's --toy-dir) or runs/toy-start<seed>."""
    return "runs/toy" if seed == 0 else f"runs/toy-start{seed}"


def policy_dev_metrics(policy, tokenizer, dev: list[dict]) -> dict:
    """Greedy accuracy on the dev split, overall and on the problems that do and do not carry."""
    n_new = TOY_PRESET["max_new_tokens"]
    split = {"dev_acc_carry": [r for r in dev if carries(r["question"])],
             "dev_acc_no_carry": [r for r in dev if not carries(r["question"])]}
    m = {k: round(evaluate.rule_accuracy(policy, tokenizer, rows, n_new), 4) for k, rows in split.items()}
    m["dev_acc"] = round(sum(m[k] * len(rows) for k, rows in split.items()) / len(dev), 4)
    return m


def prepare_toy(toy_dir: str, sft_steps: int = TOY_START["sft_steps"], rm_steps: int = TOY_START["rm_steps"],
                seed: int | None = None) -> dict:
    """Build the embedded start of start seed `seed` (default 0) once, cached in toy_dir: the warmed-up policy, the
    pre-trained VerifyRM, and rm_eval.jsonl (a balanced, labelled set of policy samples on test questions, never
    trained on, scored during RL to see whether the RM stays right). Returns the start's summary (start.json): the
    dev measurements against START_BANDS ("checks", "in_band"), the test accuracy RL starts from (start_acc), the
    trace of each phase.

    The seed draws the model's initialisation and every random stream of the build; the task stays TOY_TASK's.
    The dev split (toy_dev_splits) is held out of the start's training and disjoint from test, which the build only
    measures (start_acc). sft_steps / rm_steps: the length of each phase's schedule (TEST_TOY: a cheap start).
    A cached start is returned whatever its seed when seed is None (cooper.py's --toy-dir names a folder), and
    refused when it holds another seed than the one asked for."""
    ready = os.path.join(toy_dir, "start.json")
    if os.path.exists(ready):
        with open(ready) as f:
            summary = json.load(f)
        if "checks" not in summary:
            raise ValueError(f"prepare_toy: {toy_dir} holds a start built by an older toy.py: delete the folder to "
                             f"build the current one")
        if seed is not None and summary.get("seed", 0) != seed:
            raise ValueError(f"prepare_toy: {toy_dir} holds the start of seed {summary.get('seed', 0)}, not {seed}: "
                             f"give each start seed a folder of its own (default_toy_dir)")
        return summary
    from transformers import AutoModelForCausalLM
    t0 = time.time()
    seed = seed or 0
    base = TOY_TASK["seed"] + seed   # seed 0: the streams the start has always used
    rng = random.Random(base)
    torch.manual_seed(base)
    train, dev, test = toy_dev_splits()
    n_new = TOY_PRESET["max_new_tokens"]
    log = lambda text: print(text, flush=True)
    init = os.path.join(toy_dir, "init")
    data.build_tiny_model(init, seed=base)
    tokenizer = data.load_tokenizer(os.path.join(init, "policy"))
    policy = AutoModelForCausalLM.from_pretrained(os.path.join(init, "policy"))

    # 1. the warm-up: the student's solutions, until the learning rate has decayed to zero
    sft_trace = sft_train(policy, tokenizer, train, sft_steps, rng, log, dev)
    checks = policy_dev_metrics(policy, tokenizer, dev)
    start_acc = evaluate.rule_accuracy(policy, tokenizer, test, n_new)
    log(f"warm-up done after {sft_steps} steps: dev {checks}, test accuracy {start_acc:.3f}")
    policy.save_pretrained(os.path.join(toy_dir, "policy"))
    tokenizer.save_pretrained(os.path.join(toy_dir, "policy"))

    # 2. VerifyRM (pretrain_rm), measured on the dev split's policy samples and slip probes
    rm_dev = balanced(rule_labelled_samples(policy, tokenizer, dev, 4, n_new), 128, rng)
    rm_eval = balanced(rule_labelled_samples(policy, tokenizer, test, 4, n_new), 128, rng)
    probes = slip_probes(dev, random.Random(base))
    rm, rm_trace = pretrain_rm(os.path.join(toy_dir, "policy"), train, rm_steps, base,
                               lambda rm: rm_dev_metrics(rm, rm_dev, probes), log)
    with torch.no_grad():
        rm_dev_final = rm_dev_metrics(rm, rm_dev, probes)
        rm_eval_metrics = reward.evaluate(rm, rm_eval)
    log(f"VerifyRM pre-training done after {rm_steps} steps: dev {rm_dev_final}; on rm_eval.jsonl (policy samples, "
        f"test questions) {rm_eval_metrics}")
    checks.update(rm_dev_final)
    in_band = {k: low <= checks[k] <= high for k, (low, high) in START_BANDS.items()}
    for k, ok in in_band.items():
        if not ok:   # the start is built all the same, and says so
            log(f"WARNING: start seed {seed}: {k} = {checks[k]} is outside {START_BANDS[k]} (start.json in_band)")
    rm.save(os.path.join(toy_dir, "reward"))
    with open(os.path.join(toy_dir, "rm_eval.jsonl"), "w") as f:
        for r in rm_eval:
            f.write(json.dumps({"question": r["question"], "reference_answer": r["reference"],
                                "completion": r["completion"], "label": r["label"]}) + "\n")
    summary = {"seed": seed, "start_acc": start_acc, "sft_steps": sft_steps, "rm_steps": rm_steps, "checks": checks,
               "in_band": in_band, "rm_eval": rm_eval_metrics, "seconds": round(time.time() - t0, 1),
               "sft_trace": sft_trace, "rm_trace": rm_trace}
    with open(ready + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(ready + ".tmp", ready)
    return summary


def main(argv: list[str]) -> None:
    import argparse
    parser = argparse.ArgumentParser(description="Build the embedded toy start once (cached in TOY_DIR).")
    parser.add_argument("toy_dir", nargs="?", help="default: runs/toy for start seed 0, runs/toy-start<seed> else")
    parser.add_argument("--seed", type=int, default=0, help="start seed: the model's init and the build's streams")
    args = parser.parse_args(argv)
    try:
        summary = prepare_toy(args.toy_dir or default_toy_dir(args.seed), seed=args.seed)
    except ValueError as err:   # a folder holding another seed's start, or an older toy.py's
        raise SystemExit(f"error: {err}")
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith("_trace")}))


if __name__ == "__main__":
    main(sys.argv[1:])
