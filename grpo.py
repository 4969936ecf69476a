"""GRPO, Cooper's stage 1: rollouts, per-token log-probs, group advantages, PPO-clip loss, k3 KL, one update.

Equations (arXiv 2508.05613 and its released code; B prompts, G rollouts o_1..o_G each, response tokens t):

    A_i      = (r_i - mean_j r_j) / (std_j r_j + 1e-6)        std unbiased (N-1); broadcast to every token of o_i
    rho_i,t  = exp(clamp(log pi_theta(o_i,t) - log pi_old(o_i,t), -20, 20))
    l1_i,t   = max(-A_i rho_i,t, -A_i clip(rho_i,t, 1 - 0.2, 1 + 0.2))
    l_i,t    = min(l1_i,t, -3 A_i)   if A_i < 0 (dual clip)   else l1_i,t
    d_i,t    = clamp(log pi_ref(o_i,t) - log pi_theta(o_i,t), -20, 20)
    kl_i,t   = clamp(exp(d_i,t) - d_i,t - 1, -10, 10)        (k3, "low_var_kl")
    L        = token-mean(l) + beta token-mean(kl),  beta = 0.001
    one epoch, one mini-batch per step (fully on-policy: pi_old = pi_theta at the step's start), grad clip 1.0.

Against the two implementations readers know (test_grpo.py checks every row to 1e-6 on fixtures, and runs
TRL's own _compute_loss when trl is installed). verl = volcengine/verl core_algos.py @ 012be9d; TRL = trl 1.16.0.
| what                      | grpo.py (paper defaults)          | verl                              | TRL 1.16.0 GRPOTrainer             |
|---------------------------|-----------------------------------|-----------------------------------|------------------------------------|
| advantage std             | unbiased (N-1)                    | unbiased (torch.std)              | unbiased (nanstd, Bessel)          |
| advantage eps             | 1e-6 (eps=)                       | 1e-6                              | 1e-4                               |
| std scaling off           | scale_std=False                   | norm_adv_by_std_in_grpo=False     | scale_rewards="none" ("batch" too) |
| zero-variance group       | exactly 0, counted                | (r-mean)/(0+eps): rounding noise  | same as verl                       |
|                           | (zero_variance_groups)            | x 1e6 if rewards are not exact    | (x 1e4), logged via isclose        |
| group of one              | ValueError                        | mean 0, std 1: A = r/(1+eps)      | A = 0 (std set to 0)               |
| log-ratio clamp +-20      | yes                               | yes                               | no                                 |
| asymmetric clip           | clip_low, clip_high               | clip_ratio_low, clip_ratio_high   | epsilon, epsilon_high              |
| dual clip, A<0: min(l,-cA)| c=3 (dual_clip=None: off)         | clip_ratio_c=3                    | none (delta= caps rho, both signs) |
| KL estimator              | k3, d and kl clamped (+-20, +-10) | low_var_kl: same                  | k3, no clamps, times rho by default|
|                           |                                   |                                   | (use_bias_correction_kl); beta=0.0 |
| KL in the loss            | + beta agg(kl)                    | + kl_coef agg(kl), same agg       | + beta kl per token, then agg: same|
| token-mean                | over all tokens of the batch,     | masked_mean (+1e-8) per call      | "dapo" (its default; global token  |
|                           | also across micro-batches         |                                   | count), "bnpo" (per micro-batch)   |
| seq-mean-token-mean       | mean_i(sum_t l / |o_i|)           | same                              | "grpo"                             |
| seq-mean-token-sum-norm   | sum / (N * T)  (Dr. GRPO)         | sum / T  (no 1/N: N times ours)   | "dr_grpo": sum / (N * max_len)     |
| masked NaN/inf            | torch.where: never leaks          | x * mask (NaN leaks)              | x * mask (NaN leaks)               |

Pure math (group_advantages, ppo_clip_loss, k3_kl, aggregate, grpo_loss) takes plain tensors, so it can be
copied into any trainer. generate_rollouts / response_logprobs / policy_step wrap a Hugging Face causal LM.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


@dataclass
class Rollouts:
    """N = B*G sampled responses; rows i*G .. i*G+G-1 belong to prompt i.

    prompt_ids    [N, P] left-padded        prompt_mask   [N, P] 1 = real prompt token
    response_ids  [N, T] pad after 1st EOS  response_mask [N, T] float, 1 up to AND including the first EOS
    e.g. response "4 2 <eos> <pad>" -> response_mask [1, 1, 1, 0]: the EOS is trained once, padding never.
    """
    prompt_ids: torch.LongTensor
    prompt_mask: torch.LongTensor
    response_ids: torch.LongTensor
    response_mask: torch.FloatTensor
    texts: list

    @property
    def input_ids(self):
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self):
        return torch.cat([self.prompt_mask, self.response_mask.to(self.prompt_mask.dtype)], dim=1)

    def __len__(self):
        return self.response_ids.shape[0]

    def __getitem__(self, rows):
        """rollouts[a:b] or rollouts[[i, j, ...]] -> the same rows of every field."""
        texts = self.texts[rows] if isinstance(rows, slice) else [self.texts[i] for i in rows]
        return Rollouts(self.prompt_ids[rows], self.prompt_mask[rows], self.response_ids[rows],
                        self.response_mask[rows], texts)


def eos_ids(model, tokenizer) -> list:
    """Every id that ends a response: the tokenizer's EOS plus the generation config's (may be a list)."""
    ids = {tokenizer.eos_token_id}
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(cfg_eos) if isinstance(cfg_eos, (list, tuple)) else {cfg_eos}
    ids.discard(None)
    if not ids:
        raise ValueError("grpo.py: tokenizer has no eos_token_id and model.generation_config has none")
    return sorted(ids)


def response_mask_after_eos(response_ids: torch.Tensor, eos_ids: list) -> torch.Tensor:
    """[N, T] float mask: 1 up to and including the first EOS, 0 after; all 1 if no EOS (truncated).

    e.g. eos=9: [[5, 9, 9, 0]] -> [[1, 1, 0, 0]];  [[5, 6, 7, 8]] -> [[1, 1, 1, 1]]
    """
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device))
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # EOS tokens strictly before position t
    return (eos_before == 0).float()


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only, as HF generate does: [0, 0, 1, 1, 0] mask -> [0, 0, 0, 1, 1]."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def _distinct_rows(rollouts: Rollouts) -> tuple[list, torch.Tensor]:
    """(keep, copy_of): the first row of each distinct (prompt, response), in order, and for every row the
    place of its copy in keep. Rows [a, b, a, c] -> keep [0, 1, 3], copy_of [0, 1, 0, 2]."""
    rows = [tuple(r) for r in torch.cat([rollouts.prompt_ids, rollouts.prompt_mask, rollouts.response_ids,
                                         rollouts.response_mask.long()], dim=1).tolist()]
    place, keep = {}, []
    for i, row in enumerate(rows):
        if row not in place:
            place[row] = len(keep)
            keep.append(i)
    return keep, torch.tensor([place[row] for row in rows])


def _shared_prefix(model, ids, mask):
    """Run each distinct prefix once and copy its KV cache to every row that shares it.

    The G rows of a group share their prompt, so the prompt costs 1/G of a plain batched forward (with
    prompts of 100 tokens, responses of 30 and G=8 that is 2/3 of all forward FLOPs saved). Rows are
    deduplicated where they repeat consecutively: rows [q1, q1, q2, q2] -> run [q1, q2], cache index [0, 0, 1, 1].
    Differentiable: the copies are index ops, so gradients from all G rows sum into the shared prompt.
    Returns (cache for every row, logits at the last prefix position [N, V]).
    """
    starts = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)
    starts[1:] = (ids[1:] != ids[:-1]).any(dim=1) | (mask[1:] != mask[:-1]).any(dim=1)
    first, copy_of = starts.nonzero().squeeze(1), starts.cumsum(dim=0) - 1
    out = model(input_ids=ids[first], attention_mask=mask[first], position_ids=_positions(mask[first]),
                use_cache=True, logits_to_keep=1)
    out.past_key_values.batch_select_indices(copy_of)
    return out.past_key_values, out.logits[:, -1][copy_of]


@torch.no_grad()
def generate_rollouts(model, tokenizer, prompts: list, group_size: int, max_new_tokens: int,
                      temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None) -> Rollouts:
    """Sample group_size responses per (already chat-formatted) prompt with HF generate, left padding.

    prompts ["q1", "q2"], group_size 2 -> 4 rows: q1, q1, q2, q2. Greedy when temperature == 0.
    Sampling is the plain softmax(logits / temperature) with top-p: top-k and repetition penalty are switched
    off explicitly, because a model's own generation_config (e.g. Qwen2.5-Instruct's top_k=20) would make the
    sampling distribution differ from the pi_old that response_logprobs computes.
    """
    if group_size < 1 or max_new_tokens < 1:
        raise ValueError(f"grpo.py: group_size={group_size} and max_new_tokens={max_new_tokens} must be >= 1")
    eos = eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the last column, so prompts end there
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    device = next(model.parameters()).device
    prompt_ids = enc["input_ids"].repeat_interleave(group_size, dim=0).to(device)
    prompt_mask = enc["attention_mask"].repeat_interleave(group_size, dim=0).to(device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    was_training = model.training
    model.eval()
    n, width = prompt_ids.shape
    step = batch_size or n
    chunks = []
    for s in range(0, n, step):
        ids, mask = prompt_ids[s:s + step], prompt_mask[s:s + step]
        # all prompt tokens but the last go through the cache once per distinct prompt; generate runs the last
        cache = _shared_prefix(model, ids[:, :-1], mask[:, :-1])[0] if width > 1 else None
        out = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, max_new_tokens=max_new_tokens,
                             eos_token_id=eos, pad_token_id=pad_id, top_k=0, repetition_penalty=1.0, **sampling)
        chunks.append(out[:, width:])
    model.train(was_training)
    longest = max(c.shape[1] for c in chunks)  # batches stop at different lengths: right-pad to one T
    response_ids = torch.cat([F.pad(c, (0, longest - c.shape[1]), value=pad_id) for c in chunks])
    response_mask = response_mask_after_eos(response_ids, eos)
    response_ids = torch.where(response_mask.bool(), response_ids, pad_id)
    texts = [tokenizer.decode(ids[m.bool()], skip_special_tokens=True) for ids, m in zip(response_ids, response_mask)]
    return Rollouts(prompt_ids, prompt_mask, response_ids, response_mask, texts)


def rollouts_from_text(tokenizer, prompts: list[str], responses: list[str]) -> Rollouts:
    """Tokenise given (prompt, response) texts into the Rollouts layout, each response closed by EOS, so
    supervised targets (a warm-up, a benchmark's fixed completions) go through the same log-prob code as samples."""
    p = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    r = tokenizer([t + tokenizer.eos_token for t in responses], return_tensors="pt", padding=True,
                  padding_side="right", add_special_tokens=False)
    return Rollouts(p.input_ids, p.attention_mask, r.input_ids, r.attention_mask.float(), list(responses))


def response_logprobs(model, rollouts: Rollouts, temperature: float = 1.0, batch_size: int | None = None) -> torch.Tensor:
    """[N, T] log pi(o_t | prompt, o_<t) with logits / temperature, for response positions only.

    Position P-1+t predicts response token t: the prompt pass (once per distinct prompt, _shared_prefix)
    gives the logits for t = 0, the response pass on top of its cache those for t = 1..T-1. position_ids
    count real tokens only, as generate does: RoPE is shift-invariant anyway, absolute position embeddings
    are not, and then left padding would change the numbers.
    A row repeated token for token (a group often repeats a short answer) is run once and copied: the copy is
    an index op, so under grad the gradient of every copy reaches the weights, summed, as with a pass of its own.
    Differentiable when called under grad; batch_size bounds memory under no_grad.
    """
    keep, copy_of = _distinct_rows(rollouts)
    repeats = len(keep) < len(rollouts)
    if repeats:
        rollouts = rollouts[keep]
    step = batch_size or len(rollouts)
    # transformers turns the KV cache off while it recomputes activations (gradient checkpointing in training):
    # then one forward over prompt + response instead of the shared-prefix cache
    bare = getattr(model, "module", model)
    checkpointed = getattr(bare, "is_activation_checkpointing", None)   # the name since transformers 5.24
    if checkpointed is None:
        checkpointed = getattr(bare, "is_gradient_checkpointing", False)
    no_cache = bare.training and checkpointed
    out = []
    for s in range(0, len(rollouts), step):
        part = rollouts[s:s + step]
        if no_cache:   # position P-1+t of prompt + response[:-1] predicts response token t
            mask, P = part.attention_mask, part.prompt_ids.shape[1]
            logits = model(input_ids=part.input_ids[:, :-1], attention_mask=mask[:, :-1],
                           position_ids=_positions(mask)[:, :-1], use_cache=False).logits[:, P - 1:]
        else:
            cache, first_logits = _shared_prefix(model, part.prompt_ids, part.prompt_mask)
            logits = first_logits.unsqueeze(1)
            if part.response_ids.shape[1] > 1:
                mask = part.attention_mask
                rest = model(input_ids=part.response_ids[:, :-1], attention_mask=mask[:, :-1], past_key_values=cache,
                             position_ids=_positions(mask)[:, part.prompt_ids.shape[1]:-1], use_cache=True).logits
                logits = torch.cat([logits, rest], dim=1)
        logits = logits.float() / temperature
        # log softmax at the taken token = logit - logsumexp, without materialising [N, T, V] log-probs
        taken = logits.gather(-1, part.response_ids.unsqueeze(-1)).squeeze(-1)
        out.append(taken - torch.logsumexp(logits, dim=-1))
    logp = torch.cat(out)
    return logp[copy_of.to(logp.device)] if repeats else logp


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6, scale_std: bool = True) -> torch.Tensor:
    """[B*G] -> [B*G]: A_i = (r_i - mean(group)) / (std(group) + eps), std unbiased (N-1) as verl and the paper.

    rewards [1, 0, 0, 1], G=4: mean 0.5, std sqrt(1/3)=0.5774 -> [+0.8660, -0.8660, -0.8660, +0.8660].
    scale_std=False gives Dr. GRPO's r_i - mean. A group whose rewards are all equal gets exactly 0.
    """
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"grpo.py: {rewards.numel()} rewards do not split into groups of group_size={group_size} >= 2")
    r = rewards.float().view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)  # r_i - mean_j r_j
    adv = centred / (r.std(dim=1, keepdim=True) + eps) if scale_std else centred  # / (std_j r_j + eps)
    flat = (r == r[:, :1]).all(dim=1, keepdim=True)  # zero variance: exact 0, not rounding noise
    return torch.where(flat, torch.zeros_like(adv), adv).view(-1)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> int:
    """Groups whose G rewards are all equal: no learning signal. [1,1,0,1, 0,0,0,0], G=4 -> 1."""
    r = rewards.view(-1, group_size)
    return int((r == r[:, :1]).all(dim=1).sum())


def ppo_clip_loss(logp, old_logp, advantages, clip_low=0.2, clip_high=0.2, dual_clip=3.0) -> torch.Tensor:
    """[N, T] per-token clipped surrogate loss; advantages [N] (broadcast over tokens) or [N, T].

    A=+1, rho=1.5 -> max(-1.5, -1.2) = -1.2 (clipped: no push beyond 1+eps)
    A=-1, rho=0.5 -> max(0.5, 0.8) = 0.8;  A=-1, rho=5 -> min(max(5, 1.2), 3) = 3 (dual clip caps the loss)
    dual_clip=None switches the dual clip off (TRL's loss).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(torch.clamp(logp - old_logp, -20.0, 20.0))  # rho = exp(clamp(logp - logp_old, -20, 20))
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    loss = torch.maximum(-advantages * ratio, -advantages * clipped)  # l1 = max(-A rho, -A clip(rho))
    if dual_clip is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -dual_clip * advantages), loss)  # A<0: min(l1, -c A)
    return loss


def k3_kl(logp, ref_logp) -> torch.Tensor:
    """[N, T] k3 estimator of KL(pi_theta || pi_ref), verl's "low_var_kl".

    d = ref - logp: d=0 -> 0; d=1 -> e - 2 = 0.71828; d=-1 -> 1/e = 0.36788. Always >= 0, unbiased.
    """
    d = torch.clamp(ref_logp - logp, -20.0, 20.0)  # d = clamp(log pi_ref - log pi_theta, -20, 20)
    return torch.clamp(torch.exp(d) - d - 1, -10.0, 10.0)  # kl = clamp(exp(d) - d - 1, -10, 10)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean") -> torch.Tensor:
    """[N, T] per-token values -> scalar, over mask == 1 only.

    x = [[1, 2, 3], [4, 0, 0]], mask = [[1, 1, 1], [1, 0, 0]]:
      token-mean               (1+2+3+4) / 4 tokens            = 2.5   (paper, verl default)
      seq-mean-token-mean      mean(6/3, 4/1)                  = 3.0   (original GRPO)
      seq-mean-token-sum-norm  mean(6/3, 4/3), /T, T = 3       = 1.6667 (Dr. GRPO, constant length norm)
    """
    x = torch.where(mask > 0, per_token, torch.zeros_like(per_token))  # NaN/inf behind the mask never leaks
    mask = mask.to(x.dtype)
    if mode == "token-mean":
        return x.sum() / mask.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        return (x.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    if mode == "seq-mean-token-sum-norm":
        return (x.sum(dim=1) / mask.shape[1]).mean()
    raise ValueError(f"grpo.py: unknown aggregation mode {mode!r}; choose one of {AGG_MODES}")


def grpo_loss(logp, old_logp, ref_logp, advantages, mask, beta=0.001, clip_low=0.2, clip_high=0.2,
              dual_clip=3.0, agg="token-mean") -> tuple:
    """L = agg(l) + beta * agg(kl) on [N, T] tensors; returns (loss, stats of floats).

    ref_logp may be None when beta == 0. Stats: pg_loss, kl, clip_frac (tokens where the clip bound is
    active), dual_clip_frac, ratio_mean, all token means over the mask.
    """
    pg = ppo_clip_loss(logp, old_logp, advantages, clip_low, clip_high, dual_clip)
    pg_loss = aggregate(pg, mask, agg)
    kl = k3_kl(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    kl_loss = aggregate(kl, mask, agg)
    loss = pg_loss + beta * kl_loss  # L = agg(l) + beta agg(kl)
    with torch.no_grad():
        adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
        ratio = torch.exp(torch.clamp(logp - old_logp, -20.0, 20.0))
        unclipped = -adv * ratio
        clipped = -adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
        dual = (adv < 0) & (torch.maximum(unclipped, clipped) > -dual_clip * adv) if dual_clip is not None else adv < -1e30
        stats = {"pg_loss": pg_loss.item(), "kl": aggregate(kl, mask).item(),
                 "clip_frac": aggregate((clipped > unclipped).float(), mask).item(),
                 "dual_clip_frac": aggregate(dual.float().expand_as(ratio), mask).item(),
                 "ratio_mean": aggregate(ratio, mask).item()}
    return loss, stats


def _share(mask: torch.Tensor, rows: slice, agg: str) -> float:
    """Weight of a micro-batch so that sum_k w_k agg(micro_k) == agg(batch) exactly.

    token-mean divides by the global token count, so a micro-batch weighs its share of tokens;
    the per-sequence modes divide by the global sequence count, so it weighs its share of rows.
    """
    if agg == "token-mean":
        return (mask[rows].sum() / mask.sum().clamp(min=1)).item()
    return mask[rows].shape[0] / mask.shape[0]


def _full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (a sharded model's gradient norm), any other tensor itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def policy_step(policy, optimizer, rollouts: Rollouts, advantages, old_logp, ref_logp, beta=0.001,
                max_grad_norm=1.0, micro_batch_size=None, scheduler=None, temperature=1.0, loss_scale=1.0,
                **loss_kwargs) -> dict:
    """One optimizer step on the whole batch (one epoch, one mini-batch: fully on-policy as the paper).

    Gradients accumulate over micro-batches of micro_batch_size rows, each loss weighted by _share, so the
    gradient equals the full-batch gradient for every aggregation mode. Grad-norm clip; a non-finite norm
    skips the step (stats["skipped"] = 1). old_logp, ref_logp [N, T] from response_logprobs under no_grad.
    old_logp=None: pi_old is this policy before the step (the paper's one epoch, one mini-batch), so
    log pi_old = logp.detach() (rho = 1, same gradient) and the extra no-grad forward pass is skipped.
    loss_scale multiplies what is backpropagated (not the stats): under FSDP share_r * W, so that FSDP's averaging
    reduce-scatter gives the global token mean (distributed.set_share); 1.0 leaves the gradient bit for bit.
    Under FSDP the parameters are DTensor shards: clip_grad_norm_ reduces their norms over ranks (the global
    norm) and grad_norm is that norm's full value.
    """
    agg = loss_kwargs.get("agg", "token-mean")
    mask = rollouts.response_mask
    policy.train()
    optimizer.zero_grad(set_to_none=True)
    step = micro_batch_size or len(rollouts)
    totals = {}
    for s in range(0, len(rollouts), step):
        rows = slice(s, s + step)
        w = _share(mask, rows, agg)
        logp = response_logprobs(policy, rollouts[rows], temperature)
        old = logp.detach() if old_logp is None else old_logp[rows]
        loss, stats = grpo_loss(logp, old, None if ref_logp is None else ref_logp[rows],
                                advantages[rows], mask[rows], beta=beta, **loss_kwargs)
        (loss * (w * loss_scale)).backward()
        stats["loss"] = loss.item()
        tok_w = _share(mask, rows, "token-mean")  # token-mean stats combine by token share
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + v * (w if k in ("loss", "pg_loss") else tok_w)
    params = [p for p in policy.parameters() if p.grad is not None]
    grad_norm = _full(torch.nn.utils.clip_grad_norm_(params, max_grad_norm)).item()
    skipped = not torch.isfinite(torch.tensor(grad_norm))
    if skipped:
        optimizer.zero_grad(set_to_none=True)
    else:
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return {**totals, "grad_norm": grad_norm, "skipped": int(skipped)}
