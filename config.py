"""Cooper's configuration: one dataclass field per command-line flag, each with its help text (`python cooper.py
--help` prints them with their defaults and toy values), the toy preset, range checks, and the compute dtype.

Defaults are the paper's; the embedded toy task applies toy.TOY_PRESET on top (--preset toy, the default when no
--policy is given). Precedence: flags given > the resumed run's config.json > the preset > the defaults.
"""
import argparse
import dataclasses
import json
import math
import os

import torch

import grpo
import toy

# ----------------------------------------------------------------------------------------------------
# Config: one field per flag (`python cooper.py --help` prints each with its help). Defaults are the paper's;
# the embedded toy task applies toy.TOY_PRESET on top (--preset toy: the default when no --policy is given).


def flag(default, help: str, **argparse_kwargs):
    return dataclasses.field(default=default, metadata={"help": help, **argparse_kwargs})


@dataclasses.dataclass
class Config:
    # what to train
    reward: str = flag("cooper", "who pays the policy: rule (the verifier), rm (a frozen VerifyRM), cooper (VerifyRM "
                       "updated on pairs every step)", choices=("rule", "rm", "cooper"))
    preset: str = flag(None, "toy (toy.TOY_PRESET) or paper settings; default: toy without --policy, paper with it",
                       choices=("toy", "paper"))
    policy: str = flag(None, "policy model folder (Hugging Face); none: the embedded toy start (toy.py)")
    reward_model: str = flag(None, "VerifyRM folder, a 1-logit sequence classifier (reward.py train makes one)")
    train: str = flag(None, "training problems (.jsonl/.json/.parquet; GSM8K, MATH, verl, ... see data.py)")
    test: str = flag(None, "test problems, same formats; greedy accuracy on them is the run's score")
    question_field: str = flag(None, "dotted field holding the question, for a file of another format")
    answer_field: str = flag(None, "dotted field holding the reference answer (with --question-field)")
    skip_bad_rows: bool = flag(False, "skip (and count) malformed rows instead of stopping at the first")
    out: str = flag("runs/cooper", "run folder: config.json, metrics.jsonl, samples.jsonl, policy/, reward/, ...")
    seed: int = flag(0, "seed of the prompts' order, the rollouts and the pairs")
    steps: int = flag(200, "training steps (each: rollouts, an RM update, a policy update)")
    device: str = flag("cuda" if torch.cuda.is_available() else "cpu", "cpu or cuda (under torchrun: each rank's GPU)")
    dtype: str = flag("auto", "compute dtype (weights and AdamW stay fp32); auto: bf16 on a GPU that has it, else fp32",
                      choices=("auto", "bf16", "fp32"))
    gradient_checkpointing: bool = flag(False, "recompute activations in the backward (policy, VerifyRM): less memory")
    save_dtype: str = flag("fp32", "dtype of the final policy/ and reward/ (bf16: a rounded export; checkpoints: fp32)",
                           choices=("fp32", "bf16"))
    # stage 1: GRPO (grpo.py)
    prompts_per_step: int = flag(4, "B, prompts per step (over all ranks)")
    group_size: int = flag(16, "G, rollouts per prompt (at least 2: the advantage needs a group)")
    max_new_tokens: int = flag(512, "response length limit in tokens")
    temperature: float = flag(1.0, "sampling temperature (> 0: the log-probs are those of softmax(logits / T))")
    top_p: float = flag(1.0, "nucleus sampling mass, in (0, 1]")
    lr: float = flag(1e-6, "policy AdamW learning rate")
    warmup_steps: int = flag(20, "linear learning-rate warm-up of the policy, in steps")
    beta: float = flag(0.001, "weight of the k3 KL to pi_ref in the loss")
    clip_low: float = flag(0.2, "PPO clip: rho is kept >= 1 - clip_low")
    clip_high: float = flag(0.2, "PPO clip: rho is kept <= 1 + clip_high")
    dual_clip: float = flag(3.0, "dual clip c: for A < 0 the loss is at most -c A")
    loss_agg: str = flag("token-mean", "how per-token losses become one number", choices=grpo.AGG_MODES)
    max_grad_norm: float = flag(1.0, "gradient-norm clip, policy and VerifyRM (a non-finite norm skips the step)")
    micro_batch_size: int = flag(None, "rollouts per forward/backward (gradients accumulate; default: all at once)")
    # stage 2: VerifyRM (reward.py) and the assistant
    rm_lr: float = flag(1e-5, "VerifyRM AdamW learning rate")
    rm_weight_decay: float = flag(0.01, "VerifyRM AdamW weight decay")
    rm_steps: int = flag(1, "VerifyRM optimizer steps per training step, on the same pairs")
    rm_max_length: int = flag(1024, "VerifyRM input length in tokens (cut from the left: the answer stays)")
    positive: str = flag("random", "a prompt's positive: a random (paper) or the first (its code) correct rollout",
                         choices=("random", "first"))
    assistant: str = flag("perturb", "who writes negatives: perturb (offline: a calculation mistake in the last "
                          "result, toy.miscalculate), hf (a local causal LM), openai (an OpenAI-compatible endpoint)",
                          choices=("perturb", "hf", "openai"))
    assistant_model: str = flag(None, "hf: the model folder; openai: the model name the server knows")
    assistant_url: str = flag(None, "openai: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1")
    assistant_key_env: str = flag("OPENAI_API_KEY", "openai: environment variable holding the API key (if any)")
    assistant_concurrency: int = flag(8, "openai: requests in flight at once")
    assistant_timeout: float = flag(60.0, "openai: seconds per request before it is retried")
    assistant_retries: int = flag(3, "openai: retries of a failed request (5xx, timeout, connection), with backoff")
    negative_tries: int = flag(3, "rewrites asked for per prompt before its pair is masked (paper's code: 3)")
    rejected_negatives: bool = flag(False, "beyond the paper: also pair each positive with a rule-rejected rollout")
    # evaluation, monitoring, logging
    eval_every: int = flag(20, "greedy and sampled test accuracy every N steps and at the last (0: last only)")
    eval_size: int = flag(256, "test problems evaluated (the first N)")
    rm_eval: str = flag(None, "labelled file VerifyRM is scored on at each evaluation (the toy makes its own)")
    hack_gap: float = flag(0.25, "hacking monitor: warn when reward paid - rule accuracy exceeds this ...")
    hack_patience: int = flag(10, "... for this many steps in a row")
    halt_after: int = flag(5, "stop with an error after N steps in a row with a broken part (every assistant request "
                           "failed, a non-finite reward or policy gradient)")
    sample_every: int = flag(10, "write rollouts, rewards and pairs to samples.jsonl every N steps (0: never)")
    sample_prompts: int = flag(2, "prompts per samples.jsonl dump")
    tensorboard: bool = flag(False, "also log to OUT/tensorboard (needs the tensorboard package)")
    # plumbing
    rollout: str = flag("hf", "hf (generate) or vllm (an engine per rank, refreshed after each update)",
                        choices=("hf", "vllm"))
    vllm_gpu_memory: float = flag(0.3, "vllm: the engine's share of device memory (weights + KV cache)")
    save_every: int = flag(0, "write a checkpoint every N steps (0: never), for --resume")
    fsdp: bool = flag(False, "under torchrun: shard policy and VerifyRM with FSDP2 (fully_shard per decoder layer) "
                      "instead of DDP replicas; same losses, 1/W of the weights, gradients and AdamW states per rank")
    resume: str = flag(None, "a run folder: continue from its latest checkpoint, with its config.json")
    toy_dir: str = flag("runs/toy", "where the embedded toy start is built and cached (python toy.py DIR --seed k "
                        "builds start k; run.sh reproduce keeps start k in runs/toy-start<k>)")


COUNTS_AT_LEAST = dict(steps=1, prompts_per_step=1, group_size=2, max_new_tokens=1, rm_steps=1, rm_max_length=8,
                       negative_tries=1, assistant_concurrency=1, assistant_retries=0, eval_every=0, eval_size=1,
                       hack_patience=1, halt_after=1, sample_every=0, sample_prompts=0, save_every=0, warmup_steps=0)
POSITIVE = ("lr", "rm_lr", "temperature", "max_grad_norm", "assistant_timeout", "dual_clip")
NON_NEGATIVE = ("beta", "clip_low", "clip_high", "rm_weight_decay", "hack_gap")


def check(cfg: Config, error) -> None:
    """Refuse a value that makes the run meaningless, with one line naming the flag (error: parser.error)."""
    for key, least in COUNTS_AT_LEAST.items():
        if getattr(cfg, key) < least:
            error(f"--{key.replace('_', '-')} must be >= {least}, got {getattr(cfg, key)}")
    for key in POSITIVE + NON_NEGATIVE:
        value = getattr(cfg, key)
        if not math.isfinite(value) or value < 0 or (value == 0 and key in POSITIVE):
            error(f"--{key.replace('_', '-')} must be {'> 0' if key in POSITIVE else '>= 0'}, got {value}")
    if not 0 < cfg.top_p <= 1 or not 0 < cfg.vllm_gpu_memory <= 1:
        error(f"--top-p and --vllm-gpu-memory must be in (0, 1], got {cfg.top_p} and {cfg.vllm_gpu_memory}")
    if cfg.micro_batch_size is not None and cfg.micro_batch_size < 1:
        error(f"--micro-batch-size must be >= 1, got {cfg.micro_batch_size}")
    if cfg.policy and not (cfg.train and cfg.test):
        error("--policy needs --train FILE and --test FILE")
    if cfg.policy and cfg.reward != "rule" and not cfg.reward_model:
        error(f"--reward {cfg.reward} needs --reward-model PATH (a VerifyRM folder; see reward.py train)")
    if cfg.reward == "cooper" and cfg.assistant != "perturb" and not cfg.assistant_model:
        error(f"--assistant {cfg.assistant} needs --assistant-model")
    if cfg.reward == "cooper" and cfg.assistant == "openai" and not cfg.assistant_url:
        error("--assistant openai needs --assistant-url (the endpoint's base URL, e.g. http://127.0.0.1:8000/v1)")


def compute_dtype(cfg: Config) -> torch.dtype:
    """bf16 where asked for, or (auto) where the GPU has it; fp32 otherwise (CPUs: exact and not slower here)."""
    gpu_bf16 = cfg.device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return torch.bfloat16 if cfg.dtype == "bf16" or cfg.dtype == "auto" and gpu_bf16 else torch.float32


def autocast(cfg: Config):
    """The policy's forward passes in the compute dtype; log-probs and losses are taken in fp32 from the logits."""
    dtype = compute_dtype(cfg)
    return torch.autocast(cfg.device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)


def parse_args(argv: list[str]) -> Config:
    """Flags given > the resumed run's config.json > the preset (toy.TOY_PRESET for --preset toy) > the defaults.
    The preset is decided from the parsed values, never by looking for strings in argv."""
    p = argparse.ArgumentParser(prog="cooper.py", usage="%(prog)s [--flag VALUE ...]",
                                description="Cooper training (see the module docstring)",
                                allow_abbrev=False, argument_default=argparse.SUPPRESS)
    for f in dataclasses.fields(Config):
        meta = dict(f.metadata)
        toy_value = toy.TOY_PRESET.get(f.name)
        defaults = [f"default: {f.default}"] * (f.default is not None) + [f"toy: {toy_value}"] * (toy_value is not None)
        meta["help"] += f" ({'; '.join(defaults)})" if defaults else ""
        name = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(name, action=argparse.BooleanOptionalAction, **meta)
        else:
            kind = meta.pop("type", None) or (f.type if f.type in (int, float) else str)
            p.add_argument(name, type=kind, metavar=kind.__name__.upper(), **meta)
    given = vars(p.parse_args(argv))
    saved = {}
    if "resume" in given:   # the run's saved config, overridden only by the flags given now
        try:
            with open(os.path.join(given["resume"], "config.json")) as f:
                saved = {k: v for k, v in json.load(f).items() if k != "resume"}
        except (OSError, ValueError) as err:
            p.error(f"--resume {given['resume']}: cannot read its config.json ({err})")
        unknown = set(saved) - {f.name for f in dataclasses.fields(Config)}
        if unknown:
            p.error(f"--resume {given['resume']}: config.json has fields this cooper.py does not know: {sorted(unknown)}")
        given["out"] = given["resume"]
    chosen = {**saved, **given}
    preset = chosen.get("preset") or ("paper" if chosen.get("policy") else "toy")
    cfg = Config(**{**(toy.TOY_PRESET if preset == "toy" else {}), **chosen, "preset": preset})
    check(cfg, p.error)
    return cfg
