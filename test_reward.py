"""Tests of reward.py: the VerifyRM template, truncation, losses, update steps (pre-training and Cooper's
stage 2), precision, model checks, labelled-file I/O and the train/eval CLI, on tiny real models."""
import copy
import doctest
import json
from pathlib import Path

import pytest
import torch

import data
import reward

ROOT = Path(__file__).parent


def test_docstring_examples_hold():
    result = doctest.testmod(reward)
    assert result.attempted > 0 and result.failed == 0


@pytest.fixture
def tiny(tmp_path):
    """A fresh tiny model folder: tiny/policy (causal LM) and tiny/reward (1-logit classifier)."""
    data.build_tiny_model(str(tmp_path / "tiny"), seed=0, hidden_size=32, num_layers=1)
    return tmp_path / "tiny"


# ----------------------------------------------------------------------------------------------------
# Template, truncation, losses, update step

def test_rm_input_is_the_exact_template():
    assert reward.rm_input("What is 2+3?", "5", "2+3=5\n#### 5") == (
        "<question>What is 2+3?</question>\n<reference_answer>5</reference_answer>\n"
        "<completion>2+3=5\n#### 5</completion>")


def test_truncate_middle_keeps_first_500_and_last_1000_chars():
    text = "a" * 600 + "b" * 400 + "c" * 1000
    cut = reward.truncate_middle(text)
    assert cut == "a" * 500 + "c" * 1000
    assert reward.truncate_middle("x" * 1500) == "x" * 1500   # at the limit: unchanged


def test_bce_loss_matches_hand_computed_values():
    logits, labels = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1, 0, 0])
    # -log(0.5), -log(1 - sigmoid(2)), -log(1 - sigmoid(-1))
    expected = (0.693147 + 2.126928 + 0.313262) / 3
    assert reward.bce_loss(logits, labels).item() == pytest.approx(expected, abs=1e-5)


def test_pairwise_loss_masks_invalid_pairs_and_matches_hand_values():
    s_pos = torch.tensor([1.0, 0.0, 9.0], requires_grad=True)
    s_neg = torch.tensor([0.0, 2.0, -9.0])
    mask = torch.tensor([1.0, 1.0, 0.0])
    loss = reward.pairwise_loss(s_pos, s_neg, mask)
    # -(log sigmoid(1) + log sigmoid(-2)) / (2 + 1e-6)
    assert loss.item() == pytest.approx((0.313262 + 2.126928) / (2 + 1e-6), abs=1e-5)
    loss.backward()
    assert s_pos.grad[2] == 0   # a masked pair contributes no gradient
    assert s_pos.grad[0] < 0 and s_pos.grad[1] < 0   # minimising pushes positives up


def test_pairwise_loss_of_an_all_masked_batch_is_zero():
    s = torch.tensor([3.0, -3.0], requires_grad=True)
    loss = reward.pairwise_loss(s, torch.zeros(2), torch.zeros(2))
    loss.backward()
    assert loss.item() == 0 and torch.all(s.grad == 0)


def test_rm_step_skips_a_non_finite_gradient():
    model = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    loss = model(torch.tensor([[float("inf"), 1.0]])).sum()
    norm, stepped = reward.rm_step(model, opt, loss)
    assert not stepped and not torch.isfinite(torch.tensor(norm))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    norm, stepped = reward.rm_step(model, opt, model(torch.tensor([[1.0, 1.0]])).sum())
    assert stepped and not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_classification_metrics():
    m = reward.classification_metrics(torch.tensor([0.9, 0.6, 0.4, 0.1]), torch.tensor([1, 0, 1, 0]))
    assert m == {"acc": 0.5, "precision": 0.5, "recall": 0.5, "balanced_acc": 0.5, "n": 4}
    # a shifted base rate: all-"wrong" predictions score acc 0.9 but balanced accuracy 0.5
    m = reward.classification_metrics(torch.zeros(10), torch.tensor([1] + [0] * 9))
    assert m["acc"] == 0.9 and m["balanced_acc"] == 0.5
    assert reward.classification_metrics(torch.tensor([0.9, 0.1]), torch.tensor([1, 1]))["balanced_acc"] == 0.5


# ----------------------------------------------------------------------------------------------------
# Cooper's stage 2: rm_update

PAIRS = {"questions": [f"{a}+1=?" for a in range(6)], "references": [str(a + 1) for a in range(6)],
         "positives": [f"{a}+1={a + 1}\n#### {a + 1}" for a in range(6)],
         "negatives": [f"{a}+1={a + 3}\n#### {a + 3}" for a in range(6)]}


def test_rm_update_is_the_loop_it_replaced_and_ranks_positives_first(tiny):
    rm = reward.RewardModel.load(str(tiny / "reward"), max_length=64)
    twin = copy.deepcopy(rm)
    q, ref, pos, neg = PAIRS["questions"], PAIRS["references"], PAIRS["positives"], PAIRS["negatives"]
    mask = torch.tensor([1.0] * 5 + [0.0])
    # lr 1e-3 x 80 steps: every margin ends near 0.8 with 1 thread and with 2 (at 3e-3 x 40 the fifth pair's sign
    # depended on the thread count)
    opt = torch.optim.AdamW(rm.model.parameters(), lr=1e-3)
    before = rm.score(q, ref, pos) - rm.score(q, ref, neg)
    stats = reward.rm_update(rm, opt, q, ref, pos, neg, mask, steps=80, max_grad_norm=1.0)
    # the loop cooper_step ran before rm_update existed, op for op: the same bits
    twin_opt = torch.optim.AdamW(twin.model.parameters(), lr=1e-3)
    twin.model.train()
    for _ in range(80):
        s = twin.logits(q * 2, ref * 2, pos + neg)
        loss = reward.pairwise_loss(s[:6], s[6:], mask)
        grad_norm, stepped = reward.rm_step(twin.model, twin_opt, loss, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(rm.model.parameters(), twin.model.parameters()))
    assert stats == {"rm_loss": loss.item(), "rm_grad_norm": grad_norm, "rm_skipped": False}
    after = rm.score(q, ref, pos) - rm.score(q, ref, neg)
    assert bool((after[:5] > 0).all()) and bool((after[:5] > before[:5]).all()) and stats["rm_loss"] < 0.5   # from log 2
    with pytest.raises(ValueError, match="steps"):
        reward.rm_update(rm, opt, q, ref, pos, neg, mask, steps=0, max_grad_norm=1.0)


def test_rm_update_ignores_what_sits_in_a_masked_slot(tiny):
    runs = []
    for junk in ("#### 99", "no answer at all, and longer"):
        torch.manual_seed(0)
        rm = reward.RewardModel.load(str(tiny / "reward"), max_length=64)
        # SGD: the two batches pad to different lengths, and AdamW's division by sqrt(v) would turn the rounding of a
        # near-zero gradient into a step of up to its lr; the gradients themselves must not depend on the slot
        opt = torch.optim.SGD(rm.model.parameters(), lr=1e-2)
        stats = reward.rm_update(rm, opt, ["1+1=?", "2+2=?"], ["2", "4"], ["#### 2", junk], ["#### 3", junk],
                                 torch.tensor([1.0, 0.0]), steps=2, max_grad_norm=1.0)
        runs.append((stats, [p.detach().clone() for p in rm.model.parameters()]))
    assert runs[0][0]["rm_loss"] == pytest.approx(runs[1][0]["rm_loss"], abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(runs[0][1], runs[1][1]))


# ----------------------------------------------------------------------------------------------------
# The model wrapper

def test_reward_model_cuts_long_inputs_from_the_left_so_the_final_answer_is_read(tiny):
    rm = reward.RewardModel.load(str(tiny / "reward"), max_length=48)
    long = "step " * 40   # the input is ~300 tokens: only its last 48 are read
    s = rm.logits(["1+1=?"] * 2, ["2"] * 2, [long + "#### 2", long + "#### 3"])
    assert s[0].item() != s[1].item()   # cut from the right, both rows would read the same first 48 tokens
    # and what is read is exactly the last 48 tokens
    ids = rm.tokenizer(reward.rm_input("1+1=?", "2", long + "#### 2"), add_special_tokens=False).input_ids[-48:]
    assert torch.allclose(rm.model(input_ids=torch.tensor([ids])).logits[0, 0], s[0], atol=1e-5)


def test_reward_model_scores_each_distinct_triple_once(tiny):
    rm = reward.RewardModel.load(str(tiny / "reward"))
    q, ref = ["1+1=?", "1+1=?", "2+2=?", "1+1=?"], ["2", "2", "4", "2"]
    c = ["1+1=2\n#### 2", "1+1=3\n#### 3", "1+1=2\n#### 2", "1+1=2\n#### 2"]   # rows 0 and 3 repeat
    rows = []
    hook = rm.model.register_forward_hook(lambda m, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]),
                                          with_kwargs=True)
    try:
        r = rm.score(q, ref, c)
    finally:
        hook.remove()
    assert rows == [3] and r.shape == (4,) and r[0] == r[3]
    assert torch.allclose(r, torch.cat([rm.score([a], [b], [d]) for a, b, d in zip(q, ref, c)]), atol=1e-6)
    assert rm.score([], [], []).shape == (0,)


def test_train_pairs_learns_to_rank_the_correct_completion_first(tiny):
    rm = reward.RewardModel.load(str(tiny / "reward"), max_length=64)
    pairs = [{"question": f"{a}+1=?", "reference": str(a + 1), "positive": f"#### {a + 1}", "negative": "#### x"}
             for a in range(8)]
    losses = reward.train_pairs(rm, pairs, steps=30, lr=3e-3, batch_size=8, warmup_steps=1, progress=False)
    q, ref = [p["question"] for p in pairs], [p["reference"] for p in pairs]
    margin = rm.score(q, ref, [p["positive"] for p in pairs]) - rm.score(q, ref, [p["negative"] for p in pairs])
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0] and bool((margin > 0).all())


# ----------------------------------------------------------------------------------------------------
# Labelled files and the CLI

def test_read_labelled_accepts_both_formats_and_names_a_bad_row(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "q", "reference_answer": "1", "completion": "#### 1", "label": 1}\n'
                    '{"question": "q", "reference_answer": "1", "completion": "#### 2", "label": false}\n')
    assert [r["label"] for r in reward.read_labelled(str(good))] == [1, 0]
    vb = tmp_path / "vb.jsonl"
    vb.write_text('{"question": "q", "answer": "1", "completion": "#### 1", "gold_correct": true}\n')
    assert reward.read_labelled(str(vb))[0] == {"question": "q", "reference": "1", "completion": "#### 1", "label": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text() + '{"question": "q", "reference_answer": "1", "completion": "x", "label": "maybe"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: row 3: field 'label'"):
        reward.read_labelled(str(bad))
    with pytest.raises(ValueError, match=r"row 1: expected fields"):
        (tmp_path / "x.jsonl").write_text('{"prompt": "q"}\n')
        reward.read_labelled(str(tmp_path / "x.jsonl"))


@pytest.mark.parametrize("fields", [("reference_answer", "label"), ("answer", "gold_correct")])
def test_reward_eval_cli_on_both_formats(tmp_path, capsys, fields):
    data.build_tiny_model(str(tmp_path / "tiny"))
    ref, lab = fields
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"question": f"{a}+1=?", ref: str(a + 1), "completion": f"#### {a + d}",
                                       lab: d == 1}) + "\n" for a in range(3) for d in (1, 2)))
    reward.main(["eval", str(src), "--model", str(tmp_path / "tiny" / "reward"), "--max-length", "64"])
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 6 and set(out) == {"file", "acc", "precision", "recall", "balanced_acc", "n"}
    rm = reward.RewardModel.load(str(tmp_path / "tiny" / "reward"), max_length=64)
    assert out["acc"] == reward.evaluate(rm, reward.read_labelled(str(src)))["acc"]


# ----------------------------------------------------------------------------------------------------
# Precision: fp32 master weights whatever the checkpoint's dtype, bf16 compute by autocast

def _bce_update(rm, steps=3, lr=1e-5):
    """(||w_after - w_before|| in fp64, share of parameter entries that changed) after `steps` BCE steps."""
    rows = [{"question": f"{a}+1=?", "reference": str(a + 1), "completion": f"#### {a + 1 + d}", "label": int(d == 0)}
            for a in range(4) for d in (0, 1)]
    before = [p.detach().clone() for p in rm.model.parameters()]
    reward.train_bce(rm, rows, epochs=steps, lr=lr, batch_size=len(rows), progress=False)
    after = list(rm.model.parameters())
    norm = sum(((p.detach().double() - b.double()) ** 2).sum() for p, b in zip(after, before)).sqrt().item()
    moved = sum((p.detach() != b).sum().item() for p, b in zip(after, before)) / sum(b.numel() for b in before)
    return norm, moved


def test_a_bf16_checkpoint_trains_as_far_as_its_fp32_copy(tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification
    fp32_dir, bf16_dir = tmp_path / "fp32", tmp_path / "bf16"
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny / "reward"), dtype=torch.float32)
    model.to(torch.bfloat16).save_pretrained(str(bf16_dir))   # as real checkpoints ship
    model.to(torch.float32).save_pretrained(str(fp32_dir))    # the same (bf16-rounded) values in fp32
    for d in (fp32_dir, bf16_dir):
        data.make_char_tokenizer().save_pretrained(str(d))
    rm = reward.RewardModel.load(str(bf16_dir), max_length=64)
    assert {p.dtype for p in rm.model.parameters()} == {torch.float32}
    (norm, moved), (fp32_norm, fp32_moved) = _bce_update(rm), _bce_update(reward.RewardModel.load(str(fp32_dir), max_length=64))
    assert 0.5 < norm / fp32_norm < 2 and moved > 0.5 * fp32_moved > 0.4
    # what the fp32 masters prevent: on bf16 weights, most of these lr-1e-5 updates round away
    _, bf16_moved = _bce_update(reward.RewardModel.load(str(bf16_dir), dtype=torch.bfloat16, max_length=64))
    assert bf16_moved < 0.5 * fp32_moved


def test_bf16_autocast_on_cpu_gives_fp32_logits_close_to_fp32_compute(tiny):
    q, ref, c = ["1+1=?", "2+5=?"], ["2", "7"], ["1+1=2\n#### 2", "2+5=8\n#### 8"]
    exact = reward.RewardModel.load(str(tiny / "reward"), max_length=64).logits(q, ref, c)
    rm = reward.RewardModel.load(str(tiny / "reward"), compute_dtype=torch.bfloat16, max_length=64)
    cast = rm.logits(q, ref, c)
    assert cast.dtype == torch.float32 and {p.dtype for p in rm.model.parameters()} == {torch.float32}
    gap = (cast - exact).abs().max()
    assert 0 < gap < 0.05 * exact.abs().max()   # bf16 compute, really, and within bf16's few digits
    cast.sum().backward()   # gradients land on the fp32 masters
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in rm.model.parameters())


def test_gradient_checkpointing_gives_the_same_gradients(tiny):
    grads, layer_runs = [], []
    for checkpointing in (False, True):
        rm = reward.RewardModel.load(str(tiny / "reward"), gradient_checkpointing=checkpointing, max_length=64)
        rm.model.train()
        runs = []
        rm.model.model.layers[0].input_layernorm.register_forward_pre_hook(lambda *_: runs.append(1))
        rm.logits(["1+1=?"] * 2, ["2"] * 2, ["#### 2", "#### 3"]).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in rm.model.parameters()]))
        layer_runs.append(len(runs))
    assert layer_runs == [1, 2]   # checkpointed: the layer runs again in the backward
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)


def test_save_writes_fp32_masters_or_a_bf16_export_and_leaves_the_model_alone(tiny, tmp_path):
    from safetensors.torch import load_file
    rm = reward.RewardModel.load(str(tiny / "reward"), max_length=64)
    with torch.no_grad():   # values bf16 cannot hold exactly
        for p in rm.model.parameters():
            p.add_(1e-4)
    rm.save(str(tmp_path / "fp32"))
    rm.save(str(tmp_path / "bf16"), dtype=torch.bfloat16)
    assert {p.dtype for p in rm.model.parameters()} == {torch.float32}
    full, rounded = load_file(str(tmp_path / "fp32/model.safetensors")), load_file(str(tmp_path / "bf16/model.safetensors"))
    state = rm.model.state_dict()
    assert all(torch.equal(full[k], state[k]) for k in full)
    assert {v.dtype for v in rounded.values()} == {torch.bfloat16}
    assert json.loads((tmp_path / "bf16/config.json").read_text())["dtype"] == "bfloat16"
    back = reward.RewardModel.load(str(tmp_path / "bf16"), max_length=64)
    assert all(torch.equal(p, state[k].to(torch.bfloat16).float()) for k, p in back.model.state_dict().items())


# ----------------------------------------------------------------------------------------------------
# Loading the wrong thing: one line naming the path

def test_a_wrong_path_or_a_non_model_folder_is_one_line(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/readme.txt").write_text("hi")
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only/config.json").write_text("{}")
    (tmp_path / "file.json").write_text("{}")
    for path, why in [(tmp_path / "missing", "no such folder"), (tmp_path / "notes", "no config.json"),
                      (tmp_path / "config_only", "no weights"), (tmp_path / "file.json", "is a file")]:
        with pytest.raises(ValueError, match=rf"^{path}: .*{why}") as e:
            reward.RewardModel.load(str(path))
        assert "\n" not in str(e.value)


def test_a_causal_lm_folder_is_refused_as_a_reward_model_unless_a_new_head_is_asked_for(tiny):
    with pytest.raises(ValueError, match=rf"^{tiny / 'policy'}: the score head \(score.weight\) is missing"):
        reward.RewardModel.load(str(tiny / "policy"))
    rm = reward.RewardModel.load(str(tiny / "policy"), allow_new_head=True)   # a trunk to pre-train
    assert rm.logits(["q"], ["1"], ["#### 1"]).shape == (1,)
    reward.RewardModel.load(str(tiny / "reward"))   # a VerifyRM folder loads


def test_reward_cli_names_a_bad_model_folder_in_one_line(tmp_path, tiny):
    src = tmp_path / "rows.jsonl"
    src.write_text('{"question": "q", "reference_answer": "1", "completion": "#### 1", "label": 1}\n')
    with pytest.raises(SystemExit, match=r"error: .*policy: the score head"):
        reward.main(["eval", str(src), "--model", str(tiny / "policy")])
    with pytest.raises(SystemExit, match=r"error: .*nowhere: no such folder"):
        reward.main(["train", str(src), "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])


def test_reward_train_cli_saves_the_dtype_asked_for(tmp_path, tiny, capsys):
    from safetensors.torch import load_file
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps({"question": f"{a}+1=?", "reference_answer": str(a + 1),
                                       "completion": f"#### {a + d}", "label": d == 1}) + "\n"
                           for a in range(4) for d in (1, 2)))
    for save_dtype, want in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        out = tmp_path / save_dtype
        reward.main(["train", str(src), "--model", str(tiny / "policy"), "--out", str(out), "--epochs", "1",
                     "--max-length", "64", "--dtype", "fp32", "--save-dtype", save_dtype, "--gradient-checkpointing"])
        assert {v.dtype for v in load_file(str(out / "model.safetensors")).values()} == {want}
        assert f"saved {out} ({save_dtype})" in capsys.readouterr().out
        reward.RewardModel.load(str(out))   # it has its score head now


# ----------------------------------------------------------------------------------------------------
# Reading files: one line per problem, naming file and row

def test_read_rows_tolerates_a_byte_order_mark_and_names_a_bad_byte_by_row(tmp_path):
    good = '{"question": "q", "reference_answer": "1", "completion": "#### 1", "label": 1}\n'
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + good.encode() * 2)
    assert len(reward.read_labelled(str(bom))) == 2
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf[" + good.strip().encode() + b"]")
    assert len(reward.read_labelled(str(tmp_path / "bom.json"))) == 1
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(good.encode() + good.replace("#### 1", "#### 1 \xe9").encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.jsonl: row 2: not valid UTF-8"):
        reward.read_rows(str(latin))
    with pytest.raises(ValueError, match=r"broken.jsonl: row 2: not valid JSON"):
        (tmp_path / "broken.jsonl").write_text(good + good[:20] + "\n")
        reward.read_rows(str(tmp_path / "broken.jsonl"))
    with pytest.raises(ValueError, match=r"list.jsonl: row 1: expected a JSON object"):
        (tmp_path / "list.jsonl").write_text("[1, 2]\n")
        reward.read_rows(str(tmp_path / "list.jsonl"))


def test_read_rows_says_directory_and_file_not_found(tmp_path):
    with pytest.raises(ValueError, match=rf"^{tmp_path}: is a directory"):
        reward.read_rows(str(tmp_path))
    with pytest.raises(ValueError, match=r"gone.jsonl: file not found"):
        reward.read_rows(str(tmp_path / "gone.jsonl"))
    with pytest.raises(ValueError, match=r"rows.csv: expected a .jsonl"):
        (tmp_path / "rows.csv").write_text("a,b\n")
        reward.read_rows(str(tmp_path / "rows.csv"))
    with pytest.raises(SystemExit, match=r"error: .*: is a directory"):
        reward.main(["eval", str(tmp_path), "--model", str(tmp_path)])


def test_write_cooper_writes_valid_json_for_non_finite_numbers(tmp_path):
    rows = [{"question": "q", "reference": "1", "completion": "#### 1", "label": 1, "score": float("nan"),
             "margins": [1.5, float("-inf")]}]
    reward.write_cooper(str(tmp_path / "o.jsonl"), rows)
    line = (tmp_path / "o.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line)["score"] is None and json.loads(line)["margins"] == [1.5, None]


@pytest.mark.parametrize("flag,value", [("--lr", "-1"), ("--lr", "nan"), ("--epochs", "0"), ("--batch-size", "0"),
                                        ("--holdout", "1"), ("--max-length", "0")])
def test_reward_train_rejects_out_of_range_flags_at_parse_time(tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stop:   # before any file or model is read
        reward.main(["train", str(tmp_path / "none.jsonl"), "--model", "m", "--out", "o", flag, value])
    assert stop.value.code == 2 and f"argument {flag}: must be" in capsys.readouterr().err
