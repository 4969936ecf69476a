"""The OpenAI-compatible client (annotate.chat_completions) and what talks to an LLM endpoint through it -
Cooper's `--assistant openai` and `annotate.py annotate --judge openai` - against real local HTTP servers the
tests start on 127.0.0.1: one that generates with the tiny model, one that stalls, ones that fail.

ChatServer is a minimal /v1/chat/completions server (standard library http.server, one thread per request)
that also counts what it saw: requests, the most in flight at once, the replies it sent.
"""
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import annotate
import cooper
import data
import grpo
import verify


# What vLLM's OpenAI server answers to max_tokens above the context (HTTP 400)
REFUSAL = json.dumps({"error": {"message": "max_tokens=1024 cannot be greater than max_model_len=512. Please "
                                           "request fewer output tokens.", "type": "BadRequestError",
                                "param": None, "code": 400}}).encode()


class ChatServer:
    """behaviour: "generate" (the model's own sampled or greedy reply), "stall" (never answers), "error"
    (HTTP 500), "garbled" (200 with broken JSON), "refuse" (HTTP 400 with vLLM's body for a too-large
    max_tokens), "yes" (a judge that always says "Verdict: Yes"), "sum" (a reply with no verdict in it, as a
    math-only model writes), "length" (a reply cut off at max_tokens).
    fail_first: that many requests get a 500 before the behaviour applies. hold: seconds each request stays
    in flight after its reply is ready."""

    def __init__(self, model=None, tokenizer=None, behaviour="generate", fail_first=0, hold=0.0):
        self.model, self.tokenizer, self.behaviour = model, tokenizer, behaviour
        self.fail_first, self.hold = fail_first, hold
        self.requests, self.in_flight, self.max_in_flight = 0, 0, 0
        self.replies, self.auth = [], []
        self.lock, self.generate_lock, self.release = threading.Lock(), threading.Lock(), threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.release.set()   # free stalled handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def leave(self):   # once per request, BEFORE the reply goes out: once the client has it, it may send more
                if self.counted:
                    self.counted = False
                    with server.lock:
                        server.in_flight -= 1

            def send(self, code, payload: bytes):
                self.leave()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                with server.lock:
                    server.requests += 1
                    n = server.requests
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                self.counted = True
                try:
                    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    server.auth.append(self.headers.get("Authorization"))
                    if self.path != "/v1/chat/completions" or server.behaviour == "refuse":
                        return self.send(400, REFUSAL)
                    if server.behaviour == "stall":
                        server.release.wait(30)
                        return
                    if n <= server.fail_first or server.behaviour == "error":
                        return self.send(500, b'{"error": {"message": "internal error"}}')
                    if server.behaviour == "garbled":
                        return self.send(200, b'{"choices": [{"message": {"content": "half a rep')
                    if server.behaviour in ("yes", "sum", "length"):
                        text, finish = {"yes": ("The final answers match.\nVerdict: Yes", "stop"),
                                        "sum": ("3+2=5\n#### 5", "stop"),
                                        "length": ("The student's final answer is", "length")}[server.behaviour]
                        return self.send(200, json.dumps({"choices": [{"index": 0, "finish_reason": finish,
                                         "message": {"role": "assistant", "content": text}}]}).encode())
                    self.send(200, json.dumps(server.complete(body)).encode())
                finally:
                    self.leave()

        return Handler

    def complete(self, body: dict) -> dict:
        """One chat completion from the model: its own chat template, real generation."""
        tok = self.tokenizer
        prompt = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        with self.generate_lock:   # one generate at a time: the model is shared by the handler threads
            out = grpo.generate_rollouts(self.model, tok, [prompt], 1, int(body.get("max_tokens", 64)),
                                         temperature=float(body.get("temperature", 1.0)))
        time.sleep(self.hold)
        text, used = out.texts[0], int(out.response_mask.sum())
        finished = bool((out.response_ids[0, :used] == tok.eos_token_id).any())
        with self.lock:
            self.replies.append(text)
        return {"id": f"chatcmpl-{self.requests}", "object": "chat.completion", "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop" if finished else "length"}],
                "usage": {"prompt_tokens": int(out.prompt_mask.sum()), "completion_tokens": used}}


@pytest.fixture(scope="module")
def toy(toy_start):
    """The shared embedded toy start (a policy that writes `a+b=c\\n#### c`), loaded: (dir, model, tokenizer)."""
    from transformers import AutoModelForCausalLM
    tok = data.load_tokenizer(str(toy_start / "policy"))
    return toy_start, AutoModelForCausalLM.from_pretrained(str(toy_start / "policy")).eval(), tok


def ask(n):
    """n distinct toy questions, asked the way the toy policy was trained (so it answers, not stays silent)."""
    return [[{"role": "user", "content": f"{i % 20}+{i // 20 + 3}=?\n{data.ANSWER_INSTRUCTION}"}] for i in range(n)]


# ----------------------------------------------------------------------------------------------------
# The client

def test_replies_are_the_models_own_generation(toy):
    _, model, tok = toy
    convs = ask(3)
    with ChatServer(model, tok) as srv:
        replies, counts = annotate.chat_completions(srv.url, "toy", convs, api_key="sk-test", temperature=0.0,
                                                    max_tokens=24)
    local = grpo.generate_rollouts(model, tok, [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                                                for c in convs], 1, 24, temperature=0.0)
    finished = [bool((ids == tok.eos_token_id).any()) for ids in local.response_ids]
    # greedy through HTTP == greedy in process; an empty reply (EOS first) comes back as None, counted "empty",
    # and so does one cut off at max_tokens, counted "truncated"
    assert replies == [t if t.strip() and done else None for t, done in zip(local.texts, finished)] and any(replies)
    assert counts["ok"] == sum(r is not None for r in replies) and counts["truncated"] == finished.count(False)
    assert counts["ok"] + counts["empty"] + counts["truncated"] == 3
    assert counts["error"] + counts["garbled"] + counts["timeout"] + counts["refused"] + counts["retries"] == 0
    assert counts["last_error"] is None and srv.auth == ["Bearer sk-test"] * 3


@pytest.mark.parametrize("concurrency,n", [(3, 12), (8, 16)])
def test_concurrency_limit_holds(toy, concurrency, n):
    # 8 is above asyncio's default thread pool on a 2-core machine (cpus + 4 = 6): the client must not cap it.
    _, model, tok = toy
    with ChatServer(model, tok, hold=1.0) as srv:   # long enough that all are in flight on a busy machine
        replies, counts = annotate.chat_completions(srv.url, "toy", ask(n), max_tokens=4, concurrency=concurrency)
    # the toy model leaves some 4-token replies empty, and the client asks again for those: every item is answered,
    # cut off or empty after its retries, and every request the server saw is an item's first try or a retry
    assert counts["ok"] + counts["empty"] + counts["truncated"] == n and srv.requests == n + counts["retries"]
    assert srv.max_in_flight == concurrency


def test_a_reply_cut_off_at_max_tokens_is_truncated_not_ok(toy):
    _, model, tok = toy
    with ChatServer(model, tok) as srv:   # the model's own 3-token start of `a+b=c\n#### c`
        replies, counts = annotate.chat_completions(srv.url, "toy", ask(2), temperature=0.0, max_tokens=3)
    assert replies == [None, None] and counts["truncated"] == 2 and counts["ok"] == 0
    assert srv.requests == 2 and "max_tokens=3" in counts["last_error"]   # not retried: it would be cut again
    with ChatServer(behaviour="length") as srv:
        replies, counts = annotate.chat_completions(srv.url, "m", ask(1))
    assert replies == [None] and counts["truncated"] == 1


def test_a_stalling_server_times_out_and_masks_every_item():
    with ChatServer(behaviour="stall") as srv:
        t0 = time.time()
        replies, counts = annotate.chat_completions(srv.url, "m", ask(3), timeout=0.5, retries=1, backoff=0.05)
        elapsed = time.time() - t0
    assert replies == [None] * 3
    assert counts["timeout"] == 3 and counts["retries"] == 3 and counts["ok"] == 0
    assert srv.requests == 6 and elapsed < 5   # 2 tries x 0.5 s each, in parallel
    assert "timed out" in counts["last_error"] and srv.url in counts["last_error"]


@pytest.mark.parametrize("behaviour,key,said", [("error", "error", "HTTP 500: internal error"),
                                                ("garbled", "garbled", "not a chat completion: b'{\"choices\"")])
def test_a_failing_server_is_retried_with_backoff_then_masked(behaviour, key, said):
    with ChatServer(behaviour=behaviour) as srv:
        t0 = time.time()
        replies, counts = annotate.chat_completions(srv.url, "m", ask(2), retries=2, backoff=0.2)
        elapsed = time.time() - t0
    assert replies == [None, None] and counts[key] == 2 and counts["retries"] == 4
    assert srv.requests == 6 and elapsed >= 0.2 + 0.4   # backoff 0.2 s, then 0.4 s
    assert counts["last_error"].startswith(said)


def test_a_refusal_is_not_retried_and_a_transient_error_recovers(toy):
    with ChatServer(behaviour="refuse") as srv:
        replies, counts = annotate.chat_completions(srv.url, "m", ask(2), retries=3, backoff=0.01)
    assert replies == [None, None] and counts["refused"] == 2 and srv.requests == 2
    # the server's own reason, first line of its JSON message
    assert counts["last_error"] == ("HTTP 400: max_tokens=1024 cannot be greater than max_model_len=512. "
                                    "Please request fewer output tokens.")
    _, model, tok = toy
    with ChatServer(model, tok, fail_first=1) as srv:
        replies, counts = annotate.chat_completions(srv.url, "toy", ask(1), temperature=0.0, max_tokens=24,
                                                    retries=2, backoff=0.01)
    assert isinstance(replies[0], str) and counts["ok"] == 1 and counts["retries"] == 1 and srv.requests == 2
    assert counts["last_error"] == "HTTP 500: internal error"   # the failed try that was retried


def test_no_server_at_all_is_an_error_not_a_crash():
    replies, counts = annotate.chat_completions("http://127.0.0.1:9/v1", "m", ask(2), retries=1, backoff=0.01)
    assert replies == [None, None] and counts["error"] == 2 and "Connection refused" in counts["last_error"]


# ----------------------------------------------------------------------------------------------------
# Cooper's assistant through the endpoint

def test_openai_assistant_negatives_are_generated_and_checked(toy):
    _, model, tok = toy
    problems = [(a, b) for a in (3, 7, 12, 15) for b in (4, 9)]
    questions, references = [f"{a}+{b}=?" for a, b in problems], [str(a + b) for a, b in problems]
    texts = [f"{a}+{b}={a + b}\n#### {a + b}" for a, b in problems]   # one correct rollout per prompt (G = 1)
    torch.manual_seed(0)
    with ChatServer(model, tok) as srv:
        rewrite = cooper.make_assistant(cooper.parse_args(["--assistant", "openai", "--assistant-model", "toy",
                                                           "--assistant-url", srv.url]))
        pairs = cooper.make_pairs(questions, references, texts, [True] * len(texts), 1, rewrite,
                                  [random.Random(i) for i in range(len(questions))], positive="first")
    valid = [m == 1.0 for m in pairs["mask"]]
    assert sum(valid) >= 2, pairs   # the toy policy does write `#### n` rewrites, most with another n
    for i, ok in enumerate(valid):
        if ok:   # an accepted negative is the server's text, has a final answer, and that answer is wrong
            assert pairs["negatives"][i] in srv.replies
            assert cooper.negative_rejection(pairs["negatives"][i], texts[i], references[i]) is None
            assert not verify.verify(pairs["negatives"][i], references[i])
    # every rewrite asked for is a reply or a counted failure (the toy model cuts some off at max_tokens and leaves
    # some empty, even after the client's retries: no negative, never an exception), every HTTP request the server
    # saw is one of those or a retry, and every reply was judged: accepted or rejected
    asked = pairs["requests"]
    failed = sum(asked.get(k, 0) for k in annotate.FAILURES)
    assert pairs["assistant_failed"] == failed and asked["ok"] + failed + asked["retries"] == srv.requests
    assert sum(valid) + pairs["negatives_rejected"] == asked["ok"]
    assert pairs["no_negative"] == len(problems) - sum(valid)


@pytest.mark.parametrize("behaviour", ["generate", "refuse"])
def test_one_cooper_step_with_an_openai_assistant(toy, tmp_path, behaviour):
    toy_dir, model, tok = toy
    with ChatServer(model, tok, behaviour=behaviour) as srv:
        args = cooper.parse_args(["--reward", "cooper", "--steps", "1", "--out", str(tmp_path / "run"),
                                  "--toy-dir", str(toy_dir), "--eval-size", "4", "--prompts-per-step", "16",
                                  "--group-size", "4", "--assistant", "openai", "--assistant-url", srv.url,
                                  "--assistant-model", "toy", "--assistant-timeout", "20"])
        cooper.train(args)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert row["valid_pairs"] + row["no_positive"] + row["no_negative"] == 16
    assert torch.isfinite(torch.tensor(row["pg_loss"]))
    # 64 rollouts of the toy start hold a rule-correct one (seeded), so the assistant was asked
    assert row["no_positive"] < 16 and srv.requests > 0
    if behaviour == "refuse":    # every request refused: counted, masked, and the step still ran
        assert row["valid_pairs"] == 0 and row["assistant_failed"] == srv.requests and row["rm_loss"] is None
    else:   # the toy model's failures are rewrites cut off at max_tokens or left empty (counted, not used); the
        # rest were answered
        failures = row.get("assistant_failures", {})
        assert row["assistant_failed"] == failures.get("truncated", 0) + failures.get("empty", 0)
        assert row["assistant_ok"] > 0


# ----------------------------------------------------------------------------------------------------
# The LLM judge through the endpoint

def _triples(tmp_path):
    """8 unlabelled triples, 4 with the right final answer."""
    src = tmp_path / "triples.jsonl"
    src.write_text("".join(json.dumps({"question": f"{a}+2=?", "reference_answer": str(a + 2),
                                       "completion": f"{a}+2={a + 2 + d}\n#### {a + 2 + d}"}) + "\n"
                           for a in range(4) for d in (0, 1)))
    return src


def _annotate(src, out, url, *extra):
    annotate.main(["annotate", str(src), str(out), "--judge", "openai", "--judge-url", url, "--judge-model", "toy",
                   *extra])


def test_annotate_with_an_openai_judge_keeps_agreements_and_counts_every_row(tmp_path, capsys):
    src, out = _triples(tmp_path), tmp_path / "kept.jsonl"
    with ChatServer(behaviour="yes") as srv:   # says Yes to all: agrees with the rule on the 4 right answers
        _annotate(src, out, srv.url)
    printed = capsys.readouterr().out.splitlines()
    stats = json.loads(printed[0])
    assert srv.requests == 8 and stats["requests"]["ok"] == 8 and stats["agree"] == 4
    assert stats["rule_no_judge_yes"] == 4 and stats["no_reply"] == stats["no_verdict"] == 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in kept] == [1] * 4 and all(r["completion"].endswith(r["reference_answer"]) for r in kept)
    assert printed[1].startswith(f"kept 4 of 8 rows in {out}: agreement 0.500 on the 8 rows")


def test_annotate_says_which_replies_had_no_verdict(tmp_path, capsys):
    src, out = _triples(tmp_path), tmp_path / "kept.jsonl"
    # a judge that answers in sums, not Yes/No: its replies carry no verdict, and nothing can be kept
    with ChatServer(behaviour="sum") as srv, pytest.raises(SystemExit, match=r"no row kept of 8: 8 replies without"):
        _annotate(src, out, srv.url, "--judge-max-tokens", "64")
    stats = json.loads(capsys.readouterr().out.splitlines()[0])
    assert srv.requests == 8 and stats["no_reply"] + stats["no_verdict"] + stats["agree"] == 8 - (
        stats["rule_yes_judge_no"] + stats["rule_no_judge_yes"])
    assert stats["no_reply"] == sum(stats["requests"][k] for k in annotate.FAILURES) and not out.exists()


@pytest.mark.parametrize("behaviour,said", [("refuse", r"8 refused\); the server said: HTTP 400: max_tokens=1024"),
                                            ("length", r"8 truncated\); the server said: reply cut at max_tokens")])
def test_annotate_stops_when_every_judge_request_fails(tmp_path, behaviour, said):
    src, out = _triples(tmp_path), tmp_path / "kept.jsonl"
    with ChatServer(behaviour=behaviour) as srv, pytest.raises(SystemExit) as stop:
        _annotate(src, out, srv.url)
    assert str(stop.value).startswith(f"error: annotate: all 8 judge requests to {srv.url} failed (")
    assert re.search(said, str(stop.value)) and "\n" not in str(stop.value) and not out.exists()
