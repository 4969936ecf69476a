"""VerifyRM: the reference-based reward model of Cooper, its two losses, and its training CLI.

VerifyRM is any 1-logit sequence classifier (`AutoModelForSequenceClassification`, num_labels=1) that
reads one fixed text and scores it at its last token:

    <question>{q}</question>
    <reference_answer>{ref}</reference_answer>
    <completion>{c}</completion>

    reward r = sigmoid(s_phi(q, ref, c))                                        (paper, Sec. 3)

It is trained twice:
  * before RL, with binary cross-entropy on labelled (question, reference_answer, completion, label):
        L_BCE = -[ y log sigmoid(s) + (1 - y) log(1 - sigmoid(s)) ]
  * during RL (Cooper stage 2), with a pairwise loss on (positive, negative) completions of one prompt:
        L_RM = - sum_i m_i log sigmoid(s(q_i, ref_i, o_i+) - s(q_i, ref_i, o_i-)) / (sum_i m_i + 1e-6)

Command line (run `python reward.py -h`):
    python reward.py train FILE --model DIR --out DIR    BCE pre-training, prints held-out accuracy
    python reward.py eval FILE --model DIR               accuracy / precision / recall at threshold 0.5
FILE is .jsonl or .parquet (.json lists are read too). Labelled files are made by annotate.py (hybrid labels
from the rule verifier and an LLM judge) or converted from GSM8K's model solutions by it.

Weights are held in fp32 whatever the checkpoint's dtype (master weights: bf16 ones round small AdamW
updates away); `--dtype bf16` computes in bf16 under autocast. This file imports no other project file,
so it can be copied into another codebase.
"""
import argparse
import contextlib
import json
import math
import os
import random

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------------
# The input template (identical in pre-training and RL; no chat template)

TEMPLATE = ("<question>{question}</question>\n<reference_answer>{reference}</reference_answer>\n"
            "<completion>{completion}</completion>")


def truncate_middle(text: str, max_chars: int = 1500, head: int = 500, tail: int = 1000) -> str:
    """Keep the first `head` and last `tail` characters of a text longer than `max_chars`.

    The authors' RL code does this to references and completions: the end of a solution holds its
    final answer, which is what the reward model must see.
    >>> truncate_middle("a" * 10 + "b" * 10, max_chars=8, head=2, tail=3)
    'aabbb'
    """
    return text if len(text) <= max_chars else text[:head] + text[-tail:]


def rm_input(question: str, reference: str, completion: str) -> str:
    """The exact VerifyRM input text. The completion is stripped of surrounding whitespace here, the one
    place every completion passes through, so that policy samples and assistant rewrites cannot differ
    by formatting alone (the RM would learn the artifact instead of correctness).
    >>> rm_input("1+1=?", "2", "#### 2")
    '<question>1+1=?</question>\\n<reference_answer>2</reference_answer>\\n<completion>#### 2</completion>'
    """
    return TEMPLATE.format(question=question, reference=truncate_middle(reference),
                           completion=truncate_middle(completion.strip()))


# ----------------------------------------------------------------------------------------------------
# The losses (pure functions of logits)

def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_BCE, mean over the batch. logits [N] raw scores, labels [N] in {0, 1}.
    >>> round(bce_loss(torch.tensor([0.0]), torch.tensor([1.0])).item(), 4)   # -log(0.5)
    0.6931
    """
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def pairwise_loss(s_pos: torch.Tensor, s_neg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_RM = - sum_i m_i log sigmoid(s_pos_i - s_neg_i) / (sum_i m_i + 1e-6), on raw logits.

    s_pos, s_neg, mask: [B] (one pair per prompt; mask 0 where the prompt has no positive or no accepted
    negative, so whatever sits in those slots has no effect). All-masked batch -> loss 0, gradient 0.
    >>> round(pairwise_loss(torch.tensor([0.0, 5.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])).item(), 4)
    0.6931
    """
    mask = mask.to(s_pos.dtype)
    return -(F.logsigmoid(s_pos - s_neg) * mask).sum() / (mask.sum() + 1e-6)


def rm_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
            max_grad_norm: float = 1.0) -> tuple[float, bool]:
    """Backward, clip the gradient norm, and step - unless the norm is not finite (then skip).
    Returns (grad_norm, stepped)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    grad_norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()   # FSDP: a DTensor
    stepped = math.isfinite(grad_norm)
    if stepped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, stepped


def rm_update(rm, optimizer: torch.optim.Optimizer, questions: list[str], references: list[str],
              positives: list[str], negatives: list[str], mask: torch.Tensor, steps: int,
              max_grad_norm: float, loss_scale: float = 1.0) -> dict:
    """Cooper stage 2: `steps` optimizer steps of L_RM on P (positive, negative) pairs.

    questions, references, positives, negatives: P texts each; mask [P], m_i in {0, 1}.
        s_pos = s_phi(q_i, ref_i, o_i+), s_neg = s_phi(q_i, ref_i, o_i-)                [P] each
        L_RM  = - sum_i m_i log sigmoid(s_pos_i - s_neg_i) / (sum_i m_i + 1e-6)
    rm: a RewardModel, or its DDP twin (distributed.ddp_reward_model: .model is the DDP module). Positives
    and negatives go through one forward, so each backward follows exactly one DDP forward.
    Returns the last step's {"rm_loss", "rm_grad_norm", "rm_skipped"} (skipped: non-finite gradient).
    loss_scale multiplies the loss that is backpropagated (not rm_loss): under FSDP share_r * W
    (distributed.set_share); 1.0, the default, leaves everything bit for bit.
    """
    if steps < 1:
        raise ValueError(f"rm_update: steps must be at least 1, got {steps}")
    rm.model.train()
    n = len(positives)
    for _ in range(steps):
        s = rm.logits(questions * 2, references * 2, positives + negatives)   # [2P]
        s_pos, s_neg = s[:n], s[n:]
        loss = pairwise_loss(s_pos, s_neg, mask.to(s_pos.device))
        grad_norm, stepped = rm_step(rm.model, optimizer, loss * loss_scale if loss_scale != 1.0 else loss,
                                     max_grad_norm)
    return {"rm_loss": loss.item(), "rm_grad_norm": grad_norm, "rm_skipped": not stepped}


# ----------------------------------------------------------------------------------------------------
# The model wrapper: batched scoring of (question, reference, completion) triples

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def model_folder_problem(path: str) -> str | None:
    """Why `path` cannot be a local HF model folder, or None when it could be."""
    if not os.path.exists(path):
        return "no such folder"
    if not os.path.isdir(path):
        return "is a file, not a model folder"
    files = os.listdir(path)
    if "config.json" not in files:
        return "not a model folder (no config.json)"
    if not any(f.endswith(WEIGHT_SUFFIXES) for f in files):
        return "not a model folder (no weights: *.safetensors or *.bin)"
    return None


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class RewardModel:
    """A sequence classifier and its tokenizer, scoring VerifyRM inputs at their last token.

    rm = RewardModel.load("runs/toy/reward")
    rm.score(["1+1=?"], ["2"], ["1+1=2\\n#### 2"])   -> tensor([0.93])   (sigmoid, no grad)
    rm.logits(...)                                   -> tensor([2.61])   (raw, with grad)
    """

    def __init__(self, model, tokenizer, max_length: int = 1024, batch_size: int = 64,
                 compute_dtype: torch.dtype | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size, self.compute_dtype = max_length, batch_size, compute_dtype
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # The classifier reads the last non-pad token, so it must know which id is padding.
        model.config.pad_token_id = tokenizer.pad_token_id
        # Over-long inputs lose their start, never the completion's final answer. Set on the tokenizer: the
        # truncation_side= call argument is silently ignored by transformers 5.24 (it kept the first tokens).
        tokenizer.truncation_side = "left"

    @classmethod
    def load(cls, path: str, dtype: torch.dtype = torch.float32, compute_dtype: torch.dtype | None = None,
             gradient_checkpointing: bool = False, allow_new_head: bool = False, **kwargs) -> "RewardModel":
        """A VerifyRM folder. The weights are held in `dtype` whatever the checkpoint's own (real checkpoints
        ship in bf16, where AdamW at lr 1e-5 rounds most updates away); compute_dtype (e.g. torch.bfloat16)
        is logits()'s autocast dtype, None: the weights' own. A folder without a trained score head (a causal
        LM) is refused unless allow_new_head, which gives it a fresh one to pre-train. kwargs: max_length,
        batch_size. Every failure is one ValueError naming the path."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        problem = model_folder_problem(path)
        if problem:
            raise ValueError(f"{path}: {problem}")
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=dtype, local_files_only=True, output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, RuntimeError, ImportError) as e:
            raise ValueError(f"{path}: cannot load it as a reward model: {first_line(e)}") from None
        fresh = [k for k in info["missing_keys"] if k.split(".")[0] == "score"]
        if fresh and not allow_new_head:
            raise ValueError(f"{path}: the score head ({', '.join(fresh)}) is missing from the checkpoint: not a "
                             "VerifyRM folder (a causal LM? pre-train one with `python reward.py train`; in code, "
                             "allow_new_head=True gives it a fresh head)")
        model.config.use_cache = False   # a classifier reads each input once: no KV cache to keep
        if gradient_checkpointing:   # activations recomputed in the backward: memory for compute
            if hasattr(model, "activation_checkpointing_enable"):   # the name since transformers 5.24
                model.activation_checkpointing_enable()
            else:
                model.gradient_checkpointing_enable({"use_reentrant": False})
        return cls(model, tokenizer, compute_dtype=compute_dtype, **kwargs)

    def save(self, path: str, dtype: torch.dtype | None = None) -> None:
        """The weights as held (fp32 masters, so training can resume exactly), or with dtype (torch.bfloat16)
        a rounded export for serving; the model in memory is unchanged either way."""
        state = None if dtype is None else {k: v.to(dtype) if v.is_floating_point() else v
                                            for k, v in self.model.state_dict().items()}
        self.model.save_pretrained(path, state_dict=state)
        self.tokenizer.save_pretrained(path)
        if dtype is not None:   # save_pretrained writes the in-memory dtype; a server reads the config's
            config = os.path.join(path, "config.json")
            with open(config) as f:
                fields = json.load(f)
            with open(config, "w") as f:
                json.dump({**fields, "dtype": str(dtype).removeprefix("torch.")}, f, indent=2)

    def logits(self, questions: list[str], references: list[str], completions: list[str]) -> torch.Tensor:
        """[N] raw scores s_phi, fp32 whatever the compute dtype. Tokens past max_length are cut from the
        left, so the completion's end (its final answer) is always read."""
        texts = [rm_input(q, r, c) for q, r, c in zip(questions, references, completions, strict=True)]
        weights = next(self.model.parameters())
        cast = (torch.autocast(weights.device.type, dtype=self.compute_dtype)
                if self.compute_dtype not in (None, weights.dtype) else contextlib.nullcontext())
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                   truncation=True, max_length=self.max_length, padding_side="right",
                                   add_special_tokens=False).to(weights.device)
            with cast:
                out.append(self.model(**batch).logits[:, 0].float())
        return torch.cat(out) if out else torch.zeros(0, device=weights.device)

    @torch.no_grad()
    def score(self, questions: list[str], references: list[str], completions: list[str]) -> torch.Tensor:
        """[N] rewards r = sigmoid(s_phi) in (0, 1). Each distinct triple is scored once: a group of rollouts
        often repeats a short answer word for word."""
        triples = list(zip(questions, references, completions, strict=True))
        place = {}
        for t in triples:
            place.setdefault(t, len(place))
        was_training = self.model.training
        self.model.eval()
        r = torch.sigmoid(self.logits(*(list(column) for column in zip(*place)))) if place else torch.zeros(0)
        self.model.train(was_training)
        return r[torch.tensor([place[t] for t in triples], dtype=torch.long, device=r.device)]


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall and balanced accuracy of `scores >= threshold` against 0/1 labels.
    Balanced accuracy, the mean of the recalls of both labels (of the one present, if only one is), does
    not move when the base rate does - as it does during RL, when the policy's accuracy changes.
    >>> classification_metrics(torch.tensor([0.9, 0.2, 0.7]), torch.tensor([1, 0, 0]))
    {'acc': 0.6667, 'precision': 0.5, 'recall': 1.0, 'balanced_acc': 0.75, 'n': 3}
    """
    pred, gold = scores >= threshold, labels.bool()
    tp, tn = (pred & gold).sum().item(), (~pred & ~gold).sum().item()
    n_pos, n_neg = gold.sum().item(), (~gold).sum().item()
    recalls = [r for r, n in ((tp / max(n_pos, 1), n_pos), (tn / max(n_neg, 1), n_neg)) if n]
    return {"acc": round((pred == gold).float().mean().item(), 4) if len(gold) else 0.0,
            "precision": round(tp / max(pred.sum().item(), 1), 4), "recall": round(tp / max(n_pos, 1), 4),
            "balanced_acc": round(sum(recalls) / len(recalls), 4) if recalls else 0.0, "n": len(gold)}


# ----------------------------------------------------------------------------------------------------
# Labelled data: the Cooper format (question, reference_answer, completion, label) or VerifyBench's
# (question, answer, completion, gold_correct)

FIELD_SETS = [("question", "reference_answer", "completion", "label"),
              ("question", "answer", "completion", "gold_correct")]


def read_rows(path: str) -> list[dict]:
    """Rows of a .jsonl, .json (a list) or .parquet file, each a dict. A UTF-8 byte-order mark is skipped;
    each .jsonl line decodes on its own, so a bad byte or broken line is that row's error, one line naming
    file and row."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a data file")
    if not os.path.exists(path):
        raise ValueError(f"{path}: file not found")
    if not path.endswith((".jsonl", ".json", ".parquet")):
        raise ValueError(f"{path}: expected a .jsonl, .json (a list of rows) or .parquet file")
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq
        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as e:   # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{path}: not a readable parquet file ({first_line(e)})") from None
        return rows
    with open(path, "rb") as f:
        raw = f.read().removeprefix(b"\xef\xbb\xbf")
    if path.endswith(".json"):
        rows = _decode_row(path, None, raw)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path}: expected a JSON list of objects")
        return rows
    return [_decode_row(path, n, line) for n, line in enumerate(raw.split(b"\n"), 1) if line.strip()]


def _decode_row(path: str, n: int | None, line: bytes):
    """Line n of a .jsonl file as a dict, or (n None) a whole .json file as whatever it holds."""
    where = f"{path}: row {n}" if n else path
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not valid UTF-8 (byte {line[e.start:e.start + 1]!r} at {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
    if n and not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def read_labelled(path: str, need_label: bool = True) -> list[dict]:
    """Labelled triples as {"question", "reference", "completion", "label"} (label 0/1).
    A row missing a field or with a label that is not 0/1/true/false raises one error naming it.
    need_label=False reads unlabelled triples too (label None where the file has none), for annotate."""
    rows, out = read_rows(path), []
    if not rows:
        raise ValueError(f"{path}: no rows")
    needed = 4 if need_label else 3
    fields = next((fs for fs in FIELD_SETS if all(k in rows[0] for k in fs[:needed])), None)
    if fields is None:
        raise ValueError(f"{path}: row 1: expected fields {FIELD_SETS[0][:needed]} or {FIELD_SETS[1][:needed]}, "
                         f"got {sorted(rows[0])}")
    labelled = fields[3] in rows[0]
    for n, row in enumerate(rows, 1):
        for k in fields[:4 if labelled else 3]:
            if not isinstance(row.get(k), (str, int, float, bool)):
                raise ValueError(f"{path}: row {n}: field {k!r}: missing or not a scalar ({row.get(k)!r})")
        label = row[fields[3]] if labelled else None
        if labelled and label not in (0, 1, True, False) and str(label).lower() not in ("0", "1", "true", "false"):
            raise ValueError(f"{path}: row {n}: field {fields[3]!r}: label must be 0/1/true/false, got {label!r}")
        out.append({"question": str(row[fields[0]]), "reference": str(row[fields[1]]),
                    "completion": str(row[fields[2]]),
                    "label": int(str(label).lower() in ("1", "true")) if labelled else None})
    return out


def finite_or_none(value):
    """value with each non-finite float replaced by None: JSON has no NaN, so json.dumps writes null.
    >>> finite_or_none({"loss": float("nan"), "n": [1, float("inf")]})
    {'loss': None, 'n': [1, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_cooper(path: str, rows: list[dict]) -> None:
    """Write {"question", "reference", "completion", "label", ...} rows in the Cooper format
    (question, reference_answer, completion, label, then any extra fields) to .jsonl or .parquet."""
    out = [{"question": r["question"], "reference_answer": r["reference"], "completion": r["completion"],
            "label": r["label"], **{k: v for k, v in r.items() if k not in ("question", "reference", "completion", "label")}}
           for r in rows]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(out), path)
    elif path.endswith(".jsonl"):
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(finite_or_none(r), allow_nan=False) + "\n" for r in out)
    else:
        raise ValueError(f"{path}: the output must be a .jsonl or .parquet file")


# ----------------------------------------------------------------------------------------------------
# BCE pre-training and evaluation

def evaluate(rm: RewardModel, rows: list[dict], threshold: float = 0.5) -> dict:
    scores = rm.score([r["question"] for r in rows], [r["reference"] for r in rows], [r["completion"] for r in rows])
    return classification_metrics(scores.cpu(), torch.tensor([r["label"] for r in rows]), threshold)


def train_bce(rm: RewardModel, rows: list[dict], epochs: int = 3, lr: float = 2e-5, weight_decay: float = 0.01,
              batch_size: int = 16, max_grad_norm: float = 1.0, seed: int = 0, progress: bool = True) -> list[float]:
    """Pre-train VerifyRM with L_BCE (paper's recipe: AdamW lr 2e-5, wd 0.01, 3 epochs). Returns losses."""
    from tqdm import tqdm
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(rm.model.parameters(), lr=lr, weight_decay=weight_decay)
    rm.model.train()
    losses, order = [], list(range(len(rows)))
    steps = epochs * math.ceil(len(rows) / batch_size)
    bar = tqdm(total=steps, desc="VerifyRM BCE", disable=not progress)
    for _ in range(epochs):
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            batch = [rows[j] for j in order[i:i + batch_size]]
            logits = rm.logits([r["question"] for r in batch], [r["reference"] for r in batch],
                               [r["completion"] for r in batch])
            loss = bce_loss(logits, torch.tensor([float(r["label"]) for r in batch], device=logits.device))
            rm_step(rm.model, optimizer, loss, max_grad_norm)
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return losses


def train_pairs(rm: RewardModel, pairs: list[dict], steps: int, lr: float = 1e-3, batch_size: int = 32,
                warmup_steps: int = 100, weight_decay: float = 0.01, max_grad_norm: float = 1.0, seed: int = 0,
                progress: bool = True) -> list[float]:
    """Pre-train VerifyRM on (correct, wrong) pairs of one question: each pair is two labelled triples,
    so L = L_BCE(both, labels 1 and 0) + L_RM(the pair). pairs: dicts with question, reference, positive,
    negative. The two completions of a pair differ only where the answer goes wrong, which isolates
    what the RM must learn (the README compares it with L_BCE alone on the same triples).
    Linear warm-up over warmup_steps, then constant lr. Returns the losses."""
    from tqdm import tqdm
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(rm.model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(warmup_steps, 1)))
    rm.model.train()
    losses, order = [], []
    for _ in tqdm(range(steps), desc="VerifyRM pairs", disable=not progress):
        if len(order) < batch_size:   # epoch-wise shuffles, so every pair is seen before any repeats
            order += rng.sample(range(len(pairs)), len(pairs))
        batch, order = [pairs[j] for j in order[:batch_size]], order[batch_size:]
        q, ref = [p["question"] for p in batch], [p["reference"] for p in batch]
        s_pos, s_neg = rm.logits(q, ref, [p["positive"] for p in batch]), rm.logits(q, ref, [p["negative"] for p in batch])
        labels = torch.cat([torch.ones_like(s_pos), torch.zeros_like(s_neg)])
        loss = bce_loss(torch.cat([s_pos, s_neg]), labels) + pairwise_loss(s_pos, s_neg, torch.ones_like(s_pos))
        rm_step(rm.model, optimizer, loss, max_grad_norm)
        scheduler.step()
        losses.append(loss.item())
    return losses


def split_holdout(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Shuffle with `seed` and keep `fraction` of the rows (at least one) aside for evaluation."""
    rows = rows[:]
    random.Random(seed).shuffle(rows)
    n_eval = max(1, int(len(rows) * fraction)) if fraction > 0 else 0
    return rows[n_eval:], rows[:n_eval]


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def at_least(low: int):
    """An argparse type: an integer >= low, or one usage error naming the bound."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    return parse


def above(low: float):
    """An argparse type: a finite float above low, or one usage error naming the bound."""
    def parse(text: str) -> float:
        value = float(text)
        if not (value > low and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be above {low:g}, got {text}")
        return value
    return parse


def fraction(text: str) -> float:
    """An argparse type: a float in [0, 1)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def default_compute_dtype() -> str:
    """bf16 where the device computes it natively (CUDA with bf16 support), fp32 elsewhere."""
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="BCE pre-training on a labelled jsonl/parquet file")
    t.add_argument("file")
    t.add_argument("--model", required=True, help="HF folder: a sequence classifier or a causal LM trunk")
    t.add_argument("--out", required=True, help="folder the trained VerifyRM is saved to")
    t.add_argument("--epochs", type=at_least(1), default=3, help="passes over the training rows (paper: 3)")
    t.add_argument("--lr", type=above(0.0), default=2e-5, help="AdamW learning rate (paper: 2e-5)")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (paper: 0.01)")
    t.add_argument("--batch-size", type=at_least(1), default=16, help="rows per optimizer step")
    t.add_argument("--max-length", type=at_least(1), default=1024, help="tokens read per input (its last ones)")
    t.add_argument("--holdout", type=fraction, default=0.1, help="fraction kept aside to report accuracy")
    t.add_argument("--seed", type=int, default=0, help="for the holdout split, the shuffles and a new score head")
    t.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in the backward")
    t.add_argument("--save-dtype", choices=list(DTYPES), default="fp32",
                   help="fp32: the trained master weights; bf16: a rounded export for serving")
    e = sub.add_parser("eval", help="accuracy, precision, recall at a threshold")
    e.add_argument("file")
    e.add_argument("--model", required=True, help="a VerifyRM folder (1-logit sequence classifier)")
    e.add_argument("--threshold", type=float, default=0.5, help="reward at or above it counts as 'correct'")
    e.add_argument("--max-length", type=at_least(1), default=1024, help="tokens read per input (its last ones)")
    for cmd in (t, e):
        cmd.add_argument("--dtype", choices=list(DTYPES), default=default_compute_dtype(),
                         help="compute dtype (autocast; weights stay fp32). Default: bf16 on a CUDA device "
                              "that supports it, else fp32")
        cmd.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda if any")
    args = p.parse_args(argv)
    torch.manual_seed(getattr(args, "seed", 0))   # before the load: a causal-LM trunk's new score head is random
    try:
        rows = read_labelled(args.file)
        rm = RewardModel.load(args.model, compute_dtype=DTYPES[args.dtype], max_length=args.max_length,
                              gradient_checkpointing=getattr(args, "gradient_checkpointing", False),
                              allow_new_head=args.cmd == "train")
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    rm.model.to(args.device)
    if args.cmd == "eval":
        print(json.dumps(finite_or_none({"file": args.file, **evaluate(rm, rows, args.threshold)}), allow_nan=False))
        return
    train_rows, eval_rows = split_holdout(rows, args.holdout, args.seed)
    print(f"train {len(train_rows)} rows, held out {len(eval_rows)}; "
          f"positive rate {sum(r['label'] for r in train_rows) / len(train_rows):.3f}")
    if eval_rows:
        print("before:", evaluate(rm, eval_rows))
    train_bce(rm, train_rows, args.epochs, args.lr, args.weight_decay, args.batch_size, seed=args.seed)
    if eval_rows:
        print("held-out:", evaluate(rm, eval_rows))
    os.makedirs(args.out, exist_ok=True)
    rm.save(args.out, dtype=None if args.save_dtype == "fp32" else DTYPES[args.save_dtype])
    print(f"saved {args.out} ({args.save_dtype})")


if __name__ == "__main__":
    main()
