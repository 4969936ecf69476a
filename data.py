"""Data for Cooper: the toy arithmetic task, dataset loaders, chat prompts and the embedded tiny model.

Every record the rest of the project sees is {"question": str, "answer": str}: the question text and the
reference final answer that the rule verifier (verify.py) compares against. Toy records also carry a
"solution" (a short worked step ending in `#### n`) for the supervised warm-up.

Imports no project file.
"""

import json
import math
import os
import random
import sys

import torch
from transformers import (AutoTokenizer, Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification,
                          Qwen2Tokenizer)

# Appended to every question, toy and real alike, so the same verifier reads `#### n` from every completion.
ANSWER_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


# ---------------------------------------------------------------------------------------------------------
# Toy task: short sums and differences with one worked step per operation
# ---------------------------------------------------------------------------------------------------------

def _toy_problem(terms: list[int], ops: list[str]) -> dict:
    """[13, 5, 7], ['+', '-'] -> {"question": "13+5-7=?", "answer": "11",
    "solution": "13+5=18, 18-7=11\\n#### 11"}."""
    steps, total = [], terms[0]
    for op, term in zip(ops, terms[1:]):
        new = total + term if op == "+" else total - term
        steps.append(f"{total}{op}{term}={new}")
        total = new
    question = str(terms[0]) + "".join(op + str(t) for op, t in zip(ops, terms[1:])) + "=?"
    return {"question": question, "answer": str(total), "solution": ", ".join(steps) + f"\n#### {total}"}


def make_toy_problems(n: int, seed: int, n_terms: int = 2, max_value: int = 19) -> list[dict]:
    """n distinct problems with terms in 0..max_value joined by + or -; the same seed gives the same list.

    >>> make_toy_problems(1, seed=0)[0]
    {'question': '12+13=?', 'answer': '25', 'solution': '12+13=25\\n#### 25'}

    Answers may be negative ("3-7=?" -> "-4"). Raises ValueError when n exceeds the number of distinct
    problems, (max_value + 1)^n_terms * 2^(n_terms - 1).
    """
    n_possible = (max_value + 1) ** n_terms * 2 ** (n_terms - 1)
    if n > n_possible:
        raise ValueError(f"make_toy_problems: n={n} but only {n_possible} distinct problems exist with "
                         f"n_terms={n_terms}, max_value={max_value}")
    rng, seen, problems = random.Random(seed), set(), []
    while len(problems) < n:
        terms = [rng.randint(0, max_value) for _ in range(n_terms)]
        ops = [rng.choice("+-") for _ in range(n_terms - 1)]
        problem = _toy_problem(terms, ops)
        if problem["question"] not in seen:  # distinct questions keep train/test splits disjoint
            seen.add(problem["question"])
            problems.append(problem)
    return problems


def toy_splits(n_train: int, n_test: int, seed: int, **task_kwargs) -> tuple[list[dict], list[dict]]:
    """Disjoint (train, test) toy problems. The test split is drawn first, so it depends only on seed,
    n_test and the task: runs with different n_train are evaluated on the same problems.

    >>> train, test = toy_splits(100, 20, seed=0)
    >>> len(train), len(test), len({p["question"] for p in train} & {p["question"] for p in test})
    (100, 20, 0)
    """
    problems = make_toy_problems(n_test + n_train, seed, **task_kwargs)
    return problems[n_test:], problems[:n_test]


# ---------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------

def chat_prompt(tokenizer, question: str) -> str:
    """The tokenizer's own chat template over one user turn (question + answer instruction), ending where
    the assistant starts. With the tiny model's ChatML template:
    '<|im_start|>user\\n1+2=?\\nLet\\'s think ... "####".<|im_end|>\\n<|im_start|>assistant\\n'
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no chat template; use an instruct model")
    messages = [{"role": "user", "content": question + "\n" + ANSWER_INSTRUCTION}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# ---------------------------------------------------------------------------------------------------------
# Embedded tiny model
# ---------------------------------------------------------------------------------------------------------

CHATML_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                   "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_symbols() -> list[str]:
    """GPT-2's byte -> printable-character map: byte b is written as symbol [b]. Printable ASCII maps to
    itself; space is 'Ġ' and newline 'Ċ'. This is the alphabet the byte-level Qwen2 tokenizer works in."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(shifted)) for b in range(256)]


def make_char_tokenizer() -> Qwen2Tokenizer:
    """A character-level tokenizer that survives AutoTokenizer.

    The pitfall (TOY.md): for a folder whose config.json says model_type qwen2, transformers 5.x
    AutoTokenizer builds a Qwen2Tokenizer whatever tokenizer_config.json names (qwen2 is in its
    MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS list), i.e. a byte-level BPE; a WordLevel vocabulary of plain
    characters then loses every space and newline. So the tiny tokenizer *is* a Qwen2Tokenizer: byte-level
    BPE with the 256 byte symbols as its vocabulary and no merges, so one byte = one token and token id =
    byte value ("1 2" -> [49, 32, 50]). Any UTF-8 text round-trips, no unknown token is needed, and every
    loader (AutoTokenizer, PreTrainedTokenizerFast, Qwen2Tokenizer) builds the same tokenizer.
    Specials: 256 <|endoftext|> (pad), 257 <|im_start|>, 258 <|im_end|> (eos).
    """
    vocab = {symbol: b for b, symbol in enumerate(_byte_symbols())}
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: str, seed: int = 0, hidden_size: int = 128, num_layers: int = 2,
                     num_heads: int = 4, max_positions: int = 512) -> None:
    """Write out_dir/policy (Qwen2ForCausalLM) and out_dir/reward (Qwen2ForSequenceClassification, one
    logit), random init, same shape, each with the tokenizer: folders that load like any real model.

    >>> build_tiny_model("runs/tiny")  # ~0.6 M parameters each with the defaults
    >>> AutoModelForCausalLM.from_pretrained("runs/tiny/policy")
    """
    tokenizer = make_char_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         max_position_embeddings=max_positions, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    for name, model_class, num_labels in [("policy", Qwen2ForCausalLM, None), ("reward", Qwen2ForSequenceClassification, 1)]:
        torch.manual_seed(seed)
        if num_labels is not None:
            config.num_labels = num_labels  # pad_token_id above lets the classifier find each row's last token
        model = model_class(config)
        model.save_pretrained(os.path.join(out_dir, name))
        tokenizer.save_pretrained(os.path.join(out_dir, name))


def load_tokenizer(path: str):
    """AutoTokenizer.from_pretrained(path), left-padded for batched generation, with a pad token (eos when
    the model has none). Refuses a tokenizer that does not give back the text it encoded (the TOY.md
    pitfall: spaces and newlines silently dropped) with one clear error instead of training on it.
    """
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{path}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    probe = "12 + 3 = 15\n#### 15"
    decoded = tokenizer.decode(tokenizer(probe, add_special_tokens=False)["input_ids"])
    if decoded != probe:
        raise ValueError(f"{path}: {type(tokenizer).__name__} does not round-trip text: {probe!r} -> "
                         f"{decoded!r} (a character vocabulary under a qwen2 config? see data.make_char_tokenizer)")
    return tokenizer
