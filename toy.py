"""The embedded toy start: what `bash run.sh` trains from when no --policy is given.

A tiny model (byte-level tokenizer, random-init Qwen2) learns the toy task (`13+5=?` -> `13+5=18\n#### 18`)
from a short, deliberately noisy supervised warm-up; VerifyRM (its trunk the warmed-up policy) is pre-trained
on (worked solution, copy slip) pairs, which gives it the blind spot the README describes; rm_eval.jsonl holds
labelled policy samples on test questions, scored during RL to see whether the RM stays right.
perturb_solution is also the offline assistant of `--assistant perturb` (cooper.py).

    python toy.py [TOY_DIR] [--seed N]   build start seed N (default 0) once (cached in TOY_DIR, default runs/toy,
                                         runs/toy-start<N> for N > 0)
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
# The start (see prepare_toy): the warm-up runs until greedy accuracy on the dev split enters sft_band, VerifyRM's
# pre-training until its balanced accuracy on policy samples of the dev split enters rm_band with its blind spot
# intact, each checked every check_every steps - not for a fixed number of steps, whose outcome a CPU's rounding
# moved from 0.32 to 0.15 (issue 15). An RM attempt that levels off (rm_patience checks without coming closer) or
# runs out of steps outside its band is retried from a fresh score head and pair stream, up to rm_attempts, and the
# closest attempt kept. The README has the traces per start seed these bands come from.
TOY_START = dict(sft_band=(0.30, 0.38), rm_band=(0.65, 0.84), check_every=25, max_sft_steps=2000, max_rm_steps=600,
                 rm_patience=8, rm_attempts=3)
TEST_TOY = dict(sft_steps=150, rm_steps=60)     # a smaller start for the end-to-end tests: fixed steps, no bands
DEV_SIZE = 128   # dev problems carved from the training split (TOY_TASK uses all 800 distinct problems)
MIN_CARRIED_PAID = 0.2   # the blind spot: the pre-trained RM still pays at least this share of carried slips
MIN_COPY_CAUGHT = 0.9    # ... and has learned its training data: it rejects at least this share of copy slips

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




def sft_train(policy, tokenizer, records, steps, batch_size, noise, rng, optimizer) -> None:
    """`steps` steps of the supervised warm-up on worked solutions, a fraction `noise` of them with a slip
    (perturb_solution, either kind), so that RL starts from a policy with room to improve."""
    policy.train()
    for _ in range(steps):
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


def band_distance(value: float, band) -> float:
    """How far value lies outside the band [low, high]; 0 inside it.
    >>> band_distance(0.25, (0.3, 0.36)), band_distance(0.33, (0.3, 0.36)), band_distance(0.4, (0.3, 0.36))
    (0.05, 0.0, 0.04)
    """
    low, high = band
    return round(max(low - value, value - high, 0.0), 10)


def band_stop(checks: list[tuple[int, float, bool]], max_steps: int, patience: int | None = None) -> int | None:
    """The stopping rule of the banded warm-up and RM pre-training. checks: (step, distance from the band,
    overshot) of every check so far, in order; overshot: past the band's far side, where training on does not
    bring it back (accuracy grows with training; the measured value jumps by up to ~0.07 between checks, so a check
    can pass over the band). Returns the step to stop at: the first check inside the band (distance 0); at the
    first overshoot, once max_steps is reached with none inside, or once the last `patience` checks came no closer
    than the best before them (levelled off), the check closest to the band (the earliest of equals), whose weights
    the caller kept; None while training should go on.
    >>> band_stop([(25, 0.2, False), (50, 0.0, False), (75, 0.0, False)], 100)
    50
    >>> band_stop([(25, 0.2, False), (50, 0.1, False)], 100), band_stop([(25, 0.2, False), (50, 0.1, True)], 100)
    (None, 50)
    >>> band_stop([(25, 0.2, False), (50, 0.1, False), (75, 0.3, False)], 75)
    50
    >>> band_stop([(25, 0.2, False), (50, 0.1, False), (75, 0.1, False), (100, 0.3, False)], 1000, patience=2)
    50
    """
    inside = [c[0] for c in checks if c[1] == 0]
    if inside:
        return inside[0]
    levelled = (patience is not None and len(checks) > patience
                and min(c[1] for c in checks[-patience:]) >= min(c[1] for c in checks[:-patience]))
    if checks and (checks[-1][0] >= max_steps or checks[-1][2] or levelled):
        return min(checks, key=lambda c: (c[1], c[0]))[0]
    return None


def toy_dev_splits() -> tuple[list[dict], list[dict], list[dict]]:
    """(warm-up train, dev, test): the toy task's splits (data.toy_splits(**TOY_TASK), which RL uses) with the
    last DEV_SIZE training problems held out of the start's training as the dev split that its bands are
    checked on. TOY_TASK takes all 800 distinct problems, so dev must come from train; RL still trains on all
    of train (dev only chooses when the start stops), and the test split is never looked at before RL."""
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
    """Per problem its worked solution, a carried slip and a copy slip of it (perturb_solution): what the
    pre-trained RM's blind spot is measured on."""
    return [{"question": r["question"], "reference": r["answer"], "solution": r["solution"],
             "carried": perturb_solution(r["solution"], rng, kind="carried"),
             "copy": perturb_solution(r["solution"], rng, kind="final")} for r in records]


def rm_dev_metrics(rm, rows: list[dict], probes: list[dict]) -> dict:
    """VerifyRM on the dev split: balanced accuracy on labelled policy samples, and its blind spot - the share of
    carried slips it pays (scores >= 0.5), of copy slips it rejects, of worked solutions it pays."""
    with torch.no_grad():
        bacc = reward.evaluate(rm, rows)["balanced_acc"] if rows else 0.0
        q, ref = [p["question"] for p in probes], [p["reference"] for p in probes]
        paid = {k: rm.score(q, ref, [p[k] for p in probes]) >= 0.5 for k in ("carried", "copy", "solution")}
    share = lambda t: round(t.float().mean().item(), 4)
    return {"balanced_acc": bacc, "carried_paid": share(paid["carried"]), "copy_caught": share(~paid["copy"]),
            "solution_paid": share(paid["solution"])}


def rm_overshot(metrics: dict, band) -> bool:
    """Past the RM's band where training on does not bring it back: balanced accuracy above it. (A closed blind spot
    alone is not: early checks swing through carried_paid < MIN_CARRIED_PAID while the RM still rejects most of
    everything, solutions included.)"""
    return metrics["balanced_acc"] > band[1]


def rm_band_distance(metrics: dict, band) -> float:
    """How far the RM is from a start's: balanced accuracy outside the band, plus any shortfall of the blind spot
    (carried slips paid < MIN_CARRIED_PAID) or of what it was taught (copy slips caught < MIN_COPY_CAUGHT).
    >>> rm_band_distance({"balanced_acc": 0.8, "carried_paid": 0.6, "copy_caught": 0.95}, (0.74, 0.84))
    0.0
    >>> rm_band_distance({"balanced_acc": 0.9, "carried_paid": 0.1, "copy_caught": 0.95}, (0.74, 0.84))
    0.16
    """
    return round(band_distance(metrics["balanced_acc"], band) + max(0.0, MIN_CARRIED_PAID - metrics["carried_paid"])
                 + max(0.0, MIN_COPY_CAUGHT - metrics["copy_caught"]), 10)


def banded(train_some, measure, distance, check_every: int, max_steps: int, module, log,
           patience: int | None = None) -> tuple[int, dict, list]:
    """Train check_every steps at a time (train_some(n)) until band_stop(..., patience) says stop; measure() -> metrics,
    distance(metrics) -> (how far outside the band, overshot). Ends with module holding the weights of the chosen
    check.
    Returns (steps, that check's metrics, every check's metrics with its step)."""
    import copy
    checks, history, best = [], [], None
    step = 0
    while True:
        train_some(check_every)
        step += check_every
        metrics = measure()
        d, overshot = distance(metrics)
        history.append({"step": step, **metrics})
        log(f"step {step}: {metrics} (outside the band by {d}{', past it' if overshot else ''})")
        if best is None or d < best[1]:
            best = (step, d, copy.deepcopy(module.state_dict()), metrics)
        checks.append((step, d, overshot))
        stop = band_stop(checks, max_steps, patience)
        if stop is not None:
            if stop != step:
                module.load_state_dict(best[2])
            return stop, best[3] if stop == best[0] else metrics, history


def pretrain_rm(policy_dir: str, train: list[dict], rm_dev: list[dict], probes: list[dict], base: int,
                steps: int | None, band, check_every: int, max_steps: int, patience: int, attempts: int, log,
                measure_eval=None):
    """VerifyRM pre-training on (correct, wrong) pairs of training questions, its trunk the warmed-up policy (as the
    paper's VerifyRM starts from a math-instruct LM; a random-init trunk learns ~4x slower): per draw the worked
    solution and a fresh copy slip of it (the final answer miscopied, the worked step kept: "13+5=18\n#### 16"), with
    L_BCE on both triples plus L_RM on the pair.

    The narrow mistakes are deliberate: they make the toy VerifyRM what the paper says a static RM is - right on
    the data it saw, with a blind spot the policy can find. A copy slip is caught by comparing the final answer with
    the worked step, no reference needed; that shortcut is what it learns first and best (it pays
    "14+15=28\n#### 28" more than "14+15=29\n#### 29"), while how far it also learns to read the reference, which
    alone exposes a carried slip (the mistake the policy makes, and Cooper's online negatives), is left to its random
    draws: balanced accuracy on policy samples levels off at 0.55-0.73 depending on the stream. Hence the band and
    the retries. Pre-trained on carried slips too it reaches 0.91, and a frozen copy is not hacked; with a share of
    them (0.05-0.15) it reads the reference early but catches copy slips less surely, and Cooper's policy, whose
    online pairs are all carried slips, learned to miscopy its answers (see README).

    steps: a fixed number of steps, no checks (TEST_TOY). Else each attempt (a fresh score head and pair stream;
    attempt 0's are base's) trains until band_stop (patience: levelled off); one that ends outside the band is
    retried, up to `attempts`, and the closest kept. Returns (rm, steps, that attempt's checks, every attempt's
    {attempt, steps, distance, metrics}, the kept one marked kept: True)."""
    def start_attempt(attempt):   # a fresh score head and pair stream; attempt 0's are base's
        torch.manual_seed(base + 1000 * attempt)   # the new score head's initialisation
        rm = reward.RewardModel.load(policy_dir, allow_new_head=True, max_length=TOY_PRESET["rm_max_length"])
        pair_rng = random.Random(base + 1000 * attempt)
        optimizer = torch.optim.AdamW(rm.model.parameters(), lr=1e-3, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 100))

        def pretrain(n):
            rm.model.train()
            for _ in range(n):
                batch = [pair_rng.choice(train) for _ in range(32)]
                q, ref = [r["question"] for r in batch], [r["answer"] for r in batch]
                negatives = [perturb_solution(r["solution"], pair_rng, kind="final") for r in batch]
                s_pos = rm.logits(q, ref, [r["solution"] for r in batch])
                s_neg = rm.logits(q, ref, negatives)
                labels = torch.cat([torch.ones_like(s_pos), torch.zeros_like(s_neg)])
                loss = reward.bce_loss(torch.cat([s_pos, s_neg]), labels) + reward.pairwise_loss(
                    s_pos, s_neg, torch.ones_like(s_pos))
                reward.rm_step(rm.model, optimizer, loss, 1.0)
                schedule.step()
        return rm, pretrain

    if steps is not None:
        rm, pretrain = start_attempt(0)
        pretrain(steps)
        return rm, steps, [], []
    best, tried = None, []
    for attempt in range(attempts):
        rm, pretrain = start_attempt(attempt)

        def measure():
            with torch.no_grad():
                return {**rm_dev_metrics(rm, rm_dev, probes), **(measure_eval(rm) if measure_eval else {})}
        n, metrics, checks = banded(pretrain, measure, lambda m: (rm_band_distance(m, band), rm_overshot(m, band)),
                                    check_every, max_steps, rm.model, lambda t: log(f"VerifyRM attempt {attempt} {t}"),
                                    patience)
        distance = rm_band_distance(metrics, band)
        tried.append({"attempt": attempt, "steps": n, "distance": distance, **metrics})
        if best is None or distance < best[3]:
            best = (rm, n, checks, distance, attempt)
        if distance == 0:
            break
        log(f"VerifyRM attempt {attempt} ended outside its band (by {distance}): "
            + ("retrying from a fresh score head and pair stream" if attempt + 1 < attempts else "keeping the closest"))
    tried[best[4]]["kept"] = True
    return best[0], best[1], best[2], tried


def default_toy_dir(seed: int = 0) -> str:
    """Where start seed `seed` is cached: runs/toy (the default start, cooper.py's --toy-dir) or runs/toy-start<seed>."""
    return "runs/toy" if seed == 0 else f"runs/toy-start{seed}"


def prepare_toy(toy_dir: str, sft_steps: int | None = None, rm_steps: int | None = None, seed: int | None = None,
                sft_band=TOY_START["sft_band"], rm_band=TOY_START["rm_band"], check_every: int = TOY_START["check_every"],
                max_sft_steps: int = TOY_START["max_sft_steps"], max_rm_steps: int = TOY_START["max_rm_steps"],
                patience: int = TOY_START["rm_patience"], attempts: int = TOY_START["rm_attempts"],
                trace: bool = False) -> dict:
    """Build the embedded start of start seed `seed` (default 0) once, cached in toy_dir: the warmed-up policy, the
    pre-trained VerifyRM, and rm_eval.jsonl (a balanced, labelled set of policy samples on test questions, never
    trained on, scored during RL to see whether the RM stays right). Returns the start's summary (start.json).

    The seed draws the model's initialisation and every random stream of the build; the task stays TOY_TASK's.
    The warm-up runs until greedy accuracy on the dev split (toy_dev_splits: held out of the start's training,
    disjoint from test) enters sft_band, VerifyRM's pre-training until rm_band_distance on dev-split policy samples
    is 0 (balanced accuracy in rm_band, blind spot intact), each checked every check_every steps (band_stop; at
    max_*_steps the closest check); an RM attempt ending outside its band is retried (pretrain_rm). sft_steps / rm_steps instead fix the step counts (TEST_TOY: cheap, no checks).
    trace: also measure the test split and rm_eval at every check (instrumentation only: never chooses anything).
    A cached start is returned whatever its seed when seed is None (cooper.py's --toy-dir names a folder), and
    refused when it holds another seed than the one asked for."""
    ready = os.path.join(toy_dir, "start.json")
    if os.path.exists(ready):
        with open(ready) as f:
            summary = json.load(f)
        if "seed" not in summary:
            print(f"prepare_toy: {toy_dir} holds a start built by an older toy.py (fixed step counts, no bands): "
                  f"delete the folder to build the banded start", file=sys.stderr)
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
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    warm = lambda n: sft_train(policy, tokenizer, train, n, 32, 0.3, rng, optimizer)
    if sft_steps is not None:
        warm(sft_steps)
        sft_checks = []
    else:
        def measure_policy():
            m = {"dev_acc": evaluate.rule_accuracy(policy, tokenizer, dev, n_new)}
            if trace:
                m["test_acc"] = evaluate.rule_accuracy(policy, tokenizer, test, n_new)
            return m
        sft_steps, _, sft_checks = banded(warm, measure_policy,
                                          lambda m: (band_distance(m["dev_acc"], sft_band), m["dev_acc"] > sft_band[1]),
                                          check_every, max_sft_steps, policy, lambda t: log(f"warm-up {t}"))
    dev_acc = evaluate.rule_accuracy(policy, tokenizer, dev, n_new)
    start_acc = evaluate.rule_accuracy(policy, tokenizer, test, n_new)
    log(f"warm-up done after {sft_steps} steps: greedy accuracy dev {dev_acc:.3f}, test {start_acc:.3f}")

    # VerifyRM (pretrain_rm), checked on the dev split's policy samples and slip probes
    rm_dev = balanced(rule_labelled_samples(policy, tokenizer, dev, 4, n_new), 128, rng)
    rm_eval = balanced(rule_labelled_samples(policy, tokenizer, test, 4, n_new), 128, rng)
    probes = slip_probes(dev, random.Random(base))
    policy.save_pretrained(os.path.join(toy_dir, "policy"))
    tokenizer.save_pretrained(os.path.join(toy_dir, "policy"))
    measure_eval = (lambda rm: {"rm_eval_bacc": reward.evaluate(rm, rm_eval)["balanced_acc"]}) if trace else None
    rm, rm_steps, rm_checks, rm_attempts = pretrain_rm(os.path.join(toy_dir, "policy"), train, rm_dev, probes, base,
                                                       rm_steps, rm_band, check_every, max_rm_steps, patience,
                                                       attempts, log, measure_eval)
    with torch.no_grad():
        rm_dev_final = rm_dev_metrics(rm, rm_dev, probes)
        rm_eval_metrics = reward.evaluate(rm, rm_eval)
    log(f"VerifyRM pre-training done after {rm_steps} steps: dev {rm_dev_final}; on rm_eval.jsonl (policy samples, "
        f"test questions) {rm_eval_metrics}")

    in_band = {"sft_in_band": band_distance(dev_acc, sft_band) == 0 if sft_checks else None,
               "rm_in_band": rm_band_distance(rm_dev_final, rm_band) == 0 if rm_checks else None}
    for phase, ok in in_band.items():
        if ok is False:   # the start is built all the same (the closest check), and says so
            log(f"WARNING: start seed {seed}: the {phase[:2].upper()} phase ended outside its band (start.json {phase})")
    rm.save(os.path.join(toy_dir, "reward"))
    with open(os.path.join(toy_dir, "rm_eval.jsonl"), "w") as f:
        for r in rm_eval:
            f.write(json.dumps({"question": r["question"], "reference_answer": r["reference"],
                                "completion": r["completion"], "label": r["label"]}) + "\n")
    summary = {"seed": seed, "start_acc": start_acc, "dev_acc": dev_acc, "sft_steps": sft_steps, "rm_steps": rm_steps,
               "rm_dev": rm_dev_final, "rm_eval": rm_eval_metrics, "rm_attempts": rm_attempts,
               "sft_band": list(sft_band), "rm_band": list(rm_band), **in_band, "seconds": round(time.time() - t0, 1),
               "sft_checks": sft_checks, "rm_checks": rm_checks}
    with open(ready + ".tmp", "w") as f:
        json.dump(summary, f)
    os.replace(ready + ".tmp", ready)
    return summary


def main(argv: list[str]) -> None:
    import argparse
    parser = argparse.ArgumentParser(description="Build the embedded toy start once (cached in TOY_DIR).")
    parser.add_argument("toy_dir", nargs="?", help="default: runs/toy for start seed 0, runs/toy-start<seed> else")
    parser.add_argument("--seed", type=int, default=0, help="start seed: the model's init and the build's streams")
    parser.add_argument("--trace", action="store_true", help="also measure test/rm_eval at every check")
    args = parser.parse_args(argv)
    summary = prepare_toy(args.toy_dir or default_toy_dir(args.seed), seed=args.seed, trace=args.trace)
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith("_checks")}))


if __name__ == "__main__":
    main(sys.argv[1:])
