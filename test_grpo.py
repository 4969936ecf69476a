"""Tests for grpo.py: hand-computed values for the math, a tiny random Qwen2 for rollouts and log-probs."""
import math
import os

import pytest
import torch

import grpo

torch.set_num_threads(1)


# ---------------------------------------------------------------- advantages

def test_group_advantages_paper_example():
    adv = grpo.group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), group_size=4)
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)  # mean 0.5, unbiased std sqrt(1/3)
    assert torch.allclose(adv, torch.tensor([a, -a, -a, a]), atol=1e-7)
    assert abs(a - 0.8660) < 1e-4


def test_group_advantages_two_groups_unscaled_and_zero_variance():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.3, 0.3, 0.3, 0.3])  # 0.3 is not exact in binary
    adv = grpo.group_advantages(r, 4)
    assert adv[4:].eq(0).all() and torch.isfinite(adv).all()
    assert torch.allclose(adv[:4], torch.tensor([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-6), atol=1e-6)
    raw = grpo.group_advantages(r, 4, scale_std=False)  # Dr. GRPO: r - mean
    assert torch.allclose(raw, torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0]))
    assert grpo.zero_variance_groups(r, 4) == 1
    assert grpo.zero_variance_groups(torch.tensor([1.0, 1, 0, 0, 0, 0]), 2) == 3


def test_group_advantages_bad_group_size():
    with pytest.raises(ValueError, match="group_size"):
        grpo.group_advantages(torch.ones(6), 4)
    with pytest.raises(ValueError, match="group_size"):
        grpo.group_advantages(torch.ones(3), 1)  # one sample: unbiased std undefined


# ---------------------------------------------------------------- PPO clip, dual clip, KL

def _ratio_case(ratio, adv, **kw):
    logp = torch.tensor([[math.log(ratio)]])
    return grpo.ppo_clip_loss(logp, torch.zeros(1, 1), torch.tensor([adv]), **kw).item()


@pytest.mark.parametrize("ratio, adv, expected", [
    (1.5, 1.0, -1.2),   # A>0, ratio above 1+eps: clipped
    (0.5, 1.0, -0.5),   # A>0, ratio below 1-eps: unclipped (pessimistic max)
    (1.1, 1.0, -1.1),   # inside the trust region
    (0.5, -1.0, 0.8),   # A<0, ratio below 1-eps: clipped
    (1.5, -1.0, 1.5),   # A<0, ratio above 1+eps: unclipped
    (5.0, -1.0, 3.0),   # A<0, huge ratio: dual clip caps at -3A
    (5.0, -2.0, 6.0),   # cap scales with |A|
    (5.0, 2.0, -2.4),   # A>0: no dual clip
])
def test_ppo_clip_branches(ratio, adv, expected):
    assert _ratio_case(ratio, adv) == pytest.approx(expected, abs=1e-6)


def test_ppo_asymmetric_clip_and_no_dual_clip():
    assert _ratio_case(1.5, 1.0, clip_high=0.28) == pytest.approx(-1.28, abs=1e-6)  # DAPO clip-higher
    assert _ratio_case(0.5, -1.0, clip_low=0.1) == pytest.approx(0.9, abs=1e-6)
    assert _ratio_case(5.0, -1.0, dual_clip=None) == pytest.approx(5.0, abs=1e-5)
    # log-ratio clamp at 20: exp(20) instead of exp(30) overflow
    big = grpo.ppo_clip_loss(torch.tensor([[30.0]]), torch.zeros(1, 1), torch.tensor([-1.0]), dual_clip=None)
    assert big.item() == pytest.approx(math.exp(20), rel=1e-5)


def test_k3_values_and_clamps():
    ref = torch.tensor([[0.0, 1.0, -1.0, 30.0, -30.0]])
    kl = grpo.k3_kl(torch.zeros_like(ref), ref)
    # d=30 -> exp(20)-21 -> clamp 10; d=-30 -> d=-20 -> exp(-20)+19 -> clamp 10
    expected = [0.0, math.e - 2, 1 / math.e, 10.0, 10.0]
    assert torch.allclose(kl, torch.tensor([expected]), atol=1e-6)
    assert grpo.k3_kl(torch.zeros(1, 1), torch.tensor([[-5.0]])).item() == pytest.approx(math.exp(-5) + 4, abs=1e-6)


# ---------------------------------------------------------------- aggregation and loss

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
M = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode, expected", [
    ("token-mean", 2.5), ("seq-mean-token-mean", 3.0), ("seq-mean-token-sum-norm", (2 + 4 / 3) / 2)])
def test_aggregate_modes(mode, expected):
    assert grpo.aggregate(X, M, mode).item() == pytest.approx(expected, abs=1e-6)


def test_aggregate_ignores_nan_behind_mask_and_rejects_unknown_mode():
    x = X.clone()
    x[1, 2] = float("nan")
    assert grpo.aggregate(x, M).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="seq-mean"):
        grpo.aggregate(X, M, "sum")


def test_grpo_loss_value_and_gradient():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)
    old = logp.detach().clone()
    ref = old + torch.tensor([[0.5, 0.0, -0.5], [1.0, 0.0, 0.0]])
    adv = torch.tensor([2.0, -1.0])
    loss, stats = grpo.grpo_loss(logp, old, ref, adv, M, beta=0.1)
    kl_mean = ((math.exp(0.5) - 1.5) + 0.0 + (math.exp(-0.5) - 0.5) + (math.e - 2)) / 4  # d = 0.5, 0, -0.5, 1
    pg_mean = (3 * -2.0 + 1.0) / 4  # ratio 1: l = -A per token
    assert loss.item() == pytest.approx(pg_mean + 0.1 * kl_mean, abs=1e-6)
    assert stats["kl"] == pytest.approx(kl_mean, abs=1e-6) and stats["clip_frac"] == 0.0
    loss.backward()
    # d/dlogp of -A rho at rho=1 is -A; of k3 it is 1 - exp(d); both divided by 4 tokens; masked token: 0
    d = torch.tensor([[0.5, 0.0, -0.5], [1.0, 0.0, 0.0]])
    expected = (-adv.unsqueeze(1) + 0.1 * (1 - torch.exp(d))) / 4 * M
    assert torch.allclose(logp.grad, expected, atol=1e-6)


def test_grpo_loss_clip_stats():
    old = torch.zeros(2, 2)
    logp = torch.log(torch.tensor([[1.5, 1.0], [5.0, 0.5]]))
    _, stats = grpo.grpo_loss(logp, old, None, torch.tensor([1.0, -1.0]), torch.ones(2, 2), beta=0.0)
    assert stats["clip_frac"] == pytest.approx(0.5)  # 1.5 with A>0, 0.5 with A<0
    assert stats["dual_clip_frac"] == pytest.approx(0.25)  # 5.0 with A<0
    assert stats["ratio_mean"] == pytest.approx(2.0)


def test_response_mask_after_eos():
    ids = torch.tensor([[5, 9, 9, 0], [5, 6, 7, 8], [9, 1, 2, 3], [4, 3, 2, 8]])
    m = grpo.response_mask_after_eos(ids, [9, 8])
    assert m.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]


# ---------------------------------------------------------------- tiny model: rollouts and log-probs

def _tiny_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    chars = list("0123456789+-=#?abcdefgh ")
    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="?"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


@pytest.fixture(scope="module")
def tiny():
    from transformers import Qwen2Config, Qwen2ForCausalLM
    tok = _tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=0, eos_token_id=1, bos_token_id=None)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # near-uniform next token: EOS appears in some rows (p ~ 1/26 per token), not all
        model.lm_head.weight.mul_(0.05)
    return model, tok


PROMPTS = ["1+2=", "12+7=#", "3-1=ab"]


def _unpadded_logprobs(model, ro, row):
    """Reference: one row without any padding or attention mask, full logits."""
    p = ro.prompt_ids[row][ro.prompt_mask[row].bool()]
    r = ro.response_ids[row][ro.response_mask[row].bool()]
    with torch.no_grad():
        logits = model(torch.cat([p, r]).unsqueeze(0)).logits[0, len(p) - 1:-1]
    return torch.log_softmax(logits.float(), -1), r


def test_rollouts_layout_and_mask(tiny):
    model, tok = tiny
    torch.manual_seed(1)
    ro = grpo.generate_rollouts(model, tok, PROMPTS, group_size=4, max_new_tokens=24, batch_size=5)
    N, T = ro.response_ids.shape
    assert N == 12 and T <= 24 and ro.prompt_ids.shape[0] == 12
    assert ro.input_ids.shape == (12, ro.prompt_ids.shape[1] + T) and ro.attention_mask.shape == ro.input_ids.shape
    for i, p in enumerate(PROMPTS):  # rows i*G .. i*G+G-1 hold prompt i, left-padded
        for row in range(i * 4, i * 4 + 4):
            ids = ro.prompt_ids[row][ro.prompt_mask[row].bool()]
            assert tok.decode(ids) == p and ro.prompt_mask[row, -1] == 1
    ended = 0
    for row in range(N):
        m, ids = ro.response_mask[row], ro.response_ids[row]
        n = int(m.sum())
        assert m[:n].eq(1).all() and m[n:].eq(0).all()  # contiguous: nothing after the first EOS
        assert ids[n:].eq(0).all()  # padded with pad id after it
        assert (ids[:n - 1] != 1).all()  # no EOS before the last trained token
        if ids[n - 1] == 1:
            ended += 1  # the EOS itself is trained once
            assert ro.texts[row] == tok.decode(ids[:n - 1], skip_special_tokens=True)
        else:
            assert n == 24 and ro.texts[row] == tok.decode(ids, skip_special_tokens=True)  # truncated: every token trained
        assert "<eos>" not in ro.texts[row] and "<pad>" not in ro.texts[row]
    assert 0 < ended < N, "fixture should give both finished and truncated rows"


def test_left_padding_logprobs_match_unpadded(tiny):
    model, tok = tiny
    torch.manual_seed(2)
    ro = grpo.generate_rollouts(model, tok, PROMPTS, group_size=2, max_new_tokens=16)
    assert ro.prompt_mask.eq(0).any()  # prompts of different lengths: some rows are left-padded
    lp = grpo.response_logprobs(model, ro, batch_size=4)
    with torch.no_grad():
        lp_full = grpo.response_logprobs(model, ro)
    assert torch.allclose(lp, lp_full, atol=1e-6)  # micro-batching under no_grad changes nothing
    for row in range(len(ro)):
        ref, r = _unpadded_logprobs(model, ro, row)
        n = len(r)
        assert torch.allclose(lp[row, :n], ref.gather(1, r.unsqueeze(1)).squeeze(1), atol=1e-5)
    # temperature divides the logits
    lp_t = grpo.response_logprobs(model, ro, temperature=0.5)
    ref, r = _unpadded_logprobs(model, ro, 0)
    with torch.no_grad():
        p = ro.prompt_ids[0][ro.prompt_mask[0].bool()]
        logits = model(torch.cat([p, r]).unsqueeze(0)).logits[0, len(p) - 1:-1] / 0.5
    assert torch.allclose(lp_t[0, :len(r)], torch.log_softmax(logits, -1).gather(1, r.unsqueeze(1)).squeeze(1), atol=1e-5)


def test_each_distinct_prompt_is_run_once(tiny):
    model, tok = tiny
    ro = grpo.generate_rollouts(model, tok, PROMPTS, group_size=4, max_new_tokens=5, temperature=0.0)
    seen = []
    hook = model.model.embed_tokens.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    try:
        grpo.response_logprobs(model, ro)
    finally:
        hook.remove()
    P, T = ro.prompt_ids.shape[1], ro.response_ids.shape[1]
    assert seen == [(3, P), (3, T - 1)]  # greedy: each group is one response 4 times; each prompt once, each response once


def test_repeated_rows_are_run_once_with_the_same_values_and_gradients(tiny):
    model, tok = tiny
    torch.manual_seed(5)
    ro = grpo.generate_rollouts(model, tok, PROMPTS, group_size=2, max_new_tokens=8)
    rows = [0, 1, 0, 2, 3, 3, 4, 5, 1]   # rows 0, 1 and 3 repeated, in and across groups
    dup = ro[rows]
    assert grpo._distinct_rows(dup)[0] == [0, 1, 3, 4, 6, 7]
    weights = torch.randn(len(rows), ro.response_ids.shape[1])
    grads = []
    for batch in (dup, None):   # the repeated batch, then every row on its own
        model.zero_grad()
        lp = grpo.response_logprobs(model, batch) if batch is not None else \
            torch.cat([grpo.response_logprobs(model, ro[[r]]) for r in rows])
        (lp * weights).sum().backward()
        grads.append((lp.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    model.zero_grad()
    (lp_dup, g_dup), (lp_one, g_one) = grads
    assert torch.allclose(lp_dup, lp_one, atol=1e-5)
    assert len(g_dup) == len(g_one) and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_dup, g_one))


def test_gradient_checkpointing_gives_the_cached_paths_logprobs_and_gradients(tiny):
    """Under gradient checkpointing transformers turns the KV cache off in training, which the shared-prefix
    path needs: response_logprobs then runs prompt + response in one pass, to the same numbers."""
    import copy
    model, tok = tiny
    torch.manual_seed(6)
    ro = grpo.generate_rollouts(model, tok, PROMPTS, group_size=2, max_new_tokens=8)
    checkpointed = copy.deepcopy(model)
    checkpointed.gradient_checkpointing_enable({"use_reentrant": False})
    results = []
    for m in (model, checkpointed):
        m.train()
        m.zero_grad()
        lp = grpo.response_logprobs(m, ro)
        (lp * ro.response_mask).sum().backward()
        results.append((lp.detach(), [p.grad.clone() for p in m.parameters()]))
        m.zero_grad()
        m.eval()
    (lp_a, g_a), (lp_b, g_b) = results
    assert checkpointed.is_gradient_checkpointing and torch.allclose(lp_a, lp_b, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_a, g_b))


def test_one_token_responses_and_distinct_prompts(tiny):
    model, tok = tiny
    ro = grpo.generate_rollouts(model, tok, PROMPTS, group_size=1, max_new_tokens=1)
    assert ro.response_ids.shape == (3, 1) and ro.response_mask.eq(1).all()
    lp = grpo.response_logprobs(model, ro)
    for row in range(3):
        ref, r = _unpadded_logprobs(model, ro, row)
        assert torch.allclose(lp[row], ref.gather(1, r.unsqueeze(1)).squeeze(1), atol=1e-5)


def test_greedy_rollouts_are_argmax_of_logprobs(tiny):
    model, tok = tiny
    # "1": a one-token prompt whose cached prefix row is all padding
    ro = grpo.generate_rollouts(model, tok, PROMPTS + ["1"], group_size=2, max_new_tokens=10, temperature=0.0)
    assert torch.equal(ro.response_ids[0], ro.response_ids[1])  # greedy: the group is identical
    lp = grpo.response_logprobs(model, ro)
    for row in range(len(ro)):
        ref, r = _unpadded_logprobs(model, ro, row)
        assert torch.equal(ref.argmax(-1), r)
        assert torch.allclose(lp[row, :len(r)], ref.gather(1, r.unsqueeze(1)).squeeze(1), atol=1e-5)


def _fake_batch(tiny, seed=3):
    model, tok = tiny
    torch.manual_seed(seed)
    ro = grpo.generate_rollouts(model, tok, PROMPTS * 2, group_size=2, max_new_tokens=12)
    with torch.no_grad():
        old = grpo.response_logprobs(model, ro) + 0.3 * torch.randn(len(ro), ro.response_ids.shape[1])
        ref = old + 0.2 * torch.randn_like(old)
    adv = grpo.group_advantages(torch.rand(len(ro)), 2)
    return ro, old, ref, adv


@pytest.mark.parametrize("agg", grpo.AGG_MODES)
def test_micro_batches_give_the_full_batch_gradient(tiny, agg):
    model, _ = tiny
    ro, old, ref, adv = _fake_batch(tiny)
    assert ro.response_mask.sum(1).unique().numel() > 1  # unequal lengths, or token-mean would not be tested
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: params stay, grads stay for comparison
    grads, stats = [], []
    for mb in (None, 5):  # 12 rows in micro-batches 5, 5, 2
        stats.append(grpo.policy_step(model, opt, ro, adv, old, ref, beta=0.1, max_grad_norm=1e9,
                                      micro_batch_size=mb, agg=agg))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    for k in ("loss", "pg_loss", "kl", "clip_frac", "ratio_mean"):
        assert stats[0][k] == pytest.approx(stats[1][k], abs=1e-5), k
    assert stats[0]["grad_norm"] == pytest.approx(stats[1]["grad_norm"], rel=1e-4)


def test_on_policy_old_logp_none_gives_the_same_gradient(tiny):
    model, _ = tiny
    ro, _, ref, adv = _fake_batch(tiny, seed=5)
    with torch.no_grad():
        old = grpo.response_logprobs(model, ro)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    grads, stats = [], []
    for o in (old, None):
        stats.append(grpo.policy_step(model, opt, ro, adv, o, ref, beta=0.1, max_grad_norm=1e9, micro_batch_size=5))
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6, rtol=1e-4)
    assert stats[1]["ratio_mean"] == pytest.approx(1.0, abs=1e-6) and stats[0]["ratio_mean"] == pytest.approx(1.0, abs=1e-5)


def test_policy_step_updates_and_skips_non_finite(tiny):
    model, _ = tiny
    ro, old, ref, adv = _fake_batch(tiny, seed=4)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    bad = adv.clone()
    bad[0] = float("nan")
    s = grpo.policy_step(model, opt, ro, bad, old, ref)
    assert s["skipped"] == 1 and all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    s = grpo.policy_step(model, opt, ro, adv, old, ref, max_grad_norm=0.01)
    assert s["skipped"] == 0 and math.isfinite(s["grad_norm"]) and s["grad_norm"] > 0.01
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with torch.no_grad():  # restore for other tests using the module fixture
        for a, p in zip(before, model.parameters()):
            p.copy_(a)


# ---------------------------------------------------------------- parity with verl and TRL
# Reference formulas re-derived (not copied) from
#   verl  volcengine/verl @ 012be9d9dcb7c38499f23616142870d2682757fc  verl/trainer/ppo/core_algos.py
#         compute_grpo_outcome_advantage, compute_policy_loss_vanilla, kl_penalty('low_var_kl'), agg_loss
#   TRL   trl==1.16.0  trl/trainer/grpo_trainer.py  advantages in _generate_and_score_completions,
#         loss in _compute_loss (loss_type grpo / bnpo / dr_grpo / dapo), nanstd in trl/trainer/utils.py
# Written the way each project computes (per-index dict loop, x*mask sums, +1e-8 denominators), so a
# shortcut in grpo.py that only agrees with itself would show.

def verl_grpo_advantages(scores, index, eps=1e-6, norm_by_std=True):
    groups = {}
    for i, k in enumerate(index):
        groups.setdefault(k, []).append(scores[i])
    stats = {}
    for k, v in groups.items():
        v = torch.stack(v)
        stats[k] = (torch.tensor(0.0), torch.tensor(1.0)) if len(v) == 1 else (v.mean(), v.std())
    out = scores.clone()
    for i, k in enumerate(index):
        mean, std = stats[k]
        out[i] = (scores[i] - mean) / (std + eps) if norm_by_std else scores[i] - mean
    return out


def verl_masked_mean(x, mask, dim=None):
    return (x * mask).sum() / (mask.sum() + 1e-8) if dim is None else (x * mask).sum(dim) / (mask.sum(dim) + 1e-8)


def verl_agg(loss_mat, mask, mode):
    if mode == "token-mean":
        return verl_masked_mean(loss_mat, mask)
    if mode == "seq-mean-token-mean":
        return ((loss_mat * mask).sum(-1) / mask.sum(-1)).mean()
    if mode == "seq-mean-token-sum-norm":  # verl: total token sum / T, no 1/N
        return (loss_mat * mask).sum(-1).sum() / mask.shape[-1]
    raise ValueError(mode)


def verl_policy_loss(old, logp, adv_tok, mask, clip_low, clip_high, clip_c, mode):
    neg_kl = torch.clamp(logp - old, -20.0, 20.0)
    ratio = torch.exp(neg_kl)
    loss1 = -adv_tok * ratio
    loss2 = -adv_tok * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clipped = torch.maximum(loss1, loss2)
    clipfrac = verl_masked_mean((loss2 > loss1).float(), mask)
    loss3 = -adv_tok * clip_c
    dual = torch.min(loss3, clipped)
    clipfrac_lower = verl_masked_mean((clipped > loss3).float() * (adv_tok < 0).float(), mask)
    per_token = torch.where(adv_tok < 0, dual, clipped)
    return verl_agg(per_token, mask, mode), clipfrac, clipfrac_lower


def verl_low_var_kl(logp, ref):
    kl = torch.clamp(ref - logp, -20, 20)
    return torch.clamp(torch.exp(kl) - kl - 1, -10, 10)


def trl_nanstd(x, dim):
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim)
    n = (~torch.isnan(x)).sum(dim)
    return torch.sqrt(var * n / (n - 1))  # Bessel


def trl_advantages(rewards, G, scale_rewards="group"):
    mean = rewards.view(-1, G).nanmean(1).repeat_interleave(G)
    std = trl_nanstd(rewards.view(-1, G), 1).repeat_interleave(G)
    adv = rewards - mean
    return adv / (std + 1e-4) if scale_rewards != "none" else adv


def trl_loss(logp, old, ref, adv, mask, beta, eps_low, eps_high, loss_type, max_completion_length,
             bias_corrected_kl=False):
    coef_1 = torch.exp(logp - old)
    coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
    a = adv.unsqueeze(1)
    per_token = -torch.min(coef_1 * a, coef_2 * a)
    if beta != 0.0:
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        per_token = per_token + beta * (kl * coef_1 if bias_corrected_kl else kl)
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type in ("bnpo", "dapo"):  # dapo: / num_items_in_batch = all tokens of the generation batch
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)
    raise ValueError(loss_type)


TRL_LOSS_TYPE = {"token-mean": "dapo", "seq-mean-token-mean": "grpo", "seq-mean-token-sum-norm": "dr_grpo"}


def _fixture(seed, B=4, G=4, T=7):
    """Rewards with a binary group, a zero-variance group and real-valued groups; log-probs whose ratios
    span both clip bounds and the dual clip; ragged response lengths."""
    g = torch.Generator().manual_seed(seed)
    N = B * G
    rewards = torch.rand(N, generator=g)
    rewards[:G] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    rewards[G:2 * G] = 1.0
    logp = -3 * torch.rand(N, T, generator=g) - 0.05
    old = logp - 0.6 * torch.randn(N, T, generator=g)
    old[0, 0], old[1, 0] = logp[0, 0] - 2.0, logp[1, 0] - 2.0  # ratio e^2 = 7.4: dual clip for A < 0 (row 1)
    ref = logp + 0.8 * torch.randn(N, T, generator=g)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0] = lengths[1] = T
    mask = (torch.arange(T) < lengths.unsqueeze(1)).float()
    return rewards, logp, old, ref, mask, G


SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scale_std", [True, False])
def test_parity_advantages(seed, scale_std):
    rewards, *_, G = _fixture(seed)
    index = [i // G for i in range(len(rewards))]
    ours = grpo.group_advantages(rewards, G, scale_std=scale_std)
    assert torch.allclose(ours, verl_grpo_advantages(rewards, index, norm_by_std=scale_std), atol=1e-6)
    ours_trl = grpo.group_advantages(rewards, G, eps=1e-4, scale_std=scale_std)
    trl = trl_advantages(rewards, G, "group" if scale_std else "none")
    assert torch.allclose(ours_trl, trl, atol=1e-6)
    if scale_std:  # the documented eps difference is real: 1e-6 vs 1e-4 moves A by ~1e-4 relative
        assert not torch.allclose(ours, trl, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("agg", grpo.AGG_MODES)
@pytest.mark.parametrize("clip_high", [0.2, 0.28])
def test_parity_verl_loss(seed, agg, clip_high):
    rewards, logp, old, ref, mask, G = _fixture(seed)
    adv = grpo.group_advantages(rewards, G)
    logp = logp.clone().requires_grad_(True)
    beta = 0.001
    loss, stats = grpo.grpo_loss(logp, old, ref, adv, mask, beta=beta, clip_high=clip_high, agg=agg)
    lv = logp.detach().clone().requires_grad_(True)
    adv_tok = adv.unsqueeze(1) * mask  # verl stores token-level advantages, zero after EOS
    pg, clipfrac, clipfrac_lower = verl_policy_loss(old, lv, adv_tok, mask, 0.2, clip_high, 3.0, agg)
    verl_total = pg + beta * verl_agg(verl_low_var_kl(lv, ref), mask, agg)
    scale = mask.shape[0] if agg == "seq-mean-token-sum-norm" else 1  # verl sums sequences there, we average
    assert loss.item() == pytest.approx(verl_total.item() / scale, abs=1e-6)
    assert stats["pg_loss"] == pytest.approx(pg.item() / scale, abs=1e-6)
    assert stats["clip_frac"] == pytest.approx(clipfrac.item(), abs=1e-6)
    assert stats["dual_clip_frac"] == pytest.approx(clipfrac_lower.item(), abs=1e-6) and stats["dual_clip_frac"] > 0
    loss.backward()
    (verl_total / scale).backward()
    assert torch.allclose(logp.grad, lv.grad, atol=1e-6)


def test_parity_k3_with_verl_including_clamps():
    logp = torch.tensor([[-1.0, -2.0, -0.1, -30.0, -0.5]])
    ref = torch.tensor([[-1.5, -0.2, -0.1, -2.0, -25.0]])  # d = -0.5, 1.8, 0, 28 (-> kl clamp), -24.5 (-> d clamp)
    assert torch.allclose(grpo.k3_kl(logp, ref), verl_low_var_kl(logp, ref), atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("agg", grpo.AGG_MODES)
def test_parity_trl_loss(seed, agg):
    """TRL has no dual clip and no KL clamps: with dual_clip=None and ratios, KL inside the clamps, the
    losses and their gradients agree for TRL's 'dapo' (= bnpo on one batch), 'grpo' and 'dr_grpo'."""
    rewards, logp, old, ref, mask, G = _fixture(seed)
    adv = grpo.group_advantages(rewards, G, eps=1e-4)
    beta, T = 0.04, mask.shape[1]
    logp = logp.clone().requires_grad_(True)
    loss, _ = grpo.grpo_loss(logp, old, ref, adv, mask, beta=beta, dual_clip=None, clip_high=0.28, agg=agg)
    lt = logp.detach().clone().requires_grad_(True)
    trl = trl_loss(lt, old, ref, adv, mask, beta, 0.2, 0.28, TRL_LOSS_TYPE[agg], T)
    assert loss.item() == pytest.approx(trl.item(), abs=1e-6)
    loss.backward()
    trl.backward()
    assert torch.allclose(logp.grad, lt.grad, atol=1e-6)
    # the documented differences are real on this fixture: dual clip, and TRL's default ratio-weighted KL
    ours_dual, _ = grpo.grpo_loss(logp.detach(), old, ref, adv, mask, beta=beta, clip_high=0.28, agg=agg)
    assert abs(ours_dual.item() - trl.item()) > 1e-4
    lb = logp.detach().clone().requires_grad_(True)
    trl_loss(lb, old, ref, adv, mask, beta, 0.2, 0.28, TRL_LOSS_TYPE[agg], T, bias_corrected_kl=True).backward()
    assert not torch.allclose(lb.grad, lt.grad, atol=1e-6)


def _trl_trainer_stub(loss_type, beta, eps_low, eps_high, T, logp):
    """The attributes GRPOTrainer._compute_loss reads, with the model forward replaced by fixed log-probs."""
    from collections import defaultdict
    from types import SimpleNamespace
    accelerator = SimpleNamespace(gather=lambda x: x, gather_for_metrics=lambda x: x, num_processes=1,
                                  reduce=lambda x, reduction="sum": x, sync_gradients=True)
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        beta=beta, args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        loss_type=loss_type,
        epsilon_low=eps_low, epsilon_high=eps_high, use_vllm=False, vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1, max_completion_length=T,
        accelerator=accelerator, _metrics=defaultdict(lambda: defaultdict(list)), _entropy_bonus_enabled=False,
        aux_loss_enabled=False)


@pytest.mark.parametrize("agg", grpo.AGG_MODES)
def test_parity_with_installed_trl(agg):
    """TRL's own _compute_loss (and its nanstd for advantages) on the fixture tensors, when trl is importable
    (it lives in its own venv, which `bash run.sh bench` builds: .venv-trl/bin/python -m pytest test_grpo.py -k
    installed_trl). COOPER_REQUIRE_TRL=1 (CI) turns the skips into failures, so CI cannot pass without them."""
    if os.environ.get("COOPER_REQUIRE_TRL") == "1":
        import trl
        assert trl.__version__ == "1.16.0", f"formulas pinned to trl 1.16.0, found {trl.__version__}"
    trl = pytest.importorskip("trl")
    if trl.__version__ != "1.16.0":
        pytest.skip(f"formulas pinned to trl 1.16.0, found {trl.__version__}")
    from trl.trainer.grpo_trainer import GRPOTrainer
    from trl.trainer.utils import nanstd
    rewards, logp, old, ref, mask, G = _fixture(0)
    std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G)
    trl_adv = (rewards - rewards.view(-1, G).nanmean(1).repeat_interleave(G)) / (std + 1e-4)
    adv = grpo.group_advantages(rewards, G, eps=1e-4)
    assert torch.allclose(adv, trl_adv, atol=1e-6)
    N, T = mask.shape
    lt = logp.clone().requires_grad_(True)
    stub = _trl_trainer_stub(TRL_LOSS_TYPE[agg], 0.04, 0.2, 0.28, T, lt)
    inputs = {"prompt_ids": torch.ones(N, 3, dtype=torch.long), "prompt_mask": torch.ones(N, 3, dtype=torch.long),
              "completion_ids": torch.ones(N, T, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    trl_value = GRPOTrainer._compute_loss(stub, None, inputs)
    lo = logp.clone().requires_grad_(True)
    ours, stats = grpo.grpo_loss(lo, old, ref, adv, mask, beta=0.04, dual_clip=None, clip_high=0.28, agg=agg)
    assert ours.item() == pytest.approx(trl_value.item(), abs=1e-6)
    trl_value.backward()
    ours.backward()
    assert torch.allclose(lo.grad, lt.grad, atol=1e-6)
    assert stats["kl"] == pytest.approx(stub._metrics["train"]["kl"][0], abs=1e-6)
