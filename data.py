"""Data for Cooper: the toy arithmetic task, dataset loaders, chat prompts, the embedded tiny model, and
loading tokenizers and causal LMs from local folders (every failure one ValueError line naming the path).

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

# transformers is imported inside the functions that build or load models: its model classes take seconds to
# import, and the toy task, the loaders and the prompts need none of them.

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
# Dataset loaders: each row parser returns (question, reference answer) or raises ValueError("field x: why")
# ---------------------------------------------------------------------------------------------------------

def _field(row: dict, path: str):
    """Dotted path with list indices: _field({"a": {"b": [1, 2]}}, "a.b.-1") -> 2."""
    if path in row:  # a flattened column named "a.b"
        return row[path]
    value = row
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            raise ValueError(f"field {path}: missing")
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(error: Exception) -> str:
    """A library's error as one line: transformers and pyarrow write paragraphs."""
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


def _text(value, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {name}: expected non-empty text, got {_short(value)}")
    return value.strip()


def _question_text(value, name: str) -> str:
    """A question is a string, or a chat list whose last user turn is the question (verl's `prompt`)."""
    if isinstance(value, list):
        user_turns = [m.get("content") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        if not user_turns:
            raise ValueError(f"field {name}: chat list without a user turn: {_short(value)}")
        value = user_turns[-1]
    return _text(value, name)


def _answer_text(value, name: str) -> str:
    """Reference answers as text; numbers as the verifier writes them: 51.0 -> '51', 2.5 -> '2.5'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(int(value)) if value == int(value) else repr(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"field {name}: expected a non-empty answer or a finite number, got {_short(value)}")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, nested braces included: 'so \\boxed{\\frac{1}{2}}.' -> '\\frac{1}{2}'."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip() or None
    return None


def _gsm8k(row):  # {"question", "answer": "...\n#### 1,234"} -> "1234"
    answer = _text(_field(row, "answer"), "answer")
    if "####" not in answer:
        raise ValueError(f"field answer: no '#### <final answer>' in {_short(answer)}")
    final = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not final:
        raise ValueError(f"field answer: nothing after '####' in {_short(answer)}")
    return _text(_field(row, "question"), "question"), final


def _math(row):  # MATH-500, AMC, AIME: {"problem", "answer"}
    return _text(_field(row, "problem"), "problem"), _answer_text(_field(row, "answer"), "answer")


def _minerva(row):  # {"problem", "solution": "... \\boxed{1.6} ..."}
    solution = _text(_field(row, "solution"), "solution")
    boxed = last_boxed(solution)
    if boxed is None:
        raise ValueError(f"field solution: no \\boxed{{...}} in {_short(solution[-60:])}")
    return _text(_field(row, "problem"), "problem"), boxed


def _olympiadbench(row):  # {"question", "context", "final_answer": ["$2^{1009}$"]} -> "2^{1009}"
    answers = _field(row, "final_answer")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError(f"field final_answer: expected a list of non-empty strings, got {_short(answers)}")
    unwrapped = [a.strip().removeprefix("$").removesuffix("$").strip() for a in answers]  # "$2^{1009}$" -> "2^{1009}"
    question = _text(_field(row, "question"), "question")
    if row.get("context"):  # some OlympiadBench subsets put shared setup text here
        question = _text(row["context"], "context") + "\n" + question
    return question, ", ".join(unwrapped)


def _svamp(row):  # {"Body": "... each pack", "Question": "How much ...?", "Answer": 51.0}
    body = _text(_field(row, "Body"), "Body")
    body = body if body.endswith(".") else body + "."
    return f"{body} {_text(_field(row, 'Question'), 'Question')}", _answer_text(_field(row, "Answer"), "Answer")


def _verl(row):  # {"prompt": [{"role": "user", "content": ...}], "reward_model": {"ground_truth": ...}}
    return (_question_text(_field(row, "prompt"), "prompt"),
            _answer_text(_field(row, "reward_model.ground_truth"), "reward_model.ground_truth"))


ROW_PARSERS = {"gsm8k": _gsm8k, "math": _math, "amc": _math, "aime": _math, "minerva": _minerva,
               "olympiadbench": _olympiadbench, "svamp": _svamp, "verl": _verl}


def detect_format(row: dict) -> str | None:
    """The loader whose fields this row has (first match wins; AIME/AMC rows hold `problem` and `question`)."""
    keys = set(row)
    for fmt, needed in [("verl", {"prompt", "reward_model"}), ("svamp", {"Body", "Question", "Answer"}),
                        ("olympiadbench", {"question", "final_answer"}), ("math", {"problem", "answer"}),
                        ("minerva", {"problem", "solution"}), ("gsm8k", {"question", "answer"})]:
        if needed <= keys:
            return fmt
    return None


# Windows tools (Notepad, PowerShell's Out-File, Excel's "CSV UTF-8") start UTF-8 files with this mark; it is
# not part of the first row.
_UTF8_BOM = b"\xef\xbb\xbf"


def _utf8(raw: bytes) -> str:
    """raw decoded as UTF-8, or ValueError('not valid UTF-8 (byte 0xff at position 12)'), the position
    counted in raw (for a .jsonl row: in that row)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at position {e.start})") from None


def _read_rows(path: str) -> list[tuple[int, object]]:
    """(row number, row) pairs. A .jsonl row stays undecoded bytes, numbered by line, so that a bad line -
    cut off, not JSON, not UTF-8 - is that row's error (skippable) rather than the whole file's."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, expected a .jsonl, .json or .parquet file")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: file not found")
    if not path.endswith((".jsonl", ".json", ".parquet")):
        raise ValueError(f"{path}: expected a .jsonl, .json (a list of rows) or .parquet file")
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet
        except ImportError:
            raise ValueError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        try:
            table = pyarrow.parquet.read_table(path)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid (truncated, not parquet) is a ValueError
            raise ValueError(f"{path}: not a readable parquet file: {_first_line(e)}") from None
        return list(enumerate(table.to_pylist(), 1))
    with open(path, "rb") as f:
        raw = f.read().removeprefix(_UTF8_BOM)
    if path.endswith(".json"):  # one document: a bad byte anywhere makes the whole file unreadable
        try:
            rows = json.loads(_utf8(raw))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON: {e}") from None
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
        return list(enumerate(rows, 1))
    return [(n, line) for n, line in enumerate(raw.split(b"\n"), 1) if line.strip()]


def load_records(path: str, fmt: str = "auto", question_field: str | None = None,
                 answer_field: str | None = None, skip_bad: bool = False) -> list[dict]:
    """[{"question", "answer"}] from a .jsonl, .json (list) or .parquet file.

    fmt: 'auto' (from the first row's fields) or one of ROW_PARSERS; question_field/answer_field (dotted
    paths, e.g. 'reward_model.ground_truth') read any file. A malformed row raises
    ValueError('<file>: row <n>: field <name>: <problem>'); skip_bad=True skips such rows instead and
    prints one line, 'skipped 3 of 1000 rows in <file>: ...'. Files are UTF-8 (a leading byte-order mark is
    ignored); a .jsonl line that is not UTF-8 is that row's error, like any other malformed row.

    >>> load_records("gsm8k/test.jsonl")[0]["answer"]   # doctest: +SKIP
    '18'
    """
    if question_field or answer_field:
        if not (question_field and answer_field) or fmt != "auto":
            raise ValueError(f"{path}: give both question_field and answer_field (and fmt='auto'), "
                             f"got {question_field!r}, {answer_field!r}, fmt={fmt!r}")
        parse = lambda row: (_question_text(_field(row, question_field), question_field),
                             _answer_text(_field(row, answer_field), answer_field))
    elif fmt == "auto":
        parse = None  # the first well-formed row decides
    elif fmt in ROW_PARSERS:
        parse = ROW_PARSERS[fmt]
    else:
        raise ValueError(f"{path}: unknown format {fmt!r}; choose auto or one of {', '.join(ROW_PARSERS)}")
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no rows")
    records, skipped = [], []
    for n, row in rows:
        try:
            if isinstance(row, bytes):  # a .jsonl line
                try:
                    row = json.loads(_utf8(row))
                except json.JSONDecodeError as e:
                    raise ValueError(f"invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"expected an object, got {_short(row)}")
            if parse is None:
                detected = detect_format(row)
                if detected is None:
                    raise ValueError(f"cannot tell the format from fields {sorted(row)}; "
                                     "name them with question_field and answer_field")
                parse = ROW_PARSERS[detected]
            question, answer = parse(row)
        except ValueError as e:
            if not skip_bad:
                raise ValueError(f"{path}: row {n}: {e}") from None
            skipped.append(f"row {n}: {e}")
            continue
        records.append({"question": question, "answer": answer})
    if skipped:
        shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        print(f"skipped {len(skipped)} of {len(rows)} rows in {path}: {shown}", file=sys.stderr)
    if not records:
        raise ValueError(f"{path}: no usable rows ({len(skipped)} skipped)")
    return records


def batch_for_step(records: list, step: int, batch_size: int, seed: int) -> list:
    """The prompts of one step: epoch-wise shuffles of the training set, a pure function of (step, seed)
    so that a resumed run sees exactly the prompts of an uninterrupted one."""
    per_epoch = len(records) // batch_size
    epoch, k = divmod(step, per_epoch)
    order = list(range(len(records)))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [records[i] for i in order[k * batch_size:(k + 1) * batch_size]]


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


# Whole tokens of the tiny tokenizer for the fixed strings every toy sequence repeats: VerifyRM's template tags
# (reward.TEMPLATE; test_data checks they match), the answer instruction and the chat roles - what a BPE tokenizer
# trained on this corpus would merge. The text is unchanged (it decodes to the same characters); a policy prompt
# is 14 tokens instead of 92 and a VerifyRM input ~31 instead of ~108, which makes the toy 3-4x cheaper to train.
TINY_MERGES = ("<question>", "</question>", "<reference_answer>", "</reference_answer>", "<completion>",
               "</completion>", ANSWER_INSTRUCTION, "user\n", "assistant\n")


def make_char_tokenizer() -> "transformers.Qwen2Tokenizer":
    """A character-level tokenizer that survives AutoTokenizer.

    The pitfall: for a folder whose config.json says model_type qwen2, transformers 5.x
    AutoTokenizer builds a Qwen2Tokenizer whatever tokenizer_config.json names (qwen2 is in its
    MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS list), i.e. a byte-level BPE; a WordLevel vocabulary of plain
    characters then loses every space and newline. So the tiny tokenizer *is* a Qwen2Tokenizer: byte-level
    BPE with the 256 byte symbols as its vocabulary and no merges, so one byte = one token and token id =
    byte value ("1 2" -> [49, 32, 50]). Any UTF-8 text round-trips, no unknown token is needed, and every
    loader (AutoTokenizer, PreTrainedTokenizerFast, Qwen2Tokenizer) builds the same tokenizer.
    Specials: 256 <|endoftext|> (pad), 257 <|im_start|>, 258 <|im_end|> (eos); then one token per TINY_MERGES
    string (259 "<question>", ...), matched before the bytes and decoded back to the same text.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer
    vocab = {symbol: b for b, symbol in enumerate(_byte_symbols())}
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"])
    tokenizer.add_tokens([AddedToken(text, normalized=False, special=False) for text in TINY_MERGES])
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(out_dir: str, seed: int = 0, hidden_size: int = 128, num_layers: int = 2,
                     num_heads: int = 4, max_positions: int = 512) -> None:
    """Write out_dir/policy (Qwen2ForCausalLM) and out_dir/reward (Qwen2ForSequenceClassification, one
    logit), random init, same shape (~0.6 M parameters each with the defaults), each with the tokenizer:
    folders that load like any real model.

    >>> build_tiny_model("runs/tiny")   # doctest: +SKIP
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification
    tokenizer = make_char_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
                         max_position_embeddings=max_positions, bos_token_id=None,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(os.path.join(out_dir, "policy"))
    config.num_labels = 1  # VerifyRM: one logit; pad_token_id above lets it find each row's last real token
    torch.manual_seed(seed)
    Qwen2ForSequenceClassification(config).save_pretrained(os.path.join(out_dir, "reward"))
    for name in ["policy", "reward"]:
        tokenizer.save_pretrained(os.path.join(out_dir, name))


# ---------------------------------------------------------------------------------------------------------
# Loading models: local folders only, each failure one line naming the path
# ---------------------------------------------------------------------------------------------------------

# Any one of these makes a folder hold a tokenizer that AutoTokenizer can build.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _local_folder(path: str, gguf_file: str | None) -> None:
    """Refuse a path that is not a local folder (holding gguf_file, if given). transformers takes a path
    that does not exist for a hub id, and this project never downloads: the user mistyped a path."""
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such model folder (models load from local folders only, never downloaded)")
    if not os.path.isdir(path):
        hint = "; for a GGUF file give its folder and gguf_file" if path.endswith(".gguf") else ""
        raise ValueError(f"{path}: expected a model folder, got a file{hint}")
    if gguf_file is not None and not os.path.isfile(os.path.join(path, gguf_file)):
        raise ValueError(f"{path}: no GGUF file {gguf_file!r} in this folder")


def load_tokenizer(path: str, gguf_file: str | None = None):
    """AutoTokenizer.from_pretrained(path), left-padded for batched generation, with a pad token (eos when
    the model has none). gguf_file: read the tokenizer from that GGUF file in the folder instead.

    Raises one ValueError naming the path when the path does not exist, is not a folder with a tokenizer,
    or holds a tokenizer that does not give back the text it encoded (the pitfall of make_char_tokenizer: spaces and
    newlines silently dropped), instead of a traceback or a run trained on mangled text.
    """
    from transformers import AutoTokenizer
    _local_folder(path, gguf_file)
    if gguf_file is None and not any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES):
        raise ValueError(f"{path}: not a model folder: no tokenizer in it (none of {', '.join(TOKENIZER_FILES)})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file, local_files_only=True)
    except Exception as e:  # whatever transformers raises for a broken folder, say it in one line
        raise ValueError(f"{path}: cannot load its tokenizer: {type(e).__name__}: {_first_line(e)}") from None
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


def load_causal_lm(path: str, dtype: torch.dtype = torch.float32, gguf_file: str | None = None):
    """AutoModelForCausalLM from a local folder (or from the GGUF file gguf_file in it), every parameter in
    `dtype` whatever dtype the checkpoint was saved in.

    Why the dtype is forced: real checkpoints ship in bf16, and from_pretrained without a dtype keeps them
    in bf16, where AdamW's steps at the paper's learning rates are smaller than half the spacing between
    neighbouring bf16 values of most weights and round away: the model silently does not learn. Training
    keeps fp32 master weights (this function's default) and computes in bf16 under autocast.

    Raises one ValueError naming the path when the path does not exist, is not a model folder, holds no
    weights, or the checkpoint has no LM head: a sequence-classifier folder (the VerifyRM) given as the
    policy, which transformers loads with a freshly initialised lm_head and mentions only in its load report.
    """
    from transformers import AutoModelForCausalLM
    _local_folder(path, gguf_file)
    if gguf_file is None and not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"{path}: not a model folder: no config.json in it")
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, dtype=dtype,
                                                           local_files_only=True, output_loading_info=True)
    except Exception as e:  # no weights, unknown model type, truncated safetensors...: one line
        raise ValueError(f"{path}: cannot load a causal LM: {type(e).__name__}: {_first_line(e)}") from None

    # The LM head must come from the checkpoint, not be freshly initialised. A model with tie_word_embeddings
    # stores no lm_head.weight (it is the input embedding), so a tied head weight is never missing.
    head = model.get_output_embeddings()
    kind = ", ".join(getattr(model.config, "architectures", None) or []) or "an unknown architecture"
    if head is None:
        raise ValueError(f"{path}: the model has no LM head (saved as {kind})")
    head_name = next(name for name, module in model.named_modules() if module is head)
    tied = head.weight is model.get_input_embeddings().weight
    expected = {f"{head_name}.{name}" for name, _ in head.named_parameters() if not (tied and name == "weight")}
    missing = expected & set(info["missing_keys"])
    if missing:
        raise ValueError(f"{path}: the checkpoint has no LM head ({', '.join(sorted(missing))} not in it; saved as "
                         f"{kind}): a reward-model folder given where a policy is expected?")

    # from_pretrained may keep some modules in another precision (_keep_in_fp32_modules); the optimizer
    # must see one dtype. Integer parameters are quantized weights that cannot be trained.
    if any(not p.is_floating_point() for p in model.parameters()):
        raise ValueError(f"{path}: the weights load quantized ({gguf_file or 'checkpoint'}); training needs dense weights")
    if any(p.dtype != dtype for p in model.parameters()):
        model.to(dtype)
    if gguf_file is not None:
        # transformers de-quantized every GGUF tensor (all parameters are dense floats, checked above) but
        # leaves its GGUF quantizer on the model, and save_pretrained then refuses. The model is a plain one.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model
