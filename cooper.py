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
    python cooper.py eval --policy DIR/policy --data gsm8k:FILE math500:FILE --samples 8 --out eval.json
    torchrun --nproc_per_node 8 cooper.py ... [--rollout vllm]      # one node, data parallel (distributed.py)
    python cooper.py --resume runs/cooper                              # continue a run saved with --save-every N

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
import distributed
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
    assistant_concurrency=8, assistant_timeout=60.0, assistant_retries=3,
    rejected_negatives=False,   # beyond the paper (opt-in): also pair the positive with a rule-rejected rollout
    eval_every=20,          # test accuracy every N steps and at the last; 0: at the start and the last step only
    eval_size=256, save_every=0, hack_gap=0.25, hack_patience=10,
    rm_eval=None,           # labelled file (Cooper or VerifyBench format) scored every eval; the toy makes its own
    sample_every=10, sample_prompts=2, tensorboard=False,
    rollout="hf",           # hf (generate) | vllm (a vllm.LLM per rank, refreshed after each update)
    vllm_gpu_memory=0.3,    # the engine's share of device memory (weights + KV cache); training uses the rest
    resume=None,            # a run folder: continue from its latest checkpoint (written every --save-every steps)
    toy_dir="runs/toy", device="cuda" if torch.cuda.is_available() else "cpu",
)
TOY_DEFAULTS = dict(prompts_per_step=16, group_size=8, max_new_tokens=24, lr=1e-4, warmup_steps=0, beta=0.05,
                    rm_lr=1e-4, rm_steps=4, rm_max_length=256, eval_every=10)
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
    if args.resume:   # the run's saved config, overridden only by the flags given now
        try:
            with open(os.path.join(args.resume, "config.json")) as f:
                p.set_defaults(**{k: v for k, v in json.load(f).items() if k != "resume"})
        except (OSError, ValueError) as err:
            p.error(f"--resume {args.resume}: cannot read its config.json ({err})")
        args = p.parse_args(argv)
        args.out = args.resume
    for key in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "rm_steps", "eval_every", "eval_size",
                "save_every", "sample_every", "hack_patience", "negative_tries"):
        least = 0 if key in ("eval_every", "save_every", "sample_every") else 1
        if getattr(args, key) < least:
            p.error(f"--{key.replace('_', '-')} must be >= {least}, got {getattr(args, key)}")
    if args.rollout not in ("hf", "vllm"):
        p.error(f"--rollout must be hf or vllm, got {args.rollout!r}")
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


def assistant_rewrites(questions: list[str], solutions: list[str], args, rngs: list, hf=None) -> list:
    """One candidate negative per (question, solution); None where the backend gave nothing usable.
    rngs: one random.Random per prompt, so a prompt's rewrite does not depend on the other prompts."""
    if args.assistant == "perturb":
        return [perturb_solution(s, rng) for s, rng in zip(solutions, rngs)]
    conversations = [[{"role": "user", "content": NEGATIVE_PROMPT.format(question=q, solution=s)}]
                     for q, s in zip(questions, solutions)]
    # Paper's code: temperature 0.7, max_tokens = words(positive) + 500; capped here at twice the policy's own
    # budget, as a rewrite of about the positive's length needs no more (and a tiny policy's 24 tokens no 500).
    max_tokens = min(max(len(s.split()) for s in solutions) + 500, 2 * args.max_new_tokens)
    if args.assistant == "openai":
        replies, _ = reward.chat_completions(args.assistant_url, args.assistant_model, conversations,
                                             api_key=os.environ.get(args.assistant_key_env), max_tokens=max_tokens,
                                             concurrency=args.assistant_concurrency, timeout=args.assistant_timeout,
                                             retries=args.assistant_retries)
        return replies
    model, tok = hf
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    out = grpo.generate_rollouts(model, tok, prompts, 1, max_tokens, temperature=0.7)
    return [t if t.strip() else None for t in out.texts]


def negative_rejection(negative: str | None, positive: str, reference: str) -> str | None:
    """Why a rewrite cannot serve as the negative, or None when it can. It needs a final answer that the
    rule verifier says matches neither the positive's nor the reference (stricter than the paper's code,
    which checks the positive only and accepts an unparseable rewrite: either gap can teach the RM that a
    right answer is wrong, or that a missing answer is what makes a solution wrong).
    >>> negative_rejection("2+3=6\\n#### 6", "2+3=5\\n#### 5", "5") is None
    True
    """
    if negative is None:
        return "the assistant returned nothing"
    if verify.extract_answer(negative) is None:
        return "no final answer"
    if verify.verify(negative, positive):
        return "same answer as the positive"
    if verify.verify(negative, reference):
        return "same answer as the reference"
    return None


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


def make_pairs(questions, references, texts, correct, group_size, args, rngs, hf=None) -> dict:
    """Stage 2 data: per prompt one (positive, negative) pair and its mask m_i (0: no positive, or no
    accepted negative after --negative-tries attempts, as in the paper's code). With --rejected-negatives
    (not in the paper), `rejected[i]` is one of prompt i's rule-rejected rollouts, a second negative for
    its positive (None where there is no positive or no wrong rollout). `attempts[i]` lists
    (candidate, reason rejected or None) for prompt i, for the sample dumps. rngs: one random.Random per
    prompt (seeded from the prompt's place in the step, see distributed.py), for the positive and rewrite."""
    B = len(questions)
    pos_idx = [choose_positive(correct[i * group_size:(i + 1) * group_size], args.positive, rngs[i]) for i in range(B)]
    positives = [texts[i * group_size + j] if j is not None else "" for i, j in enumerate(pos_idx)]
    negatives, mask, attempts = [""] * B, [0.0] * B, [[] for _ in range(B)]
    todo = [i for i in range(B) if pos_idx[i] is not None]
    for _ in range(args.negative_tries):
        if not todo:
            break
        candidates = assistant_rewrites([questions[i] for i in todo], [positives[i] for i in todo], args,
                                        [rngs[i] for i in todo], hf)
        still = []
        for i, neg in zip(todo, candidates):
            reason = negative_rejection(neg, positives[i], references[i])
            attempts[i].append((neg, reason))
            if reason is None:
                negatives[i], mask[i] = neg, 1.0
            else:
                still.append(i)
        todo = still
    tried = [a for per_prompt in attempts for a in per_prompt]
    rejected = [None] * B
    if args.rejected_negatives:   # beyond the paper: sound only where the rule verifier is exact, as on the toy
        for i in range(B):
            wrong = [j for j in range(i * group_size, (i + 1) * group_size) if not correct[j]]
            if pos_idx[i] is not None and wrong:
                rejected[i] = texts[rngs[i].choice(wrong)]
    return {"positive_index": pos_idx, "positives": positives, "negatives": negatives, "mask": mask,
            "rejected": rejected,
            "attempts": attempts, "no_positive": sum(j is None for j in pos_idx), "no_negative": len(todo),
            "assistant_failed": sum(neg is None for neg, _ in tried),   # refused, timed out, garbled, empty
            "negatives_rejected": sum(neg is not None and why is not None for neg, why in tried)}


def pair_batch(questions, references, pairs) -> tuple:
    """L_RM's inputs (questions, references, positives, negatives, mask [P]): the valid pairs (m_i = 1), then
    one per --rejected-negatives pair, which join the same mean. Masked-out prompts add nothing to L_RM, so
    they are not run through the RM at all; a batch with no pair keeps one masked slot, so that every rank
    under torchrun still runs the RM's forward and backward (DDP all-reduces inside the backward).
    >>> pair_batch(["a", "b"], ["1", "2"], {"positives": ["", "b=2"], "negatives": ["", "b=3"], "mask": [0.0, 1.0],
    ...                                   "rejected": [None, "b=4"]})[2:]
    (['b=2', 'b=2'], ['b=3', 'b=4'], tensor([1., 1.]))
    """
    valid = [i for i, m in enumerate(pairs["mask"]) if m] or [0]
    extra = [i for i, r in enumerate(pairs["rejected"]) if r is not None]
    rows = valid + extra
    return ([questions[i] for i in rows], [references[i] for i in rows], [pairs["positives"][i] for i in rows],
            [pairs["negatives"][i] for i in valid] + [pairs["rejected"][i] for i in extra],
            torch.tensor([pairs["mask"][i] for i in valid] + [1.0] * len(extra)))


# ----------------------------------------------------------------------------------------------------
# One Cooper step

def cooper_step(step, questions, references, policy, ref_policy, tokenizer, optimizer, scheduler,
                rm, rm_optimizer, args, seeds, hf_assistant=None, policy_ddp=None, rm_ddp=None,
                llm=None) -> tuple[dict, dict]:
    """One training step over this rank's prompts. Returns (metrics for metrics.jsonl, the step's
    rollouts/rewards/pairs for dumps). seeds: one per prompt (distributed.derive_seed), for its rollouts and
    its pair; policy_ddp / rm_ddp: the DDP views that train under torchrun (None in one process);
    llm: the vLLM engine of --rollout vllm."""
    G = args.group_size
    t0 = time.time()
    # 1. Rollout: G samples per prompt; rows i*G .. i*G+G-1 belong to prompt i.
    prompts = [data.chat_prompt(tokenizer, q) for q in questions]
    if llm is not None:
        rollouts, engine_logp = distributed.vllm_rollouts(llm, tokenizer, prompts, G, seeds,
                                                          grpo._eos_ids(policy, tokenizer), args, args.device)
    else:
        rollouts, engine_logp = distributed.hf_rollouts(policy, tokenizer, prompts, G, seeds, args), None
    q_rep = [q for q in questions for _ in range(G)]
    ref_rep = [r for r in references for _ in range(G)]
    verdict = {pair: verify.verify(*pair) for pair in dict.fromkeys(zip(rollouts.texts, ref_rep))}   # repeats once
    correct = [verdict[pair] for pair in zip(rollouts.texts, ref_rep)]
    t_gen = time.time()

    # 2. Reward: the RM score only (the rule verdict is never added to it), or the rule alone.
    if args.reward == "rule":
        rewards = torch.tensor(correct, dtype=torch.float32)
    else:
        rewards = rm.score(q_rep, ref_rep, rollouts.texts).cpu()

    # 3. Log-probs of the sampled tokens under pi_ref. pi_old is pi_theta before this update: with one epoch
    #    of one mini-batch it equals the policy's own detached log-probs, so policy_step takes old_logp=None
    #    and saves a forward pass (the ratio is then exactly 1, as it is in verl with this setting).
    with torch.no_grad():
        ref_logp = grpo.response_logprobs(ref_policy, rollouts, temperature=args.temperature)

    # 4. Group-relative advantages.
    advantages = grpo.group_advantages(rewards, G).to(ref_logp.device)
    mask = rollouts.response_mask
    tokens, old_logp, gap = mask.sum().item(), None, {}
    if engine_logp is not None:   # the sampler's log-probs vs the trainer's, same tokens, same weights
        with torch.no_grad():
            old_logp = grpo.response_logprobs(policy, rollouts, temperature=args.temperature)
        gap["rollout_logp_gap"] = ((engine_logp - old_logp).abs() * mask).sum().item() / max(tokens, 1)

    # 5. Stage 2: reward-model update on (positive, negative) pairs - Cooper only; rm mode keeps it frozen.
    rm_stats, pairs = {"rm_loss": None, "valid_pairs": 0}, None
    if rm is not None:   # how well the RM separates the rule-verified rollouts it just scored (all ranks')
        m = reward.classification_metrics(distributed.all_gather(rewards),
                                          distributed.all_gather(torch.tensor(correct, dtype=torch.float32)))
        rm_stats.update(rm_acc_rollouts=m["acc"], rm_bacc_rollouts=m["balanced_acc"],
                        rm_precision_rollouts=m["precision"], rm_recall_rollouts=m["recall"])
    if args.reward == "cooper":
        pairs = make_pairs(questions, references, rollouts.texts, correct, G, args,
                           [random.Random(s) for s in seeds], hf_assistant)
        pair_q, pair_ref, pair_pos, pair_neg, pair_mask = pair_batch(questions, references, pairs)
        if args.rejected_negatives:
            rm_stats["rejected_pairs"] = sum(r is not None for r in pairs["rejected"])
        rm_stats.update(valid_pairs=int(pair_mask.sum()), **{k: pairs[k] for k in
                        ("no_positive", "no_negative", "assistant_failed", "negatives_rejected")})
        all_valid = distributed.all_reduce_sum([pair_mask.sum().item()])[0]   # over every rank's prompts
        if all_valid > 0:
            rm_train = rm_ddp or rm
            # this rank's share of L_RM's denominator (sum_i m_i + 1e-6): see distributed.py
            distributed.set_share(rm_ddp, pair_mask.sum().item() + 1e-6, all_valid + 1e-6)
            rm.model.train()
            n = len(pair_pos)
            for _ in range(args.rm_steps):   # positives and negatives in one forward: one DDP forward per backward
                s = rm_train.logits(pair_q * 2, pair_ref * 2, pair_pos + pair_neg)
                s_pos, s_neg = s[:n], s[n:]
                loss = reward.pairwise_loss(s_pos, s_neg, pair_mask.to(s_pos.device))
                grad_norm, stepped = reward.rm_step(rm_train.model, rm_optimizer, loss, args.max_grad_norm)
            rm_stats.update(rm_loss=loss.item(), rm_grad_norm=grad_norm, rm_skipped=not stepped)
    t_rm = time.time()

    # 6. Stage 1: policy update with the step-4 advantages (one epoch, one mini-batch: fully on-policy).
    # Under torchrun the loss denominator is the whole step's: every rank's tokens (or rollouts).
    local = tokens if args.loss_agg == "token-mean" else len(rollouts)
    distributed.set_share(policy_ddp, local, distributed.all_reduce_sum([local])[0])
    policy.train()
    stats = grpo.policy_step(policy_ddp or policy, optimizer, rollouts, advantages, old_logp, ref_logp, beta=args.beta,
                             max_grad_norm=args.max_grad_norm, micro_batch_size=args.micro_batch_size,
                             scheduler=scheduler, clip_low=args.clip_low, clip_high=args.clip_high,
                             dual_clip=args.dual_clip, agg=args.loss_agg, temperature=args.temperature)
    t_update = time.time()
    if llm is not None:
        distributed.sync_vllm_weights(llm, policy)   # the next rollouts come from the new weights
    lengths = rollouts.response_mask.sum(1)
    metrics = {"step": step, "reward_mean": rewards.mean().item(), "rule_acc": sum(correct) / len(correct),
               **stats, **rm_stats, **gap,
               "zero_var_groups": grpo.zero_variance_groups(rewards, G), "response_len": lengths.float().mean().item(),
               "rollouts": len(rollouts), "response_tokens": int(tokens), "lr": optimizer.param_groups[0]["lr"],
               "time_generate": t_gen - t0, "time_rm": t_rm - t_gen, "time_sync": time.time() - t_update,
               "time_step": time.time() - t0}
    details = {"prompts": prompts, "texts": rollouts.texts, "rewards": rewards.tolist(), "correct": correct,
               "advantages": advantages.tolist(), "pairs": pairs}
    return metrics, details


def sample_records(questions, references, details, group_size, n_prompts) -> list[dict]:
    """What the policy wrote and why it was paid, for the first n_prompts prompts of a step: each rollout
    with its reward, rule verdict and advantage; the positive, and every negative tried with its fate."""
    out, pairs = [], details["pairs"]
    for i in range(min(n_prompts, len(questions))):
        rows = range(i * group_size, (i + 1) * group_size)
        record = {"question": questions[i], "reference": references[i], "prompt": details["prompts"][i],
                  "rollouts": [{"text": details["texts"][j], "reward": round(details["rewards"][j], 4),
                                "correct": details["correct"][j], "advantage": round(details["advantages"][j], 4)}
                               for j in rows]}
        if pairs is not None:
            record["positive_index"] = pairs["positive_index"][i]
            record["negatives"] = [{"text": neg, "accepted": why is None, "rejected_because": why}
                                   for neg, why in pairs["attempts"][i]]
            if pairs["rejected"][i] is not None:
                record["rejected_negative"] = pairs["rejected"][i]
        out.append(record)
    return out


# ----------------------------------------------------------------------------------------------------
# Evaluation with the rule verifier

@torch.no_grad()
def evaluate(policy, tokenizer, records: list[dict], max_new_tokens: int, temperature: float = 0.0,
             batch_size: int = 128, seed: int = 0) -> float:
    """Mean rule-verified accuracy of one sample per problem (greedy when temperature == 0). Sampling draws from
    a random stream of its own (seed), which the training's is restored past: how often a run is evaluated must
    not change what it trains on."""
    policy.eval()
    hits = 0
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if next(policy.parameters()).is_cuda else []):
        torch.manual_seed(seed)
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

    def update(self, step: int, reward_mean: float, rule_acc: float) -> str | None:
        """The warning, on the one step it is raised; else None."""
        self.run = self.run + 1 if reward_mean - rule_acc > self.gap else 0
        if self.run < self.patience or self.warned:
            return None
        self.warned = True
        warning = (f"step {step}: reward hacking? the policy is paid {reward_mean:.2f} but only {rule_acc:.2f} of "
                   f"its rollouts are rule-verified correct, {self.run} steps in a row above a gap of {self.gap}")
        print("WARNING " + warning, file=sys.stderr)
        return warning


# ----------------------------------------------------------------------------------------------------
# The embedded toy start: tiny model, a deliberately imperfect supervised warm-up, VerifyRM pre-training

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


TOY_START = dict(sft_steps=600, rm_steps=600)   # what `bash run.sh` uses
TEST_TOY = dict(sft_steps=150, rm_steps=60)     # a smaller start for the end-to-end tests


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
    n_new = TOY_DEFAULTS["max_new_tokens"]
    init = os.path.join(toy_dir, "init")
    data.build_tiny_model(init, seed=TOY_TASK["seed"])
    tokenizer = data.load_tokenizer(os.path.join(init, "policy"))
    policy = AutoModelForCausalLM.from_pretrained(os.path.join(init, "policy"))
    sft_warmup(policy, tokenizer, train, steps=sft_steps, batch_size=32, lr=1e-3, noise=0.3, rng=rng)
    start_acc = evaluate(policy, tokenizer, test, n_new)
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
    rm = reward.RewardModel.load(os.path.join(toy_dir, "policy"), max_length=TOY_DEFAULTS["rm_max_length"])
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
    rank, world, args.device = distributed.init(args.device)   # (0, 1, device) without torchrun
    main = rank == 0                                             # logs, evaluates and saves
    share = distributed.rank_share(args.prompts_per_step, rank, world)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.policy:
        policy_path, rm_path = args.policy, args.reward_model
        load = dict(fmt="auto", question_field=args.question_field, answer_field=args.answer_field,
                    skip_bad=args.skip_bad_rows)
        try:
            train_set, test_set = data.load_records(args.train, **load), data.load_records(args.test, **load)
        except (OSError, ValueError) as err:   # a bad path or row: one line naming it, not a traceback
            raise SystemExit(f"error: {err}")
    else:
        if main:   # built by one rank; the others then read the cached start
            prepare_toy(args.toy_dir)
        distributed.barrier()
        start = prepare_toy(args.toy_dir)
        policy_path, rm_path = os.path.join(args.toy_dir, "policy"), os.path.join(args.toy_dir, "reward")
        train_set, test_set = data.toy_splits(**TOY_TASK)
        print(f"embedded toy task: {len(train_set)} train / {len(test_set)} test problems, start {start}")
    if len(train_set) < args.prompts_per_step:
        raise SystemExit(f"error: {args.train or 'toy'}: {len(train_set)} training rows < --prompts-per-step {args.prompts_per_step}")
    test_set = test_set[:args.eval_size]
    resume = distributed.load_checkpoint(args.out, rank) if args.resume else None

    tokenizer = data.load_tokenizer(policy_path)
    policy = AutoModelForCausalLM.from_pretrained(policy_path).to(args.device)
    ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)   # pi_ref is the start, also when resuming
    if resume:
        policy = AutoModelForCausalLM.from_pretrained(resume["policy"]).to(args.device)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(args.warmup_steps, 1)))
    rm = rm_optimizer = None
    if args.reward != "rule":
        rm = reward.RewardModel.load(resume["reward"] if resume else rm_path, max_length=args.rm_max_length)
        rm.model.to(args.device)
        if args.reward == "rm":
            rm.model.requires_grad_(False)
        rm_optimizer = torch.optim.AdamW(rm.model.parameters(), lr=args.rm_lr, weight_decay=args.rm_weight_decay)
    hf_assistant = None
    if args.reward == "cooper" and args.assistant == "hf":
        hf_assistant = (AutoModelForCausalLM.from_pretrained(args.assistant_model).to(args.device).eval(),
                        data.load_tokenizer(args.assistant_model))
    policy_ddp = distributed.wrap_ddp(policy, args.device)
    rm_ddp = distributed.ddp_reward_model(rm, args.device) if args.reward == "cooper" else None
    llm = None
    if args.rollout == "vllm":
        llm = distributed.vllm_engine(resume["policy"] if resume else policy_path, policy.dtype, args, world)

    rm_eval_rows = None
    if rm is not None:
        rm_eval_path = args.rm_eval or (None if args.policy else os.path.join(args.toy_dir, "rm_eval.jsonl"))
        rm_eval_rows = reward.read_labelled(rm_eval_path) if rm_eval_path else None

    monitor = HackingMonitor(args.hack_gap, args.hack_patience)
    history, first, dumps = [], 1, []
    if resume:
        t = resume["trainer"]
        optimizer.load_state_dict(t["optimizer"])
        scheduler.load_state_dict(t["scheduler"])
        if rm_optimizer is not None:
            rm_optimizer.load_state_dict(t["rm_optimizer"])
        monitor.__dict__.update(t["monitor"])
        start_acc, first = t["start_acc"], t["step"] + 1
        if main:   # what the run had logged up to its checkpoint (one metrics line per step); the rest is redone
            with open(os.path.join(args.out, "metrics.jsonl")) as f:
                history = [json.loads(line) for line in f.read().splitlines()[:first - 1]]
            with open(os.path.join(args.out, "samples.jsonl")) as f:   # [:-1]: a line cut by a kill has no newline
                dumps = [line for line in f.read().split("\n")[:-1] if json.loads(line)["step"] < first]
        if resume["rng"] is not None:
            distributed.set_rng_state(resume["rng"])
        print(f"[{args.reward}] resumed from {resume['folder']} at step {first}")
    elif main:
        start_acc = evaluate(policy, tokenizer, test_set, args.max_new_tokens)
        print(f"[{args.reward}] step 0 test_acc {start_acc:.3f}")
    if main:
        evals = [(0, start_acc)] + [(m["step"], m["test_acc"]) for m in history if "test_acc" in m]
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "config.json"), "w") as f:
            json.dump(vars(args), f, indent=1)
        log = open(os.path.join(args.out, "metrics.jsonl"), "w")
        log.writelines(json.dumps(m) + "\n" for m in history)
        samples = open(os.path.join(args.out, "samples.jsonl"), "w")
        samples.writelines(line + "\n" for line in dumps)
    board = None
    if args.tensorboard and main:
        from torch.utils.tensorboard import SummaryWriter   # optional: needs the tensorboard package
        board = SummaryWriter(os.path.join(args.out, "tensorboard"))
    bar = tqdm(range(first, args.steps + 1), desc=f"cooper[{args.reward}]", initial=first - 1, total=args.steps,
               disable=not main)
    for step in bar:
        batch = batch_for_step(train_set, step - 1, args.prompts_per_step, args.seed)[share]
        questions, references = [r["question"] for r in batch], [r["answer"] for r in batch]
        seeds = [distributed.derive_seed(args.seed, step, share.start + i) for i in range(len(batch))]
        m, details = cooper_step(step, questions, references, policy, ref_policy, tokenizer, optimizer, scheduler,
                                 rm, rm_optimizer, args, seeds, hf_assistant, policy_ddp, rm_ddp, llm)
        m = distributed.reduce_metrics(m, args.loss_agg)   # this rank's prompts -> the whole step's
        m["hack_gap"] = m["reward_mean"] - m["rule_acc"]
        warning = monitor.update(step, m["reward_mean"], m["rule_acc"]) if main else None
        if warning:
            m["hack_warning"] = warning
        if main and (args.eval_every and step % args.eval_every == 0 or step == args.steps):
            m["test_acc"] = evaluate(policy, tokenizer, test_set, args.max_new_tokens)
            m["test_acc_sampled"] = evaluate(policy, tokenizer, test_set, args.max_new_tokens, args.temperature,
                                             seed=args.seed)
            evals.append((step, m["test_acc"]))
            if rm_eval_rows:
                rm_m = reward.evaluate(rm, rm_eval_rows)
                m.update(rm_acc=rm_m["acc"], rm_bacc=rm_m["balanced_acc"], rm_precision=rm_m["precision"],
                         rm_recall=rm_m["recall"])
        if main and args.sample_every and (step % args.sample_every == 0 or step == 1):
            for record in sample_records(questions, references, details, args.group_size, args.sample_prompts):
                samples.write(json.dumps({"step": step, **record}) + "\n")
            samples.flush()
        if main:
            history.append(m)
            log.write(json.dumps(m) + "\n")
            log.flush()
            if board is not None:
                for k, v in m.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        board.add_scalar(k, v, step)
            bar.set_postfix(reward=f"{m['reward_mean']:.2f}", rule=f"{m['rule_acc']:.2f}", kl=f"{m['kl']:.3f}",
                            test=f"{evals[-1][1]:.2f}")
        if args.save_every and step % args.save_every == 0:   # everything --resume needs, after the step's logs
            trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "rm_optimizer": rm_optimizer.state_dict() if rm_optimizer else None,
                       "monitor": dict(monitor.__dict__), "start_acc": start_acc if main else None}
            distributed.save_checkpoint(args.out, step, policy, tokenizer, rm, trainer, rank)
    del policy_ddp, rm_ddp   # before the process group goes (distributed.finish)
    distributed.finish()
    if not main:
        return {}
    samples.close()
    if board is not None:
        board.close()
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
    report(args.out)   # here, not in a process of its own: the imports are paid, and runs side by side plot side by side
    print(json.dumps(summary))
    return summary


def save(out: str, policy, tokenizer, rm) -> None:
    policy.save_pretrained(os.path.join(out, "policy"))
    tokenizer.save_pretrained(os.path.join(out, "policy"))
    if rm is not None:
        rm.save(os.path.join(out, "reward"))


# ----------------------------------------------------------------------------------------------------
# Reading runs: a table, a one-run report (reward paid vs truth, KL, RM health), the multi-seed summary

def read_metrics(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def table(run_dirs: list[str]) -> str:
    """A markdown table of the runs' summary.json files (reward and rule acc: mean of the last 10 steps)."""
    lines = ["| mode | seed | start acc | final acc | best acc | final reward | final rule acc | final KL | hacked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in run_dirs:
        s = read_summary(d)
        lines.append(f"| {s['mode']} | {s['seed']} | {s['start_acc']:.3f} | {s['final_acc']:.3f} | {s['best_acc']:.3f} | "
                     f"{s['final_reward']:.3f} | {s['final_rule_acc']:.3f} | {s['final_kl']:.4f} | {s['hacked']} |")
    return "\n".join(lines)


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping steps where it is absent or null."""
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_report(rows: list[dict], config: dict, run_dir: str) -> None:
    """report.png: reward paid vs truth, KL, RM loss and accuracy, valid pairs, the monitor's gap."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("reward paid vs rule-verified accuracy", ["reward_mean", "rule_acc", "test_acc"]),
              ("KL to the reference policy", ["kl"]), ("reward-model pairwise loss", ["rm_loss"]),
              ("reward-model balanced accuracy", ["rm_bacc", "rm_bacc_rollouts"]),
              ("valid pairs per step", ["valid_pairs"]),
              ("reward paid - rule accuracy", ["hack_gap"])]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            x, y = series(rows, key)
            if y:
                ax.plot(x, y, "o-" if key in ("test_acc", "rm_bacc") else "-", label=key, lw=1.2, ms=3)
        if title.startswith("reward paid -"):
            ax.axhline(config["hack_gap"], color="red", ls="--", lw=0.8, label="monitor threshold")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"{run_dir}  (--reward {config['reward']}, seed {config['seed']})")
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "report.png"), dpi=80)
    plt.close(fig)


def report(run_dir: str) -> str:
    """Write report.md and report.png for one run from its metrics.jsonl; returns the markdown. Without
    matplotlib (a vLLM environment may lack it) report.md alone, and one line that says so: a run that trained
    for hours must not fail at its last line for want of a plot."""
    rows = read_metrics(run_dir)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    try:
        plot_report(rows, config, run_dir)
        picture = ["![report](report.png)", ""]
    except ImportError as err:
        print(f"report: {err.name} is not installed, so {run_dir}/report.png was not drawn (pip install matplotlib)",
              file=sys.stderr)
        picture = []

    def at(key, which):
        _, y = series(rows, key)
        return f"{y[which]:.3f}" if y else "-"
    keys = ["reward_mean", "rule_acc", "test_acc", "kl", "rm_loss", "rm_bacc", "rm_bacc_rollouts", "valid_pairs"]
    lines = [f"# Run report: {run_dir}", "", f"`--reward {config['reward']}`, seed {config['seed']}, {len(rows)} steps.", "",
             "| metric | first | last |", "|---|---|---|"]
    lines += [f"| {k} | {at(k, 0)} | {at(k, -1)} |" for k in keys]
    warnings = [r["hack_warning"] for r in rows if r.get("hack_warning")]
    lines += ["", "## Hacking monitor", ""] + ([f"- WARNING {w}" for w in warnings] or ["No warning."])
    lines += [""] + picture
    text = "\n".join(lines)
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write(text)
    return text


def summarize_reproduction(root: str, modes=("rule", "rm", "cooper")) -> str:
    """results.json, results.md and curves.png from root/<mode>/seed<k>/ runs (bash run.sh reproduce)."""
    import statistics
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = ["seed", "start_acc", "final_acc", "best_acc", "final_reward", "final_rule_acc", "final_kl", "hacked"]
    runs = {m: sorted((os.path.join(root, m, d) for d in os.listdir(os.path.join(root, m))
                       if os.path.exists(os.path.join(root, m, d, "summary.json"))))
            for m in modes if os.path.isdir(os.path.join(root, m))}
    results = {m: [{k: read_summary(d)[k] for k in keys} for d in dirs] for m, dirs in runs.items()}
    with open(os.path.join(root, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    def mean_sd(values):
        return f"{statistics.mean(values):.3f} +- {statistics.stdev(values) if len(values) > 1 else 0:.3f}"
    lines = ["| mode | seeds | start acc | final acc | best acc | final reward | final rule acc | final KL | hacked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, rs in results.items():
        cells = [mean_sd([float(r[k]) for r in rs]) for k in keys[1:-1]]
        lines.append(f"| {m} | {len(rs)} | " + " | ".join(cells) + f" | {sum(r['hacked'] for r in rs)}/{len(rs)} |")
    text = "\n".join(lines)
    with open(os.path.join(root, "results.md"), "w") as f:
        f.write(text + "\n")

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), sharey=True, squeeze=False)
    for ax, (m, dirs) in zip(axes[0], runs.items()):
        all_rows = [read_metrics(d) for d in dirs]
        for key, label in (("reward_mean", "reward paid"), ("rule_acc", "rule-verified accuracy (rollouts)"),
                           ("test_acc", "test accuracy (greedy)")):
            per_run = [dict(zip(*series(rows, key))) for rows in all_rows]
            if key == "test_acc":   # the curve starts at the shared start
                for p, d in zip(per_run, dirs):
                    p[0] = read_summary(d)["start_acc"]
            steps = sorted(set.intersection(*(set(p) for p in per_run)))
            ax.plot(steps, [statistics.mean(p[s] for p in per_run) for s in steps],
                    "o-" if key == "test_acc" else "-", label=label, ms=3, lw=1.2)
        ax.set_title(f"--reward {m} (mean of {len(dirs)} seeds)")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(root, "curves.png"), dpi=80)
    plt.close(fig)
    return text


# ----------------------------------------------------------------------------------------------------
# Benchmark evaluation in the paper's protocol: k samples per problem at temperature 0.7, top-p 0.95;
# accuracy = the rule verdict averaged over every sample of every problem (avg@k), per dataset.

def parse_eval_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cooper.py eval", description="benchmark accuracy of a policy, paper protocol")
    p.add_argument("--policy", required=True, help="HF model folder (a trained run's DIR/policy)")
    p.add_argument("--data", nargs="+", required=True, metavar="NAME:FILE",
                   help="e.g. gsm8k:../shared/data/gsm8k/test.jsonl math500:../shared/data/math500/test.jsonl")
    p.add_argument("--samples", type=int, default=8, help="k samples per problem")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--limit", type=int, default=None, help="the first N problems of each file")
    p.add_argument("--batch-size", type=int, default=16, help="problems per HF generate call (x samples rows)")
    p.add_argument("--backend", choices=["auto", "hf", "vllm"], default="auto",
                   help="auto: vLLM when it is installed and a GPU is present, HF generate otherwise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    args.datasets = []
    for spec in args.data:
        name, sep, path = spec.partition(":")
        if not (sep and name and path):
            p.error(f"--data expects NAME:FILE, got {spec!r}")
        args.datasets.append((name, path))
    if args.samples < 1:
        p.error(f"--samples must be >= 1, got {args.samples}")
    return args


def sample_hf(policy_path: str, prompts: list[str], k: int, args) -> list[list[str]]:
    """k sampled completions per chat-formatted prompt with HF generate (grpo.generate_rollouts)."""
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM
    tokenizer = data.load_tokenizer(policy_path)
    model = AutoModelForCausalLM.from_pretrained(policy_path).to(args.device).eval()
    out = []
    for i in tqdm(range(0, len(prompts), args.batch_size), desc=f"sampling {len(prompts)} x {k}"):
        texts = grpo.generate_rollouts(model, tokenizer, prompts[i:i + args.batch_size], k, args.max_new_tokens,
                                       temperature=args.temperature, top_p=args.top_p).texts
        out += [texts[j:j + k] for j in range(0, len(texts), k)]
    return out


def sample_vllm(policy_path: str, prompts: list[str], k: int, args) -> list[list[str]]:
    """The same with vLLM. Prompts go in as token ids, tokenised as in HF (add_special_tokens=False), so a
    tokenizer that adds BOS does not get a second one in front of the chat template's."""
    from vllm import LLM, SamplingParams
    tokenizer = data.load_tokenizer(policy_path)
    llm = LLM(model=policy_path, seed=args.seed)
    params = SamplingParams(n=k, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_new_tokens,
                            seed=args.seed)
    ids = [{"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
    return [[o.text for o in result.outputs] for result in llm.generate(ids, params, use_tqdm=True)]


def benchmark_eval(args) -> dict:
    """Per dataset: problems, mean accuracy over k samples (the paper's metric), pass@k, and the share of
    samples with no final answer the verifier can read (a format problem, not a wrong answer)."""
    import importlib.util
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    try:
        datasets = [(name, path, data.load_records(path)[:args.limit]) for name, path in args.datasets]
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    backend = args.backend
    if backend == "auto":
        backend = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"
    tokenizer = data.load_tokenizer(args.policy)
    results = {}
    for name, path, records in datasets:
        t0 = time.time()
        prompts = [data.chat_prompt(tokenizer, r["question"]) for r in records]
        sample = sample_vllm if backend == "vllm" else sample_hf
        completions = sample(args.policy, prompts, args.samples, args)
        correct = [[verify.verify(c, r["answer"]) for c in cs] for r, cs in zip(records, completions, strict=True)]
        flat = [c for cs in completions for c in cs]
        results[name] = {"file": path, "problems": len(records), "samples": args.samples,
                         "accuracy": sum(map(sum, correct)) / (len(records) * args.samples),   # avg@k
                         "pass_at_k": sum(any(c) for c in correct) / len(records),
                         "no_answer": sum(verify.extract_answer(c) is None for c in flat) / len(flat),
                         "seconds": round(time.time() - t0, 1),
                         "correct_per_problem": [sum(c) for c in correct],
                         "example": {"question": records[0]["question"], "answer": records[0]["answer"],
                                     "completion": completions[0][0]}}
    summary = {"policy": args.policy, "backend": backend, "samples": args.samples, "temperature": args.temperature,
               "top_p": args.top_p, "max_new_tokens": args.max_new_tokens, "seed": args.seed, "datasets": results,
               "average_accuracy": sum(r["accuracy"] for r in results.values()) / len(results)}
    print(eval_table(summary))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(summary, f, indent=1)
    return summary


def eval_table(summary: dict) -> str:
    k = summary["samples"]
    lines = [f"| dataset | problems | mean acc (%, {k} samples) | pass@{k} (%) | no final answer (%) |",
             "|---|---|---|---|---|"]
    for name, r in summary["datasets"].items():
        lines.append(f"| {name} | {r['problems']} | {100 * r['accuracy']:.2f} | {100 * r['pass_at_k']:.2f} | "
                     f"{100 * r['no_answer']:.2f} |")
    lines.append(f"| average | | {100 * summary['average_accuracy']:.2f} | | |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    command, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("train", argv)
    if command == "train":
        train(parse_args(rest))
    elif command == "prepare":                 # build the embedded toy start (cached)
        print(json.dumps(prepare_toy(rest[0] if rest else DEFAULTS["toy_dir"])))
    elif command == "table":
        print(table(rest))
    elif command == "report":
        for run_dir in rest:
            print(report(run_dir))
    elif command == "summarize":
        print(summarize_reproduction(rest[0]))
    elif command == "eval":                    # benchmark accuracy, paper protocol
        benchmark_eval(parse_eval_args(rest))
    else:
        raise SystemExit(f"error: unknown command {command!r}: use train (the default), prepare, table, report, summarize, eval")


if __name__ == "__main__":
    main(sys.argv[1:])
