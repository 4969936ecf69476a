"""Cooper: co-optimising the policy and the reward model (arXiv 2508.05613), one file, top to bottom.

Each training step, over the same B x G rollouts:
  1. rollout   sample G responses per prompt from pi_theta
  2. reward    r_i = sigmoid(s_phi(q, ref, o_i))          (--reward rm | cooper; --reward rule: r_i = verify(o_i, ref))
  3. log-probs pi_old and pi_ref of the sampled tokens
  4. advantage A_i = (r_i - mean(r)) / (std(r) + 1e-6)  per group of G
  5. stage 2   reward-model update (--reward cooper only): positive = a rule-verified correct rollout, negative =
               the assistant's plausible wrong rewrite of it; L_RM = -mean_valid log sigmoid(s+ - s-)
  6. stage 1   policy update: PPO-clip with dual clip + beta * k3 KL to pi_ref, token-mean
The step-t RM update first affects rewards at step t+1, as in the paper's code.

    python cooper.py --reward cooper --steps 200 --seed 0 --out runs/cooper     # embedded toy task + tiny model
    python cooper.py --reward cooper --policy PATH --reward-model PATH --train FILE --test FILE --out DIR
    python cooper.py table runs/default/rule runs/default/rm runs/default/cooper

Where each equation lives: advantages, PPO loss and KL in grpo.py; VerifyRM template and L_RM in reward.py;
the rule verifier in verify.py; the pairing rules and the assistant below.
"""
import argparse
import copy
import json
import math
import os
import random
import re
import sys
import time

import torch

import data
import grpo
import reward
import verify

# ----------------------------------------------------------------------------------------------------
# Config: plain values, every one a command-line flag. Defaults are the paper's; the embedded toy task
# (no --policy) swaps in TOY_DEFAULTS, measured on a 2-core CPU, unless a flag is given explicitly.

DEFAULTS = dict(
    reward="cooper",        # rule | rm | cooper
    steps=200, seed=0, out="runs/cooper",
    policy=None, reward_model=None, train=None, test=None, question_field=None, answer_field=None,
    skip_bad_rows=False,
    prompts_per_step=4, group_size=16, max_new_tokens=512, temperature=1.0, top_p=1.0,
    lr=1e-6, warmup_steps=20, beta=0.001, clip_low=0.2, clip_high=0.2, dual_clip=3.0, loss_agg="token-mean",
    max_grad_norm=1.0, micro_batch_size=None,
    rm_lr=1e-5, rm_weight_decay=0.01, rm_steps=1, rm_max_length=1024,
    positive="random",      # random (paper text) | first (paper code)
    assistant="perturb",    # perturb (offline) | hf (local causal LM) | openai (OpenAI-compatible endpoint)
    assistant_model=None, assistant_url=None, assistant_key_env="OPENAI_API_KEY", negative_tries=3,
    eval_every=20, eval_size=256, save_every=0, hack_gap=0.25, hack_patience=10,
    toy_dir="runs/toy", device="cuda" if torch.cuda.is_available() else "cpu",
)
TOY_DEFAULTS = dict(prompts_per_step=16, group_size=8, max_new_tokens=24, lr=1e-4, warmup_steps=0, beta=0.05,
                    rm_lr=1e-4, rm_steps=2, rm_max_length=256, eval_every=10)
TOY_TASK = dict(n_train=544, n_test=256, seed=1234, n_terms=2, max_value=19)   # fixed across RL seeds: 800 problems in all


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Cooper training (see the module docstring)")
    for key, value in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            kind = type(value) if value is not None else str
            p.add_argument(flag, type=int if key == "micro_batch_size" else kind, default=value)
    p.set_defaults(**({} if "--policy" in argv else TOY_DEFAULTS))
    args = p.parse_args(argv)
    if args.reward not in ("rule", "rm", "cooper"):
        p.error(f"--reward must be rule, rm or cooper, got {args.reward!r}")
    if args.policy and not (args.train and args.test):
        p.error("--policy needs --train FILE and --test FILE")
    if args.policy and args.reward != "rule" and not args.reward_model:
        p.error(f"--reward {args.reward} needs --reward-model PATH (a VerifyRM folder; see reward.py train)")
    return args


# ----------------------------------------------------------------------------------------------------
# The assistant: rewrite a correct solution into a plausible wrong one (stage 2, negatives)

NEGATIVE_PROMPT = """Below is a math problem and a correct solution to it.
Write a new solution of about the same length and in the same style that looks just as careful but \
contains a reasoning or calculation mistake, so that it ends with a different, wrong final answer, \
given in the same format as the original. Reply with the new solution only, no comments.

Problem:
{question}

Correct solution:
{solution}"""

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def perturb_solution(solution: str, rng: random.Random) -> str:
    """The offline assistant: a plausible mistake that changes the final answer.

    Half the time an arithmetic slip in the last computed result (the last number after '='), carried
    to every later copy of it, the final answer included; otherwise a slip in copying the final answer
    (the last number) alone. The change is small, as a student's would be.
    >>> perturb_solution("13+5=18\\n#### 18", random.Random(1))
    '13+5=16\\n#### 16'
    """
    numbers = list(NUMBER.finditer(solution))
    if not numbers:
        return solution
    results = [m for m in numbers if solution[:m.start()].rstrip().endswith("=")]
    carried = bool(results) and rng.random() < 0.5
    target = results[-1] if carried else numbers[-1]
    old = target.group()
    value = float(old) + rng.choice([-3, -2, -1, 1, 2, 3, 10, -10])
    new = str(int(value)) if "." not in old else f"{value:.{len(old.split('.')[1])}f}"
    tail = solution[target.end():]
    if carried:
        tail = re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d.])", new, tail)
    return solution[:target.start()] + new + tail


def assistant_rewrites(questions: list[str], solutions: list[str], args, rng: random.Random, hf=None) -> list:
    """One candidate negative per (question, solution); None where the backend gave nothing usable."""
    if args.assistant == "perturb":
        return [perturb_solution(s, rng) for s in solutions]
    conversations = [[{"role": "user", "content": NEGATIVE_PROMPT.format(question=q, solution=s)}]
                     for q, s in zip(questions, solutions)]
    # Paper's code: temperature 0.7, max_tokens = words(positive) + 500.
    max_tokens = max(len(s.split()) for s in solutions) + 500
    if args.assistant == "openai":
        replies, _ = reward.chat_completions(args.assistant_url, args.assistant_model, conversations,
                                             api_key=os.environ.get(args.assistant_key_env), max_tokens=max_tokens)
        return replies
    model, tok = hf
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    out = grpo.generate_rollouts(model, tok, prompts, 1, min(max_tokens, args.max_new_tokens * 2), temperature=0.7)
    return [t if t.strip() else None for t in out.texts]


def negative_is_valid(negative: str | None, positive: str, reference: str) -> bool:
    """Accept a rewrite only if it has a final answer and the rule verifier says that answer matches
    neither the positive's nor the reference (stricter than the paper's code, which checks the positive
    only and accepts an unparseable rewrite: either gap lets the RM be trained that a right answer is wrong)."""
    return (negative is not None and verify.extract_answer(negative) is not None
            and not verify.verify(negative, positive) and not verify.verify(negative, reference))


def choose_positive(correct: list[bool], mode: str, rng: random.Random) -> int | None:
    """Index of the positive inside one group: a random (paper) or the first (paper's code) correct
    rollout; None if none is correct (the prompt then gets no pair: mask 0).
    >>> choose_positive([False, True, True], "first", random.Random(0))
    1
    """
    idx = [i for i, c in enumerate(correct) if c]
    if not idx:
        return None
    return idx[0] if mode == "first" else rng.choice(idx)


def make_pairs(questions, references, texts, correct, group_size, args, rng, hf=None) -> dict:
    """Stage 2 data: per prompt one (positive, negative) pair and its mask m_i, with the reasons for m_i = 0."""
    B = len(questions)
    pos_idx = [choose_positive(correct[i * group_size:(i + 1) * group_size], args.positive, rng) for i in range(B)]
    positives = [texts[i * group_size + j] if j is not None else "" for i, j in enumerate(pos_idx)]
    negatives, mask = [""] * B, [0.0] * B
    todo = [i for i in range(B) if pos_idx[i] is not None]
    tries = 0
    while todo and tries < args.negative_tries:   # paper's code: at most 3 attempts, then masked
        tries += 1
        candidates = assistant_rewrites([questions[i] for i in todo], [positives[i] for i in todo], args, rng, hf)
        still = []
        for i, neg in zip(todo, candidates):
            if negative_is_valid(neg, positives[i], references[i]):
                negatives[i], mask[i] = neg.strip(), 1.0
            else:
                still.append(i)
        todo = still
    return {"positives": positives, "negatives": negatives, "mask": mask,
            "no_positive": sum(j is None for j in pos_idx), "no_negative": len(todo)}


# ----------------------------------------------------------------------------------------------------
# One Cooper step

def cooper_step(step, questions, references, policy, ref_policy, tokenizer, optimizer, scheduler,
                rm, rm_optimizer, args, rng, hf_assistant=None) -> dict:
    G = args.group_size
    t0 = time.time()
    # 1. Rollout: G samples per prompt; rows i*G .. i*G+G-1 belong to prompt i.
    prompts = [data.chat_prompt(tokenizer, q) for q in questions]
    rollouts = grpo.generate_rollouts(policy, tokenizer, prompts, G, args.max_new_tokens,
                                      temperature=args.temperature, top_p=args.top_p)
    q_rep = [q for q in questions for _ in range(G)]
    ref_rep = [r for r in references for _ in range(G)]
    correct = [verify.verify(text, ref) for text, ref in zip(rollouts.texts, ref_rep)]
    t_gen = time.time()

    # 2. Reward: the RM score only (the rule verdict is never added to it), or the rule alone.
    if args.reward == "rule":
        rewards = torch.tensor(correct, dtype=torch.float32)
    else:
        rewards = rm.score(q_rep, ref_rep, rollouts.texts).cpu()

    # 3. Log-probs of the sampled tokens under pi_old (= pi_theta before this update) and pi_ref.
    with torch.no_grad():
        old_logp = grpo.response_logprobs(policy, rollouts, temperature=args.temperature)
        ref_logp = grpo.response_logprobs(ref_policy, rollouts, temperature=args.temperature)

    # 4. Group-relative advantages.
    advantages = grpo.group_advantages(rewards, G).to(old_logp.device)

    # 5. Stage 2: reward-model update on (positive, negative) pairs - Cooper only; rm mode keeps it frozen.
    rm_stats = {"rm_loss": None, "valid_pairs": 0}
    if args.reward == "cooper":
        pairs = make_pairs(questions, references, rollouts.texts, correct, G, args, rng, hf_assistant)
        mask = torch.tensor(pairs["mask"])
        rm_stats.update(valid_pairs=int(mask.sum()), no_positive=pairs["no_positive"], no_negative=pairs["no_negative"])
        if mask.sum() > 0:
            rm.model.train()
            for _ in range(args.rm_steps):
                s_pos = rm.logits(questions, references, pairs["positives"])
                s_neg = rm.logits(questions, references, pairs["negatives"])
                loss = reward.pairwise_loss(s_pos, s_neg, mask.to(s_pos.device))
                grad_norm, stepped = reward.rm_step(rm.model, rm_optimizer, loss, args.max_grad_norm)
            rm_stats.update(rm_loss=loss.item(), rm_grad_norm=grad_norm, rm_skipped=not stepped)
    t_rm = time.time()

    # 6. Stage 1: policy update with the step-4 advantages (one epoch, one mini-batch: fully on-policy).
    policy.train()
    stats = grpo.policy_step(policy, optimizer, rollouts, advantages, old_logp, ref_logp, beta=args.beta,
                             max_grad_norm=args.max_grad_norm, micro_batch_size=args.micro_batch_size,
                             scheduler=scheduler, clip_low=args.clip_low, clip_high=args.clip_high,
                             dual_clip=args.dual_clip, agg=args.loss_agg, temperature=args.temperature)
    lengths = rollouts.response_mask.sum(1)
    return {"step": step, "reward_mean": rewards.mean().item(), "rule_acc": sum(correct) / len(correct),
            **{k: v for k, v in stats.items()}, **rm_stats,
            "zero_var_groups": grpo.zero_variance_groups(rewards, G), "response_len": lengths.float().mean().item(),
            "lr": optimizer.param_groups[0]["lr"],
            "time_generate": t_gen - t0, "time_rm": t_rm - t_gen, "time_step": time.time() - t0}


# ----------------------------------------------------------------------------------------------------
# Evaluation with the rule verifier

@torch.no_grad()
def evaluate(policy, tokenizer, records: list[dict], max_new_tokens: int, temperature: float = 0.0,
             batch_size: int = 128) -> float:
    """Mean rule-verified accuracy of one sample per problem (greedy when temperature == 0)."""
    policy.eval()
    hits = 0
    for i in range(0, len(records), batch_size):
        batch = records[i:i + batch_size]
        prompts = [data.chat_prompt(tokenizer, r["question"]) for r in batch]
        out = grpo.generate_rollouts(policy, tokenizer, prompts, 1, max_new_tokens, temperature=temperature)
        hits += sum(verify.verify(t, r["answer"]) for t, r in zip(out.texts, batch))
    return hits / max(len(records), 1)


class HackingMonitor:
    """Warns once when the reward paid exceeds the rule-verified accuracy of the same rollouts by more
    than `gap` for `patience` steps in a row: the signature of reward hacking (paper, Fig. 3)."""

    def __init__(self, gap: float, patience: int):
        self.gap, self.patience, self.run, self.warned = gap, patience, 0, False

    def update(self, step: int, reward_mean: float, rule_acc: float) -> float:
        excess = reward_mean - rule_acc
        self.run = self.run + 1 if excess > self.gap else 0
        if self.run >= self.patience and not self.warned:
            self.warned = True
            print(f"WARNING step {step}: reward hacking? the policy is paid {reward_mean:.2f} but only "
                  f"{rule_acc:.2f} of its rollouts are rule-verified correct, for {self.run} steps in a row",
                  file=sys.stderr)
        return excess


# ----------------------------------------------------------------------------------------------------
# The embedded toy start: tiny model, a deliberately imperfect supervised warm-up, VerifyRM pre-training

def sft_warmup(policy, tokenizer, records, steps, batch_size, lr, noise, rng) -> None:
    """Supervised warm-up on worked solutions, a fraction `noise` of them with a carried slip (the same
    perturbation the offline assistant uses), so that RL starts from a policy with room to improve."""
    from tqdm import tqdm
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
    policy.train()
    for _ in tqdm(range(steps), desc="SFT warm-up"):
        batch = rng.sample(records, batch_size)
        prompts = [data.chat_prompt(tokenizer, r["question"]) for r in batch]
        targets = [perturb_solution(r["solution"], rng) if rng.random() < noise else r["solution"] for r in batch]
        rollouts = rollouts_from_text(tokenizer, prompts, targets)
        logp = grpo.response_logprobs(policy, rollouts)
        loss = -(logp * rollouts.response_mask).sum() / rollouts.response_mask.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def rollouts_from_text(tokenizer, prompts: list[str], responses: list[str]) -> grpo.Rollouts:
    """Tokenise given (prompt, response) texts into the Rollouts layout, each response closed by EOS,
    so supervised targets go through the same log-prob code as sampled ones."""
    p = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    r = tokenizer([t + tokenizer.eos_token for t in responses], return_tensors="pt", padding=True,
                  padding_side="right", add_special_tokens=False)
    return grpo.Rollouts(p.input_ids, p.attention_mask, r.input_ids, r.attention_mask.float(), list(responses))


TOY_START = dict(sft_steps=600, rm_prompts=600)   # what `bash run.sh` uses
TEST_TOY = dict(sft_steps=150, rm_prompts=64)     # a smaller start for the end-to-end tests


def prepare_toy(toy_dir: str, sft_steps: int = TOY_START["sft_steps"], rm_prompts: int = TOY_START["rm_prompts"]) -> dict:
    """Build the embedded default start once (cached in toy_dir): returns its summary."""
    ready = os.path.join(toy_dir, "start.json")
    if os.path.exists(ready):
        with open(ready) as f:
            return json.load(f)
    from transformers import AutoModelForCausalLM
    t0 = time.time()
    rng = random.Random(TOY_TASK["seed"])
    torch.manual_seed(TOY_TASK["seed"])
    train, test = data.toy_splits(**TOY_TASK)
    init = os.path.join(toy_dir, "init")
    data.build_tiny_model(init, seed=TOY_TASK["seed"])
    tokenizer = data.load_tokenizer(os.path.join(init, "policy"))
    policy = AutoModelForCausalLM.from_pretrained(os.path.join(init, "policy"))
    sft_warmup(policy, tokenizer, train, steps=sft_steps, batch_size=32, lr=1e-3, noise=0.3, rng=rng)
    start_acc = evaluate(policy, tokenizer, test, TOY_DEFAULTS["max_new_tokens"])
    print(f"warm-up done: greedy test accuracy {start_acc:.3f}")

    # VerifyRM pre-training data, as in the paper's pipeline: completions written by the policy, labelled
    # by the rule verifier (on the toy it is exact, so it stands in for the hybrid rule + judge labels).
    prompts = train[:rm_prompts]
    out = grpo.generate_rollouts(policy, tokenizer, [data.chat_prompt(tokenizer, r["question"]) for r in prompts],
                                 4, TOY_DEFAULTS["max_new_tokens"], temperature=1.0)
    rows = [{"question": r["question"], "reference": r["answer"], "completion": t, "label": int(verify.verify(t, r["answer"]))}
            for r, t in zip([r for r in prompts for _ in range(4)], out.texts)]
    rm = reward.RewardModel.load(os.path.join(init, "reward"), max_length=TOY_DEFAULTS["rm_max_length"])
    fit, held = reward.split_holdout(rows, 0.1, TOY_TASK["seed"])
    reward.train_bce(rm, fit, epochs=3, lr=3e-4, batch_size=32, seed=TOY_TASK["seed"])
    rm_metrics = reward.evaluate(rm, held)
    print(f"VerifyRM pre-training: held-out {rm_metrics}")
    policy.save_pretrained(os.path.join(toy_dir, "policy"))
    tokenizer.save_pretrained(os.path.join(toy_dir, "policy"))
    rm.save(os.path.join(toy_dir, "reward"))
    summary = {"start_acc": start_acc, "rm_pretrain": rm_metrics, "rm_rows": len(rows),
               "rm_positive_rate": sum(r["label"] for r in rows) / len(rows), "seconds": round(time.time() - t0, 1)}
    with open(ready, "w") as f:
        json.dump(summary, f)
    return summary


# ----------------------------------------------------------------------------------------------------
# Main loop

def batch_for_step(records: list, step: int, batch_size: int, seed: int) -> list:
    """The prompts of one step: epoch-wise shuffles of the training set, a pure function of (step, seed)
    so that a resumed run sees exactly the prompts of an uninterrupted one."""
    per_epoch = len(records) // batch_size
    epoch, k = divmod(step, per_epoch)
    order = list(range(len(records)))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [records[i] for i in order[k * batch_size:(k + 1) * batch_size]]


def train(args) -> dict:
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    if args.policy:
        policy_path, rm_path = args.policy, args.reward_model
        load = dict(fmt="auto", question_field=args.question_field, answer_field=args.answer_field,
                    skip_bad=args.skip_bad_rows)
        try:
            train_set, test_set = data.load_records(args.train, **load), data.load_records(args.test, **load)
        except (OSError, ValueError) as err:   # a bad path or row: one line naming it, not a traceback
            raise SystemExit(f"error: {err}")
    else:
        start = prepare_toy(args.toy_dir)
        policy_path, rm_path = os.path.join(args.toy_dir, "policy"), os.path.join(args.toy_dir, "reward")
        train_set, test_set = data.toy_splits(**TOY_TASK)
        print(f"embedded toy task: {len(train_set)} train / {len(test_set)} test problems, start {start}")
    if len(train_set) < args.prompts_per_step:
        raise SystemExit(f"error: {args.train or 'toy'}: {len(train_set)} training rows < --prompts-per-step {args.prompts_per_step}")
    test_set = test_set[:args.eval_size]

    tokenizer = data.load_tokenizer(policy_path)
    policy = AutoModelForCausalLM.from_pretrained(policy_path).to(args.device)
    ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(args.warmup_steps, 1)))
    rm = rm_optimizer = None
    if args.reward != "rule":
        rm = reward.RewardModel.load(rm_path, max_length=args.rm_max_length)
        rm.model.to(args.device)
        if args.reward == "rm":
            rm.model.requires_grad_(False)
        rm_optimizer = torch.optim.AdamW(rm.model.parameters(), lr=args.rm_lr, weight_decay=args.rm_weight_decay)
    hf_assistant = None
    if args.reward == "cooper" and args.assistant == "hf":
        hf_assistant = (AutoModelForCausalLM.from_pretrained(args.assistant_model).to(args.device).eval(),
                        data.load_tokenizer(args.assistant_model))

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(vars(args), f, indent=1)
    log = open(os.path.join(args.out, "metrics.jsonl"), "w")
    monitor = HackingMonitor(args.hack_gap, args.hack_patience)
    start_acc = evaluate(policy, tokenizer, test_set, args.max_new_tokens)
    history, evals = [], [(0, start_acc)]
    print(f"[{args.reward}] step 0 test_acc {start_acc:.3f}")
    bar = tqdm(range(1, args.steps + 1), desc=f"cooper[{args.reward}]")
    for step in bar:
        batch = batch_for_step(train_set, step - 1, args.prompts_per_step, args.seed)
        m = cooper_step(step, [r["question"] for r in batch], [r["answer"] for r in batch], policy, ref_policy,
                        tokenizer, optimizer, scheduler, rm, rm_optimizer, args, rng, hf_assistant)
        m["hack_gap"] = monitor.update(step, m["reward_mean"], m["rule_acc"])
        if step % args.eval_every == 0 or step == args.steps:
            m["test_acc"] = evaluate(policy, tokenizer, test_set, args.max_new_tokens)
            evals.append((step, m["test_acc"]))
        if args.save_every and step % args.save_every == 0:
            save(args.out, policy, tokenizer, rm)
        history.append(m)
        log.write(json.dumps(m) + "\n")
        log.flush()
        bar.set_postfix(reward=f"{m['reward_mean']:.2f}", rule=f"{m['rule_acc']:.2f}", kl=f"{m['kl']:.3f}",
                        test=f"{evals[-1][1]:.2f}")
    log.close()
    save(args.out, policy, tokenizer, rm)
    last = history[-10:]
    summary = {"mode": args.reward, "seed": args.seed, "start_acc": start_acc, "final_acc": evals[-1][1],
               "best_acc": max(a for _, a in evals),
               "final_reward": sum(m["reward_mean"] for m in last) / len(last),
               "final_rule_acc": sum(m["rule_acc"] for m in last) / len(last),
               "final_kl": sum(m["kl"] for m in last) / len(last)}
    summary["hacked"] = summary["final_reward"] - summary["final_rule_acc"] > args.hack_gap
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    return summary


def save(out: str, policy, tokenizer, rm) -> None:
    policy.save_pretrained(os.path.join(out, "policy"))
    tokenizer.save_pretrained(os.path.join(out, "policy"))
    if rm is not None:
        rm.save(os.path.join(out, "reward"))


def table(run_dirs: list[str]) -> str:
    """A markdown table of the runs' summary.json files (last 10 steps averaged for reward and rule_acc)."""
    lines = ["| mode | seed | start acc | final acc | best acc | final reward | final rule acc | final KL | hacked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in run_dirs:
        with open(os.path.join(d, "summary.json")) as f:
            s = json.load(f)
        lines.append(f"| {s['mode']} | {s['seed']} | {s['start_acc']:.3f} | {s['final_acc']:.3f} | {s['best_acc']:.3f} | "
                     f"{s['final_reward']:.3f} | {s['final_rule_acc']:.3f} | {s['final_kl']:.4f} | {s['hacked']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    if sys.argv[1:2] == ["table"]:
        print(table(sys.argv[2:]))
    else:
        train(parse_args(sys.argv[1:]))
