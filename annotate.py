"""VerifyRM's training data, as the paper makes it: hybrid labels from the rule verifier and an LLM judge.

Also the OpenAI-compatible chat client that asks the judge here and the assistant LLM in cooper.py.

A triple (question, reference, completion) is asked of the judge with JUDGE_PROMPT; it is kept, labelled
with the verdict, only when the judge's Yes/No equals the rule verifier's (`verify.verify`).

Command line (run `python annotate.py -h`):
    python annotate.py annotate IN OUT --judge hf --judge-model DIR
    python annotate.py annotate IN OUT --judge openai --judge-url URL --judge-model NAME
                                                         hybrid labels: rule verifier AND LLM judge agree
    python annotate.py convert-gsm8k IN OUT              GSM8K model solutions -> the Cooper format
IN and OUT are .jsonl or .parquet (.json lists are read too); OUT is what `python reward.py train` reads.

This file imports only `verify.py` and `reward.py` from the project.
"""
import argparse
import json
import os
import re

import torch

import verify
from reward import (above, at_least, finite_or_none, model_folder_problem, read_labelled, read_rows, truncate_middle,
                    write_cooper)


# ----------------------------------------------------------------------------------------------------
# GSM8K's model solutions, labelled by OpenAI

GSM8K_SOLVERS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
FINAL_LINE = re.compile(r"^A:[ \t]*(.*?)\s*$", re.M)


def convert_gsm8k_solutions(path: str) -> list[dict]:
    """openai/grade-school-math's example_model_solutions.jsonl -> Cooper rows, 4 per question.

    {"question": q, "ground_truth": "...\nA: 18", "6b_finetuning": {"is_correct": false, "solution": "...A: 26"}, ...}
    -> {"question": q, "reference": "18", "completion": "...A: 26", "label": 0, "solver": "6b_finetuning"}, ...
    The reference is the final answer after the last `A:` line of ground_truth.
    """
    out = []
    for n, row in enumerate(read_rows(path), 1):
        where = f"{path}: row {n}"
        if not isinstance(row.get("question"), str) or not isinstance(row.get("ground_truth"), str):
            raise ValueError(f"{where}: fields 'question' and 'ground_truth' must be text, got {sorted(row)}")
        finals = FINAL_LINE.findall(row["ground_truth"])
        if not finals or not finals[-1]:
            raise ValueError(f"{where}: field 'ground_truth': no final 'A: <answer>' line in {row['ground_truth'][-60:]!r}")
        for solver in GSM8K_SOLVERS:
            sol = row.get(solver)
            if not (isinstance(sol, dict) and isinstance(sol.get("solution"), str) and isinstance(sol.get("is_correct"), bool)):
                raise ValueError(f"{where}: field {solver!r}: expected {{'is_correct': bool, 'solution': str}}, got {sol!r:.80}")
            out.append({"question": row["question"], "reference": finals[-1], "completion": sol["solution"],
                        "label": int(sol["is_correct"]), "solver": solver})
    return out


# ----------------------------------------------------------------------------------------------------
# An OpenAI-compatible chat client (for the LLM judge here and the assistant LLM in cooper.py), standard
# library only: asyncio keeps at most `concurrency` requests in flight, each a blocking HTTP call in its own
# worker thread (a pool of exactly `concurrency` threads: asyncio's default pool would cap it at cpus + 4).

FAILURES = ("refused", "truncated", "error", "timeout", "garbled", "empty")   # why a reply is None


def server_error_text(body: bytes) -> str:
    """The server's reason for an HTTP error, in one line: the message of a JSON error body (OpenAI and
    vLLM: {"error": {"message": ...}}; older vLLM: {"message": ...}; FastAPI: {"detail": ...}), else the
    body's first line.
    >>> server_error_text(b'{"error": {"message": "max_tokens=1024 cannot be greater than max_model_len=512."}}')
    'max_tokens=1024 cannot be greater than max_model_len=512.'
    >>> server_error_text(b"<html>\\n<h1>502 Bad Gateway</h1>")
    '<html>'
    """
    text = body.decode("utf-8", "replace").strip()
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    for key in ("error", "message", "detail"):
        if isinstance(found, dict) and key in found:
            found = found[key]
            if isinstance(found, dict) and "message" in found:
                found = found["message"]
            break
    lines = (found if isinstance(found, str) else text).strip().splitlines()
    return lines[0][:300] if lines else "(empty body)"


def chat_completions(base_url: str, model: str, conversations: list[list[dict]], *, api_key: str | None = None,
                     temperature: float = 0.7, max_tokens: int = 512, concurrency: int = 8,
                     timeout: float = 60.0, retries: int = 3, backoff: float = 1.0) -> tuple[list, dict]:
    """POST {base_url}/chat/completions once per conversation. Returns (replies, counts): replies[i] is the
    reply text, or None - counted under its last failure, never raised: one bad request masks one item,
    not the run. A failed try is retried after backoff * 2^(try - 1) seconds, except where a retry cannot
    help (refused, truncated). counts:
        ok         replies returned
        refused    HTTP 4xx other than 429 (bad request, unknown model, wrong key), or the model's refusal
        truncated  finish_reason "length": the reply was cut at max_tokens, so it is not used
        error      HTTP 5xx or 429, connection refused or reset, broken HTTP, on every try
        timeout    no reply within `timeout` seconds, on every try
        garbled    the body is not chat-completions JSON, on every try
        empty      the reply held no text, on every try
        retries    tries beyond each item's first
        last_error the most recent failed try's reason (the server's own message for an HTTP error), or
                   None: the one line to print when replies are missing

    replies, counts = chat_completions("http://127.0.0.1:8000/v1", "qwen", [[{"role": "user", "content": "hi"}]])
    counts -> {"ok": 1, "refused": 0, "truncated": 0, "error": 0, "timeout": 0, "garbled": 0, "empty": 0,
               "retries": 0, "last_error": None}
    """
    import asyncio
    import concurrent.futures
    import http.client
    import socket
    import threading
    import time
    import urllib.error
    import urllib.request

    counts = {**dict.fromkeys(("ok", *FAILURES, "retries"), 0), "last_error": None}
    lock = threading.Lock()   # workers update counts concurrently
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    url = base_url.rstrip("/") + "/chat/completions"

    def count(key: str) -> None:
        with lock:
            counts[key] += 1

    def failed(why: str, text: str) -> str:
        with lock:
            counts["last_error"] = text
        return why

    def one(messages: list[dict]) -> str | None:
        body = json.dumps({"model": model, "messages": messages, "temperature": temperature,
                           "max_tokens": max_tokens}).encode()
        failure = "error"
        for attempt in range(retries + 1):
            if attempt:
                count("retries")
                time.sleep(backoff * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(url, data=body, headers=headers)
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as e:
                try:
                    reason = f"HTTP {e.code}: {server_error_text(e.read())}"
                except (OSError, http.client.HTTPException):
                    reason = f"HTTP {e.code}: {e.reason}"
                if 400 <= e.code < 500 and e.code != 429:   # a refused request will not succeed on retry
                    failure = failed("refused", reason)
                    break
                failure = failed("error", reason)
                continue
            except urllib.error.URLError as e:
                if isinstance(e.reason, (TimeoutError, socket.timeout)):
                    failure = failed("timeout", f"{url}: timed out (no reply within {timeout:g} s)")
                else:
                    failure = failed("error", f"{url}: {e.reason}")
                continue
            except (TimeoutError, socket.timeout):
                failure = failed("timeout", f"{url}: timed out (no reply within {timeout:g} s)")
                continue
            except (OSError, http.client.HTTPException) as e:   # connection refused or reset, broken HTTP
                failure = failed("error", f"{url}: {type(e).__name__}: {e}")
                continue
            try:
                choice = json.loads(raw)["choices"][0]
                message = choice["message"]
                reply = message.get("content")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                failure = failed("garbled", f"not a chat completion: {raw[:80]!r}")
                continue
            if message.get("refusal"):   # the model declined (OpenAI's refusal field)
                failure = failed("refused", f"the model refused: {str(message['refusal'])[:200]}")
                break
            if choice.get("finish_reason") == "length":   # cut off: a partial negative or verdict misleads
                failure = failed("truncated", f"reply cut at max_tokens={max_tokens} (finish_reason length)")
                break
            if isinstance(reply, str) and reply.strip():
                count("ok")
                return reply
            failure = failed("empty", "the reply held no text")
        count(failure)
        return None

    async def run_all(pool):
        gate = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()

        async def guarded(messages):
            async with gate:
                return await loop.run_in_executor(pool, one, messages)
        return await asyncio.gather(*(guarded(m) for m in conversations))

    if not conversations:
        return [], counts
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(asyncio.run(run_all(pool))), counts


# ----------------------------------------------------------------------------------------------------
# Hybrid annotation (the paper's VerifyRM data pipeline): a triple is labelled by the rule verifier and by
# an LLM judge, and kept, with that label, only when the two agree.

JUDGE_PROMPT = """You are grading a student's solution to a math problem against the correct final answer.

Problem:
{question}

Correct final answer:
{reference}

Student's solution:
{completion}

Find the final answer the student's solution ends with and decide whether it is the same as the correct \
final answer: equal in value counts as the same even when written differently (2.50 and 2.5, 1/2 and 0.5). \
Ignore how the student got there. End your reply with a last line that says "Verdict: Yes" if the final \
answers match, or "Verdict: No" if they do not or the solution gives no final answer."""

_VERDICT_LINE = re.compile(r"verdict\W{0,8}(yes|no)\b", re.I)
_YES_NO_START = re.compile(r"^\W*(yes|no)\b", re.I)


def parse_verdict(reply: str | None) -> bool | None:
    """The judge's Yes (True) / No (False), or None when the reply holds no clear verdict.

    Looks for, in order: the last "Verdict: Yes/No" (markdown and punctuation allowed), then the last line
    that starts with Yes or No, then nothing: a bare "no" inside a sentence is not a verdict.
    >>> parse_verdict("The student got 18, the same.\\n**Verdict:** Yes"), parse_verdict("No, it is 17."), parse_verdict("There is no answer")
    (True, False, None)
    """
    if not isinstance(reply, str):
        return None
    found = _VERDICT_LINE.findall(reply)
    if not found:
        found = [m.group(1) for line in reply.splitlines() if (m := _YES_NO_START.match(line))]
    return found[-1].lower() == "yes" if found else None


def judge_conversations(rows: list[dict]) -> list[list[dict]]:
    return [[{"role": "user", "content": JUDGE_PROMPT.format(question=r["question"], reference=r["reference"],
                                                              completion=truncate_middle(r["completion"]))}]
            for r in rows]


@torch.no_grad()
def generate_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int,
                     batch_size: int = 16, progress: bool = True) -> list[str | None]:
    """Greedy replies of a local HF chat model under the tokenizer's own chat template (left padding);
    None for a reply cut off at max_new_tokens before any end token (a partial verdict is not one)."""
    from tqdm import tqdm
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cfg_eos = model.generation_config.eos_token_id   # an id or a list of ids (e.g. <|im_end|> and <|endoftext|>)
    eos = {tokenizer.eos_token_id, *(cfg_eos if isinstance(cfg_eos, list) else [cfg_eos])} - {None}
    device = next(model.parameters()).device
    model.eval()
    replies = []
    for i in tqdm(range(0, len(conversations), batch_size), desc="judge", disable=not progress):
        prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                   for c in conversations[i:i + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=sorted(eos),
                             pad_token_id=tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        ended = torch.isin(new, torch.tensor(sorted(eos), device=new.device)).any(dim=1)
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        replies += [t if done or new.shape[1] < max_new_tokens else None for t, done in zip(texts, ended.tolist())]
    return replies


def hybrid_labels(rows: list[dict], verdicts: list, replied: list[bool] | None = None) -> tuple[list[dict], dict]:
    """Keep the rows where the rule verifier and the judge agree, labelled with that verdict.

    verdicts[i]: True / False from the judge, None when there is none: counted under no_reply where
    replied[i] is False (the request failed), else under no_verdict (a reply without a clear Yes/No).
    Returns (kept rows, stats): agreement = agreements / rows with a verdict. When the input carried
    labels, `gold_agreement` is the share of kept labels equal to them.
    """
    replied = [True] * len(rows) if replied is None else replied
    kept, stats = [], {"rows": len(rows), "no_reply": 0, "no_verdict": 0, "agree": 0, "rule_yes_judge_no": 0,
                       "rule_no_judge_yes": 0}
    for row, judged, answered in zip(rows, verdicts, replied, strict=True):
        if judged is None:
            stats["no_verdict" if answered else "no_reply"] += 1
            continue
        rule = verify.verify(row["completion"], row["reference"])
        if rule != judged:
            stats["rule_yes_judge_no" if rule else "rule_no_judge_yes"] += 1
            continue
        stats["agree"] += 1
        kept.append({**row, "label": int(rule), **({"gold_label": row["label"]} if row["label"] is not None else {})})
    judged = stats["rows"] - stats["no_reply"] - stats["no_verdict"]
    stats["agreement"] = round(stats["agree"] / max(judged, 1), 4)
    stats["kept_per_label"] = {str(y): sum(r["label"] == y for r in kept) for y in (1, 0)}
    gold = [r for r in kept if "gold_label" in r]
    if gold:
        stats["gold_agreement"] = round(sum(r["label"] == r["gold_label"] for r in gold) / len(gold), 4)
    return kept, stats


def judge_replies(rows: list[dict], args) -> tuple[list, dict]:
    """Ask the judge backend about every row: (replies, None where there is none; request counts)."""
    conversations = judge_conversations(rows)
    if args.judge == "openai":
        return chat_completions(args.judge_url, args.judge_model, conversations,
                                api_key=os.environ.get(args.judge_key_env), temperature=0.0,
                                max_tokens=args.judge_max_tokens, concurrency=args.concurrency, timeout=args.timeout)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    problem = model_folder_problem(args.judge_model)
    if problem:
        raise ValueError(f"{args.judge_model}: {problem}")
    model = AutoModelForCausalLM.from_pretrained(args.judge_model)
    replies = generate_replies(model, AutoTokenizer.from_pretrained(args.judge_model), conversations,
                               args.judge_max_tokens)
    return replies, {"ok": sum(r is not None for r in replies), "truncated": sum(r is None for r in replies),
                     "last_error": None}


def failure_summary(counts: dict) -> str:
    """'3 refused, 1 timeout' from a request count dict; 'none' when nothing failed."""
    return ", ".join(f"{counts[k]} {k}" for k in FAILURES if counts.get(k)) or "none"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert-gsm8k", help="GSM8K example_model_solutions.jsonl -> the Cooper format")
    c.add_argument("file")
    c.add_argument("out")
    a = sub.add_parser("annotate", help="hybrid labels: keep the triples where rule verifier and LLM judge agree")
    a.add_argument("file", help="question, reference_answer (or answer), completion; a label is optional")
    a.add_argument("out")
    a.add_argument("--judge", choices=["hf", "openai"], required=True,
                   help="hf: a local HF chat model folder; openai: an OpenAI-compatible server (e.g. vLLM's)")
    a.add_argument("--judge-model", required=True, help="hf: the model folder; openai: the served model name")
    a.add_argument("--judge-url", help="openai: the base URL, e.g. http://127.0.0.1:8000/v1")
    a.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="openai: environment variable holding the key")
    a.add_argument("--judge-max-tokens", type=at_least(1), default=1024)
    a.add_argument("--concurrency", type=at_least(1), default=8)
    a.add_argument("--timeout", type=above(0.0), default=120.0, help="seconds per request")
    a.add_argument("--limit", type=at_least(1), help="annotate the first N rows only")
    args = p.parse_args(argv)
    if args.cmd == "annotate" and args.judge == "openai" and not args.judge_url:
        p.error("--judge openai needs --judge-url URL")
    try:
        if args.cmd == "convert-gsm8k":
            rows = convert_gsm8k_solutions(args.file)
            write_cooper(args.out, rows)
            print(f"wrote {len(rows)} rows ({sum(r['label'] for r in rows)} correct) to {args.out}")
            return
        rows = read_labelled(args.file, need_label=False)[:args.limit]
        replies, counts = judge_replies(rows, args)
        judge = args.judge_url if args.judge == "openai" else args.judge_model
        server = f"; the server said: {counts['last_error']}" if counts.get("last_error") else ""
        if all(r is None for r in replies):   # nothing to label: say why instead of writing an empty file
            raise SystemExit(f"error: annotate: all {len(rows)} judge requests to {judge} failed "
                             f"({failure_summary(counts)}){server}")
        kept, stats = hybrid_labels(rows, [parse_verdict(r) for r in replies], [r is not None for r in replies])
        print(json.dumps(finite_or_none({"file": args.file, "judge": args.judge_model, "requests": counts,
                                         **stats}), allow_nan=False))
        if not kept:
            disagree = stats["rule_yes_judge_no"] + stats["rule_no_judge_yes"]
            raise SystemExit(f"error: annotate: no row kept of {len(rows)}: {stats['no_verdict']} replies "
                             f"without a verdict, {disagree} verdicts against the rule verifier's, "
                             f"{stats['no_reply']} requests failed ({failure_summary(counts)}){server}")
        write_cooper(args.out, kept)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    print(f"kept {len(kept)} of {len(rows)} rows in {args.out}: agreement {stats['agreement']:.3f} on the "
          f"{len(rows) - stats['no_reply'] - stats['no_verdict']} rows the judge gave a verdict on; dropped "
          f"{stats['no_reply']} without a reply ({failure_summary(counts)}) and {stats['no_verdict']} replies "
          f"without a verdict{server}")


if __name__ == "__main__":
    main()
