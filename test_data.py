"""Tests for data.py: toy task, loaders, prompts, tiny model and tokenizer round trip. Run: pytest test_data.py"""

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

import data

SHARED_DATA = Path(__file__).parent.parent / "shared" / "data"


# --- toy task ---------------------------------------------------------------------------------------------

def _evaluate_question(question: str) -> int:
    """'13+5-7=?' -> 11, by parsing the terms (no eval)."""
    tokens = re.fullmatch(r"(\d+(?:[+-]\d+)*)=\?", question).group(1)
    return sum(int(t) for t in re.findall(r"[+-]?\d+", tokens))


def test_toy_is_deterministic_and_distinct():
    a, b = data.make_toy_problems(300, seed=3), data.make_toy_problems(300, seed=3)
    assert a == b
    assert a != data.make_toy_problems(300, seed=4)
    assert len({p["question"] for p in a}) == 300


@pytest.mark.parametrize("n_terms,max_value", [(2, 19), (3, 9), (4, 50)])
def test_toy_answers_are_correct_and_verifier_checkable(n_terms, max_value):
    for p in data.make_toy_problems(200, seed=0, n_terms=n_terms, max_value=max_value):
        assert p["answer"] == str(_evaluate_question(p["question"]))
        assert p["solution"].endswith(f"\n#### {p['answer']}")
        assert re.findall(r"#### (-?\d+)", p["solution"]) == [p["answer"]]
        steps = p["solution"].split("\n")[0].split(", ")
        assert len(steps) == n_terms - 1
        for step in steps:  # every worked step is true arithmetic: "18-7=11"
            lhs, rhs = step.split("=")
            a, op, b = re.fullmatch(r"(-?\d+)([+-])(\d+)", lhs).groups()
            assert int(a) + (int(b) if op == "+" else -int(b)) == int(rhs)
    assert "-" in "".join(p["answer"] for p in data.make_toy_problems(50, seed=0))  # negatives do occur


def test_toy_too_many_problems_is_a_clear_error():
    assert len(data.make_toy_problems(2 * 3 * 3, seed=0, max_value=2)) == 18  # all of them
    with pytest.raises(ValueError, match="only 18 distinct"):
        data.make_toy_problems(19, seed=0, max_value=2)


def test_toy_splits_disjoint_and_test_split_stable():
    train, test = data.toy_splits(500, 200, seed=1)
    assert len(train) == 500 and len(test) == 200
    assert not {p["question"] for p in train} & {p["question"] for p in test}
    train2, test2 = data.toy_splits(100, 200, seed=1)
    assert test2 == test and not {p["question"] for p in train2} & {p["question"] for p in test}
    _, test3 = data.toy_splits(100, 200, seed=2)
    assert test3 != test


# --- tiny model and tokenizer -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    data.build_tiny_model(str(out), seed=0)
    return out


ROUND_TRIP_TEXTS = ["13 + 5 = 18\n#### 18", "  two  spaces\n\n\nnewlines \t tab", "#### -42", "\\boxed{\\frac{1}{2}}",
                    "Janet\u2019s ducks caf\u00e9 \u00e9t\u00e9 \u4e2d", ""]


@pytest.mark.parametrize("loader", [AutoTokenizer.from_pretrained, data.load_tokenizer])
def test_tokenizer_round_trip(tiny, loader):
    tok = loader(str(tiny / "policy"))
    for text in ROUND_TRIP_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert tok("1 2\n#", add_special_tokens=False)["input_ids"] == [49, 32, 50, 10, 35]  # one byte, one token
    prompt = data.chat_prompt(tok, "7-3=?")
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == prompt
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and ids.count(tok.eos_token_id) == 1


def test_load_tokenizer_settings(tiny):
    tok = data.load_tokenizer(str(tiny / "policy"))
    assert tok.padding_side == "left"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id and len(tok) == 259
    batch = tok(["1", "123"], padding=True)["input_ids"]
    assert batch[0] == [tok.pad_token_id] * 2 + [49]


def test_load_tokenizer_refuses_the_pitfall(tiny, tmp_path):
    """A WordLevel character vocabulary next to a qwen2 config.json comes back as a Qwen2Tokenizer that
    drops spaces and newlines (TOY.md): load_tokenizer must refuse it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {c: i for i, c in enumerate(["<unk>", "<eos>", *map(chr, range(32, 127)), "\n"])}
    wordlevel = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    wordlevel.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    wordlevel.decoder = decoders.Fuse()
    PreTrainedTokenizerFast(tokenizer_object=wordlevel, unk_token="<unk>", eos_token="<eos>").save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((tiny / "policy" / "config.json").read_text())
    with pytest.raises(ValueError, match="does not round-trip"):
        data.load_tokenizer(str(tmp_path))


def test_tiny_model_loads_and_runs(tiny):
    tok = data.load_tokenizer(str(tiny / "policy"))
    policy = AutoModelForCausalLM.from_pretrained(str(tiny / "policy"))
    reward = AutoModelForSequenceClassification.from_pretrained(str(tiny / "reward"))
    assert type(policy).__name__ == "Qwen2ForCausalLM" and type(reward).__name__ == "Qwen2ForSequenceClassification"
    assert 0.3e6 < sum(p.numel() for p in policy.parameters()) < 1e6
    assert policy.generation_config.eos_token_id == tok.eos_token_id
    assert reward.config.num_labels == 1 and reward.config.pad_token_id == tok.pad_token_id
    batch = tok([data.chat_prompt(tok, "1+2=?"), data.chat_prompt(tok, "10+12=?")], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = policy(**batch).logits
        scores = reward(**batch).logits
        alone = reward(**tok([data.chat_prompt(tok, "1+2=?")], return_tensors="pt")).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], 259) and torch.isfinite(logits).all()
    assert scores.shape == (2, 1)
    assert torch.allclose(scores[0], alone[0], atol=1e-5)  # left padding does not change the score
    out = policy.generate(**batch, max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] <= batch["input_ids"].shape[1] + 5


def test_tiny_model_seeded(tiny, tmp_path):
    data.build_tiny_model(str(tmp_path / "same"), seed=0)
    data.build_tiny_model(str(tmp_path / "other"), seed=1, hidden_size=64, num_layers=1, num_heads=2)
    w = lambda d: AutoModelForCausalLM.from_pretrained(str(d / "policy")).model.embed_tokens.weight
    assert torch.equal(w(tiny), w(tmp_path / "same"))
    other = AutoModelForCausalLM.from_pretrained(str(tmp_path / "other" / "policy"))
    assert other.config.hidden_size == 64 and other.config.num_hidden_layers == 1


def test_chat_prompt_uses_the_tokenizers_own_template(tiny):
    tok = data.load_tokenizer(str(tiny / "policy"))
    assert data.chat_prompt(tok, "2+2=?") == ("<|im_start|>user\n2+2=?\n" + data.ANSWER_INSTRUCTION +
                                              "<|im_end|>\n<|im_start|>assistant\n")
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}{% if add_generation_prompt %} >>{% endif %}"
    assert data.chat_prompt(tok, "2+2=?") == "[user] 2+2=?\n" + data.ANSWER_INSTRUCTION + " >>"
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        data.chat_prompt(tok, "2+2=?")
