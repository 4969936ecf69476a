"""Evaluation with the rule verifier: a policy's accuracy during training, and benchmark accuracy in the
paper's protocol (k samples per problem at temperature 0.7, top-p 0.95; accuracy = the rule verdict averaged
over every sample of every problem, avg@k, per dataset).

    python evaluate.py --policy DIR/policy --data gsm8k:FILE math500:FILE --samples 8 --out eval.json
"""
import argparse
import json
import os
import random
import sys
import time

import torch

import data
import grpo
import verify


@torch.no_grad()
def rule_accuracy(policy, tokenizer, records: list[dict], max_new_tokens: int, temperature: float = 0.0,
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


# ----------------------------------------------------------------------------------------------------
# Benchmark accuracy, paper protocol

def parse_eval_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="evaluate.py", description="benchmark accuracy of a policy, paper protocol")
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
    p.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                   help="the model's dtype for HF sampling; auto: bf16 on a GPU that has it, fp32 otherwise")
    args = p.parse_args(argv)
    args.datasets = []
    for spec in args.data:
        name, sep, path = spec.partition(":")
        if not (sep and name and path):
            p.error(f"--data expects NAME:FILE, got {spec!r}")
        args.datasets.append((name, path))
    for flag, value, ok in (("--samples", args.samples, args.samples >= 1), ("--batch-size", args.batch_size,
                            args.batch_size >= 1), ("--max-new-tokens", args.max_new_tokens, args.max_new_tokens >= 1),
                            ("--temperature", args.temperature, args.temperature >= 0),
                            ("--top-p", args.top_p, 0 < args.top_p <= 1)):
        if not ok:
            p.error(f"{flag}: {value} is out of range")
    gpu_bf16 = args.device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args.torch_dtype = torch.bfloat16 if args.dtype == "bf16" or args.dtype == "auto" and gpu_bf16 else torch.float32
    return args


def sample_hf(policy_path: str, prompts: list[str], k: int, args) -> list[list[str]]:
    """k sampled completions per chat-formatted prompt with HF generate (grpo.generate_rollouts)."""
    from tqdm import tqdm
    tokenizer = data.load_tokenizer(policy_path)
    model = data.load_causal_lm(policy_path, dtype=args.torch_dtype).to(args.device).eval()
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
    llm = LLM(model=policy_path, seed=args.seed, dtype=str(args.torch_dtype).removeprefix("torch."))
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
    try:   # a bad data file or a policy path that is no model: one line naming it
        datasets = [(name, path, data.load_records(path)[:args.limit]) for name, path in args.datasets]
        tokenizer = data.load_tokenizer(args.policy)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    backend = args.backend
    if backend == "auto":
        backend = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"
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



def main(argv: list[str]) -> dict:
    return benchmark_eval(parse_eval_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
