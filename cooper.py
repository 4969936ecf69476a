"""Cooper: co-optimising the policy and the reward model (arXiv 2508.05613), one training file, top to bottom.

Each training step, over the same B x G rollouts (cooper_step):
  1. rollout   sample G responses per prompt from pi_theta
  2. reward    r_i = sigmoid(s_phi(q, ref, o_i))          (--reward rm | cooper; --reward rule: r_i = verify(o_i, ref))
  3. log-probs pi_ref of the sampled tokens (pi_old = pi_theta: one epoch, one mini-batch)
  4. advantage A_i = (r_i - mean(r)) / (std(r) + 1e-6)  per group of G
  5. stage 2   reward-model update (--reward cooper only): positive = a rule-verified correct rollout, negative =
               the assistant's plausible wrong rewrite of it; L_RM = -mean_valid log sigmoid(s+ - s-)
  6. stage 1   policy update: PPO-clip with dual clip + beta * k3 KL to pi_ref, token-mean
The step-t RM update first affects rewards at step t+1, as in the paper's code.

    python cooper.py --reward cooper --steps 150 --seed 0 --out runs/cooper     # embedded toy task + tiny model
    python cooper.py --reward cooper --policy PATH --reward-model PATH --train FILE --test FILE --out DIR
    torchrun --nproc_per_node 8 cooper.py ... [--rollout vllm]      # data parallel (distributed.py)
    python cooper.py --resume runs/cooper                              # continue a run saved with --save-every N
    python cooper.py --help                                            # every flag, its default and its meaning

Where each equation lives: advantages, PPO loss and KL in grpo.py; VerifyRM's template, L_BCE and L_RM in
reward.py; the rule verifier in verify.py; the pairing rules and the assistant below. Every flag is a field of
config.Config; the embedded toy start is toy.py, evaluation evaluate.py, run reports report.py, torchrun/FSDP/vLLM/
checkpoint plumbing distributed.py.
"""
import copy
import dataclasses
import json
import math
import os
import random
import sys
import time

import torch

import annotate
import data
import distributed
import evaluate
import grpo
import report
import reward
import toy
import verify
from config import Config, autocast, compute_dtype, parse_args
from distributed import Mean, Sum

# ----------------------------------------------------------------------------------------------------
# ALGO LOGIC - stage 2's data: the assistant rewrites a correct solution into a plausible wrong one

NEGATIVE_PROMPT = """Below is a math problem and a correct solution to it.
Write a new solution of about the same length and in the same style that looks just as careful but \
contains a reasoning or calculation mistake, so that it ends with a different, wrong final answer, \
given in the same format as the original. Reply with the new solution only, no comments.

Problem:
{question}

Correct solution:
{solution}"""


def assistant_rewrites(questions: list[str], solutions: list[str], rngs: list, cfg: Config,
                       hf=None) -> tuple[list, dict]:
    """One candidate negative per (question, solution), None where the backend gave nothing usable, and the
    requests' counts (annotate.chat_completions' for openai: ok, refused, error, timeout, truncated, ...).
    rngs: one random.Random per prompt, so a prompt's rewrite does not depend on the other prompts.
    hf: (model, tokenizer) of --assistant hf."""
    if cfg.assistant == "perturb":
        return [toy.miscalculate(s, rng) for s, rng in zip(solutions, rngs)], {"ok": len(solutions)}
    conversations = [[{"role": "user", "content": NEGATIVE_PROMPT.format(question=q, solution=s)}]
                     for q, s in zip(questions, solutions)]
    # Paper's code: temperature 0.7, max_tokens = words(positive) + 500; capped here at twice the policy's own
    # budget, as a rewrite of about the positive's length needs no more (and a tiny policy's 24 tokens no 500).
    max_tokens = min(max(len(s.split()) for s in solutions) + 500, 2 * cfg.max_new_tokens)
    if cfg.assistant == "openai":
        return annotate.chat_completions(cfg.assistant_url, cfg.assistant_model, conversations,
                                         api_key=os.environ.get(cfg.assistant_key_env), max_tokens=max_tokens,
                                         concurrency=cfg.assistant_concurrency, timeout=cfg.assistant_timeout,
                                         retries=cfg.assistant_retries)
    model, tok = hf
    prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    texts = grpo.generate_rollouts(model, tok, prompts, 1, max_tokens, temperature=0.7).texts
    replies = [t if t.strip() else None for t in texts]
    return replies, {"ok": sum(r is not None for r in replies), "empty": sum(r is None for r in replies)}


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


def make_pairs(questions, references, texts, correct, group_size: int, rewrite, rngs, positive="random",
               tries=3, rejected_negatives=False) -> dict:
    """Stage 2 data: per prompt one (positive, negative) pair and its mask m_i (0: no positive, or no accepted
    negative after `tries` rewrites, as in the paper's code). rewrite: the assistant (assistant_rewrites); rngs:
    one random.Random per prompt, for its positive and rewrite. `rejected[i]` (rejected_negatives, not in the
    paper): one of prompt i's rule-rejected rollouts, a second negative. `attempts[i]`: (candidate, why rejected
    or None), for the sample dumps; `requests`: the assistant's counts summed."""
    B = len(questions)
    pos_idx = [choose_positive(correct[i * group_size:(i + 1) * group_size], positive, rngs[i]) for i in range(B)]
    positives = [texts[i * group_size + j] if j is not None else "" for i, j in enumerate(pos_idx)]
    negatives, mask, attempts, requests = [""] * B, [0.0] * B, [[] for _ in range(B)], {}
    todo = [i for i in range(B) if pos_idx[i] is not None]
    for _ in range(tries):
        if not todo:
            break
        candidates, counts = rewrite([questions[i] for i in todo], [positives[i] for i in todo], [rngs[i] for i in todo])
        for k, v in counts.items():
            requests[k] = v if k == "last_error" else requests.get(k, 0) + v
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
    if rejected_negatives:   # beyond the paper: sound only where the rule verifier is exact, as on the toy
        for i in range(B):
            wrong = [j for j in range(i * group_size, (i + 1) * group_size) if not correct[j]]
            if pos_idx[i] is not None and wrong:
                rejected[i] = texts[rngs[i].choice(wrong)]
    return {"positive_index": pos_idx, "positives": positives, "negatives": negatives, "mask": mask,
            "rejected": rejected, "attempts": attempts, "requests": requests,
            "no_positive": sum(j is None for j in pos_idx), "no_negative": len(todo),
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


def update_reward_model(questions, references, texts, correct, rm, rewrite, cfg: Config, seeds) -> tuple[dict, dict]:
    """Stage 2: this rank's (positive, negative) pairs from the step's rollouts, then --rm-steps L_RM updates on
    every rank's pairs together. Returns (pairs, metrics); no valid pair anywhere: no update (rm_loss None)."""
    pairs = make_pairs(questions, references, texts, correct, cfg.group_size, rewrite,
                       [random.Random(s) for s in seeds], cfg.positive, cfg.negative_tries, cfg.rejected_negatives)
    pair_q, pair_ref, pair_pos, pair_neg, pair_mask = pair_batch(questions, references, pairs)
    n_valid, asked = pair_mask.sum().item(), pairs["requests"]
    m = {"rm_loss": None, "valid_pairs": Sum(n_valid), "rejected_pairs": Sum(sum(r is not None for r in pairs["rejected"])),
         **{k: Sum(pairs[k]) for k in ("no_positive", "no_negative", "assistant_failed", "negatives_rejected")},
         "assistant_requests": Sum(sum(v for k, v in asked.items() if k in REQUEST_OUTCOMES)),
         "assistant_ok": Sum(asked.get("ok", 0))}
    failed = {k: v for k, v in asked.items() if k in REQUEST_OUTCOMES and k != "ok" and v}
    if failed:   # this rank's breakdown and the server's own words, for the log and broken_part
        m.update(assistant_failures=failed, assistant_last_error=asked.get("last_error"))
    all_valid = distributed.all_reduce_sum([n_valid])[0]   # over every rank's prompts
    if all_valid > 0:   # this rank's share of L_RM's denominator (sum_i m_i + 1e-6): see distributed.py
        scale = distributed.set_share(rm.trains, n_valid + 1e-6, all_valid + 1e-6)
        with distributed.sharded(rm.trains):
            stats = reward.rm_update(rm.trains, rm.optimizer, pair_q, pair_ref, pair_pos, pair_neg, pair_mask,
                                     cfg.rm_steps, cfg.max_grad_norm, loss_scale=scale)
        m.update(rm_loss=Mean(stats["rm_loss"], n_valid), rm_grad_norm=stats["rm_grad_norm"],
                 rm_skipped=stats["rm_skipped"])
    return pairs, m


REQUEST_OUTCOMES = ("ok", "refused", "error", "garbled", "empty", "timeout", "truncated")


# ----------------------------------------------------------------------------------------------------
# ALGO LOGIC - one Cooper step

@dataclasses.dataclass
class Policy:
    """pi_theta and what trains it. `trains` is the module the loss runs through: DDP(model) under torchrun,
    the model itself in one process; `model` is always the bare model (generate, save)."""
    model: torch.nn.Module
    trains: torch.nn.Module
    ref: torch.nn.Module          # pi_ref: the start, frozen
    tokenizer: object
    optimizer: torch.optim.Optimizer
    scheduler: object


@dataclasses.dataclass
class RewardModel:
    """VerifyRM and what trains it (--reward rm: frozen, no optimizer); `trains`, as for Policy."""
    rm: reward.RewardModel
    trains: reward.RewardModel
    optimizer: torch.optim.Optimizer | None


def cooper_step(step: int, questions: list, references: list, policy: Policy, rm: RewardModel | None, rewrite,
                cfg: Config, seeds: list, llm=None) -> tuple[dict, dict]:
    """One training step over this rank's prompts. Returns (metrics, the step's rollouts/rewards/pairs for the
    sample dumps). Metrics are distributed.Mean / Sum where each rank holds a part (reduce_metrics combines
    them), plain values where every rank has the same. seeds: one per prompt (distributed.derive_seed), for its
    rollouts and its pair; rewrite: the assistant (make_pairs); llm: the vLLM engine of --rollout vllm."""
    G = cfg.group_size
    t0 = time.time()
    # 1. Rollout: G samples per prompt; rows i*G .. i*G+G-1 belong to prompt i.
    prompts = [data.chat_prompt(policy.tokenizer, q) for q in questions]
    if llm is None:
        with autocast(cfg):
            rollouts = distributed.hf_rollouts(policy.model, policy.tokenizer, prompts, G, seeds, cfg.max_new_tokens,
                                               cfg.temperature, cfg.top_p)
        engine_logp = None
    else:
        rollouts, engine_logp = distributed.vllm_rollouts(llm, policy.tokenizer, prompts, G, seeds,
                                                          grpo.eos_ids(policy.model, policy.tokenizer),
                                                          cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.device)
    q_rep = [q for q in questions for _ in range(G)]
    ref_rep = [r for r in references for _ in range(G)]
    verdict = {pair: verify.verify(*pair) for pair in dict.fromkeys(zip(rollouts.texts, ref_rep))}   # repeats once
    correct = [verdict[pair] for pair in zip(rollouts.texts, ref_rep)]
    t_gen = time.time()

    # 2. Reward: the RM score only (the rule verdict is never added to it), or the rule alone.
    if cfg.reward == "rule":
        rewards = torch.tensor(correct, dtype=torch.float32)
    else:
        rewards = rm.rm.score(q_rep, ref_rep, rollouts.texts).cpu()

    # 3. Log-probs of the sampled tokens under pi_ref. pi_old is pi_theta before this update: with one epoch
    #    of one mini-batch it equals the policy's own detached log-probs, so policy_step takes old_logp=None
    #    and saves a forward pass (the ratio is then exactly 1, as it is in verl with this setting).
    with torch.no_grad(), autocast(cfg):   # --micro-batch-size rows at a time: [rows, T, vocab] logits are big
        ref_logp = grpo.response_logprobs(policy.ref, rollouts, cfg.temperature, batch_size=cfg.micro_batch_size)

    # 4. Group-relative advantages.
    advantages = grpo.group_advantages(rewards, G).to(ref_logp.device)
    mask = rollouts.response_mask
    tokens, old_logp, extra = mask.sum().item(), None, {}
    if engine_logp is not None:   # the sampler's log-probs vs the trainer's, same tokens, same weights
        with torch.no_grad(), autocast(cfg):
            old_logp = grpo.response_logprobs(policy.model, rollouts, cfg.temperature, batch_size=cfg.micro_batch_size)
        extra["rollout_logp_gap"] = Mean(((engine_logp - old_logp).abs() * mask).sum().item() / max(tokens, 1), tokens)

    # 5. Stage 2: reward-model update on (positive, negative) pairs - Cooper only; rm mode keeps it frozen.
    pairs = None
    if rm is not None and torch.isfinite(rewards).all():   # how well the RM separates the rollouts it just scored
        m = reward.classification_metrics(distributed.all_gather(rewards),
                                          distributed.all_gather(torch.tensor(correct, dtype=torch.float32)))
        extra.update({f"rm_{k}_rollouts": m[name] for k, name in
                      (("acc", "acc"), ("bacc", "balanced_acc"), ("precision", "precision"), ("recall", "recall"))})
    if cfg.reward == "cooper":
        pairs, rm_metrics = update_reward_model(questions, references, rollouts.texts, correct, rm, rewrite, cfg, seeds)
        extra.update(rm_metrics)
    t_rm = time.time()

    # 6. Stage 1: policy update with the step-4 advantages (one epoch, one mini-batch: fully on-policy).
    # Under torchrun the loss denominator is the whole step's: every rank's tokens (or rollouts).
    local = tokens if cfg.loss_agg == "token-mean" else len(rollouts)
    scale = distributed.set_share(policy.trains, local, distributed.all_reduce_sum([local])[0])
    policy.model.train()
    with autocast(cfg), distributed.sharded(policy.trains):   # backward runs outside autocast's region as recorded
        stats = grpo.policy_step(policy.trains, policy.optimizer, rollouts, advantages, old_logp, ref_logp, beta=cfg.beta,
                                 max_grad_norm=cfg.max_grad_norm, micro_batch_size=cfg.micro_batch_size,
                                 scheduler=policy.scheduler, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                                 dual_clip=cfg.dual_clip, agg=cfg.loss_agg, temperature=cfg.temperature,
                                 loss_scale=scale)
    t_update = time.time()
    if llm is not None:
        distributed.sync_vllm_weights(llm, policy.model)   # the next rollouts come from the new weights
    n = len(rollouts)
    metrics = {"step": step, "reward_mean": Mean(rewards.mean().item(), n), "rule_acc": Mean(sum(correct) / n, n),
               **{k: Mean(v, local if k in ("loss", "pg_loss") else tokens) for k, v in stats.items()
                  if k not in ("grad_norm", "skipped")},
               "grad_norm": stats["grad_norm"], "skipped": stats["skipped"], **extra,
               "zero_var_groups": Sum(grpo.zero_variance_groups(rewards, G)),
               "response_len": Mean(rollouts.response_mask.sum(1).float().mean().item(), n),
               "rollouts": Sum(n), "response_tokens": Sum(tokens), "lr": policy.optimizer.param_groups[0]["lr"],
               "time_generate": t_gen - t0, "time_rm": t_rm - t_gen, "time_sync": time.time() - t_update,
               "time_step": time.time() - t0, **distributed.peak_memory(cfg.device)}
    details = {"prompts": prompts, "texts": rollouts.texts, "rewards": rewards.tolist(), "correct": correct,
               "advantages": advantages.tolist(), "pairs": pairs}
    return metrics, details


def broken_part(m: dict) -> str | None:
    """What a step's (reduced) metrics say is broken, or None. A run with a broken part does not do what it was
    asked - Cooper without negatives is the frozen-RM run - so --halt-after such steps in a row stop it."""
    if m.get("assistant_requests") and not m.get("assistant_ok"):
        return (f"the assistant answered none of its {m['assistant_requests']} requests ({m.get('assistant_failures')}; "
                f"last error: {m.get('assistant_last_error')})")
    if not math.isfinite(m["reward_mean"]):
        return "the rewards are not finite (the reward model scores NaN or inf)"
    if m["skipped"]:
        return f"the policy's gradient norm is {m['grad_norm']}: its update was skipped"
    return None


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
# PLUMBING - setup: data, models, optimizers, the assistant

def load_task(cfg: Config, main: bool) -> tuple[list, list, str, str, str | None]:
    """(train records, test records, policy folder, VerifyRM folder, rm_eval file) of --policy/--train/--test,
    or of the embedded toy start (built by rank 0 once and cached in --toy-dir)."""
    if cfg.policy:
        load = dict(question_field=cfg.question_field, answer_field=cfg.answer_field, skip_bad=cfg.skip_bad_rows)
        try:
            train_set, test_set = data.load_records(cfg.train, **load), data.load_records(cfg.test, **load)
        except (OSError, ValueError) as err:   # a bad path or row: one line naming it, not a traceback
            raise SystemExit(f"error: {err}")
        paths = cfg.policy, cfg.reward_model, cfg.rm_eval
    else:
        try:   # a folder holding another seed's start, or an older toy.py's: one line naming it
            if main:
                toy.prepare_toy(cfg.toy_dir)
            distributed.barrier()
            start = toy.prepare_toy(cfg.toy_dir)
        except ValueError as err:
            raise SystemExit(f"error: {err}")
        train_set, test_set = data.toy_splits(**toy.TOY_TASK)
        shown = {k: v for k, v in start.items() if not k.endswith("_trace")}
        print(f"embedded toy task: {len(train_set)} train / {len(test_set)} test problems, start {shown}")
        paths = (os.path.join(cfg.toy_dir, "policy"), os.path.join(cfg.toy_dir, "reward"),
                 cfg.rm_eval or os.path.join(cfg.toy_dir, "rm_eval.jsonl"))
    if len(train_set) < cfg.prompts_per_step:
        raise SystemExit(f"error: {cfg.train or 'toy'}: {len(train_set)} training rows < --prompts-per-step "
                         f"{cfg.prompts_per_step}")
    return train_set, test_set[:cfg.eval_size], *paths


def build_policy(cfg: Config, path: str, resume: dict | None) -> Policy:
    """pi_theta in fp32 master weights whatever the checkpoint's dtype (from the checkpoint when resuming), pi_ref
    (always the start, in the compute dtype: it is never trained), AdamW with linear warm-up."""
    tokenizer = data.load_tokenizer(path)
    model = data.load_causal_lm(path, dtype=torch.float32).to(cfg.device)
    ref = copy.deepcopy(model).to(compute_dtype(cfg)).eval().requires_grad_(False)   # also when resuming
    if resume:
        model = data.load_causal_lm(resume["policy"], dtype=torch.float32).to(cfg.device)
    if cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)   # the name since transformers 5.24
        enable() if enable else model.gradient_checkpointing_enable({"use_reentrant": False})
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)))
    return Policy(model, model, ref, tokenizer, optimizer, scheduler)


def build_reward_model(cfg: Config, path: str, resume: dict | None) -> RewardModel | None:
    """VerifyRM (--reward rm: frozen; cooper: with its AdamW), or None for --reward rule."""
    if cfg.reward == "rule":
        return None
    rm = reward.RewardModel.load(resume["reward"] if resume else path, compute_dtype=compute_dtype(cfg),
                                 gradient_checkpointing=cfg.gradient_checkpointing, max_length=cfg.rm_max_length)
    rm.model.to(cfg.device)
    if cfg.reward == "rm":
        rm.model.requires_grad_(False)
    optimizer = torch.optim.AdamW(rm.model.parameters(), lr=cfg.rm_lr, weight_decay=cfg.rm_weight_decay)
    return RewardModel(rm, rm, optimizer)


def make_assistant(cfg: Config):
    """rewrite(questions, solutions, rngs) -> (candidates, counts): the assistant as make_pairs calls it."""
    hf = None
    if cfg.reward == "cooper" and cfg.assistant == "hf":
        hf = (data.load_causal_lm(cfg.assistant_model, dtype=compute_dtype(cfg)).to(cfg.device).eval(),
              data.load_tokenizer(cfg.assistant_model))
    return lambda questions, solutions, rngs: assistant_rewrites(questions, solutions, rngs, cfg, hf)


def save(out: str, policy: Policy, rm: RewardModel | None, dtype: torch.dtype = torch.float32) -> None:
    """OUT/policy and OUT/reward: the trained weights, or (dtype bf16) a rounded export; the models are unchanged."""
    state = {k: v.to(dtype) for k, v in policy.model.state_dict().items()}
    policy.model.save_pretrained(os.path.join(out, "policy"), state_dict=state)
    policy.tokenizer.save_pretrained(os.path.join(out, "policy"))
    if rm is not None:
        rm.rm.save(os.path.join(out, "reward"), dtype=dtype)


# ----------------------------------------------------------------------------------------------------
# The training run

def train(cfg: Config) -> dict:
    """Set up, then cfg.steps Cooper steps: log each, evaluate every --eval-every, checkpoint every --save-every.
    Returns the run's summary (rank 0; {} on other ranks)."""
    from tqdm import tqdm
    rank, world, cfg.device = distributed.init(cfg.device)   # (0, 1, device) without torchrun
    main = rank == 0                                           # logs, evaluates and saves
    share = distributed.rank_share(cfg.prompts_per_step, rank, world)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_set, test_set, policy_path, rm_path, rm_eval_path = load_task(cfg, main)
    resume = distributed.load_checkpoint(cfg.out, rank) if cfg.resume else None
    try:   # a wrong path, a folder that is no model, a checkpoint without its head: one line naming it
        policy = build_policy(cfg, policy_path, resume)
        rm = build_reward_model(cfg, rm_path, resume)
        rewrite = make_assistant(cfg)
        rm_eval = reward.read_labelled(rm_eval_path) if rm is not None and rm_eval_path else None
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    if cfg.fsdp:   # sharded in place, the optimizers pointed at the shards (distributed.py)
        policy.trains = distributed.wrap_fsdp(policy.model, policy.optimizer, compute_dtype(cfg), cfg.device) or policy.model
    else:
        policy.trains = distributed.wrap_ddp(policy.model, cfg.device) or policy.model
    if cfg.reward == "cooper":
        rm.trains = ((distributed.fsdp_reward_model(rm.rm, rm.optimizer, compute_dtype(cfg), cfg.device) if cfg.fsdp
                      else distributed.ddp_reward_model(rm.rm, cfg.device)) or rm.rm)
    if main:
        print(distributed.memory_line(policy.model.config, rm.rm.model.config if rm is not None else None, world,
                                      cfg.fsdp and world > 1, compute_dtype(cfg), cfg.reward == "cooper",
                                      cfg.assistant_model if cfg.reward == "cooper" and cfg.assistant == "hf" else None))
    llm = None
    if cfg.rollout == "vllm":
        llm = distributed.vllm_engine(resume["policy"] if resume else policy_path, compute_dtype(cfg), cfg.seed,
                                      cfg.vllm_gpu_memory, cfg.device, world)
    monitor = HackingMonitor(cfg.hack_gap, cfg.hack_patience)

    first = 1
    if resume:
        t = resume["trainer"]
        distributed.load_optimizer_state(policy.model, policy.optimizer, t["optimizer"])
        policy.scheduler.load_state_dict(t["scheduler"])
        if rm is not None and rm.optimizer is not None:
            distributed.load_optimizer_state(rm.rm.model, rm.optimizer, t["rm_optimizer"])
        monitor.__dict__.update(t["monitor"])
        start_acc, first = t["start_acc"], t["step"] + 1
        if resume["rng"] is not None:
            distributed.set_rng_state(resume["rng"])
        print(f"[{cfg.reward}] resumed from {resume['folder']} at step {first}")
    elif main:
        start_acc = evaluate.rule_accuracy(policy.model, policy.tokenizer, test_set, cfg.max_new_tokens)
        print(f"[{cfg.reward}] step 0 test_acc {start_acc:.3f}")
    log = report.RunLog(cfg.out, dataclasses.asdict(cfg), main, first, cfg.tensorboard)
    evals = [(0, start_acc)] + [(m["step"], m["test_acc"]) for m in log.history if "test_acc" in m] if main else []

    bad_steps = 0
    bar = tqdm(range(first, cfg.steps + 1), desc=f"cooper[{cfg.reward}]", initial=first - 1, total=cfg.steps,
               disable=not main)
    for step in bar:
        batch = data.batch_for_step(train_set, step - 1, cfg.prompts_per_step, cfg.seed)[share]
        questions, references = [r["question"] for r in batch], [r["answer"] for r in batch]
        seeds = [distributed.derive_seed(cfg.seed, step, share.start + i) for i in range(len(batch))]
        m, details = cooper_step(step, questions, references, policy, rm, rewrite, cfg, seeds, llm)
        m = distributed.reduce_metrics(m)   # this rank's prompts -> the whole step's
        m["hack_gap"] = m["reward_mean"] - m["rule_acc"]
        warning = monitor.update(step, m["reward_mean"], m["rule_acc"]) if main else None
        if warning:
            m["hack_warning"] = warning
        if main and (cfg.eval_every and step % cfg.eval_every == 0 or step == cfg.steps):
            m["test_acc"] = evaluate.rule_accuracy(policy.model, policy.tokenizer, test_set, cfg.max_new_tokens)
            m["test_acc_sampled"] = evaluate.rule_accuracy(policy.model, policy.tokenizer, test_set,
                                                           cfg.max_new_tokens, cfg.temperature, seed=cfg.seed)
            evals.append((step, m["test_acc"]))
            if rm_eval:
                rm_m = reward.evaluate(rm.rm, rm_eval)
                m.update(rm_acc=rm_m["acc"], rm_bacc=rm_m["balanced_acc"], rm_precision=rm_m["precision"],
                         rm_recall=rm_m["recall"])
        dump = main and cfg.sample_every and (step % cfg.sample_every == 0 or step == 1)
        log.step(m, report.sample_records(questions, references, details, cfg.group_size, cfg.sample_prompts) if dump else [])
        if main:
            bar.set_postfix(reward=f"{m['reward_mean']:.2f}", rule=f"{m['rule_acc']:.2f}", kl=f"{m['kl']:.3f}",
                            test=f"{evals[-1][1]:.2f}")
        problem = broken_part(m)   # the same on every rank: it reads reduced metrics
        if problem or m.get("assistant_requests", 1):   # a step that asked the assistant nothing says nothing of it
            bad_steps = bad_steps + 1 if problem else 0
        if problem and bad_steps == 1 and main:
            print(f"WARNING step {step}: {problem}", file=sys.stderr)
        if bad_steps >= cfg.halt_after:
            log.close()
            raise SystemExit(f"error: step {step}: {problem}; {bad_steps} steps in a row (--halt-after "
                             f"{cfg.halt_after}), so the run stops. Its log so far: {cfg.out}/metrics.jsonl")
        if cfg.save_every and step % cfg.save_every == 0:   # everything --resume needs, after the step's logs
            trainer = {"optimizer": distributed.optimizer_state(policy.model, policy.optimizer),
                       "scheduler": policy.scheduler.state_dict(),
                       "rm_optimizer": distributed.optimizer_state(rm.rm.model, rm.optimizer)
                       if rm is not None and rm.optimizer else None,
                       "monitor": dict(monitor.__dict__), "start_acc": start_acc if main else None}
            distributed.save_checkpoint(cfg.out, step, policy.model, policy.tokenizer, rm and rm.rm, trainer, rank)
    policy.model = distributed.gathered(policy.model)   # FSDP: the full weights onto rank 0, for save() below
    if rm is not None:
        rm.rm.model = distributed.gathered(rm.rm.model)
    policy.trains = None   # the DDP wrappers go before the process group does (distributed.finish)
    if rm is not None:
        rm.trains = None
    distributed.finish()
    if not main:
        return {}
    log.close()
    save(cfg.out, policy, rm, torch.bfloat16 if cfg.save_dtype == "bf16" else torch.float32)
    summary = report.run_summary(cfg.reward, cfg.seed, cfg.hack_gap, log.history, evals)
    with open(os.path.join(cfg.out, "summary.json"), "w") as f:
        json.dump(report.json_safe(summary), f, indent=1)
    report.report(cfg.out)   # here, not in a process of its own: the imports are paid, runs side by side plot side by side
    print(json.dumps(report.json_safe(summary)))
    return summary


if __name__ == "__main__":
    train(parse_args(sys.argv[1:]))
