"""Benchmarks (never imported by the core). `python bench.py grpo [--steps N ...]`

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
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    bench_grpo(args)


if __name__ == "__main__":
    main()
