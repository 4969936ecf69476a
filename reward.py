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

This file imports no other project file, so it can be copied into another codebase.
"""
import argparse
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
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm).item()
    stepped = math.isfinite(grad_norm)
    if stepped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, stepped


def rm_update(rm, optimizer: torch.optim.Optimizer, questions: list[str], references: list[str],
              positives: list[str], negatives: list[str], mask: torch.Tensor, steps: int,
              max_grad_norm: float) -> dict:
    """Cooper stage 2: `steps` optimizer steps of L_RM on P (positive, negative) pairs.

    questions, references, positives, negatives: P texts each; mask [P], m_i in {0, 1}.
        s_pos = s_phi(q_i, ref_i, o_i+), s_neg = s_phi(q_i, ref_i, o_i-)                [P] each
        L_RM  = - sum_i m_i log sigmoid(s_pos_i - s_neg_i) / (sum_i m_i + 1e-6)
    rm: a RewardModel, or its DDP twin (distributed.ddp_reward_model: .model is the DDP module). Positives
    and negatives go through one forward, so each backward follows exactly one DDP forward.
    Returns the last step's {"rm_loss", "rm_grad_norm", "rm_skipped"} (skipped: non-finite gradient).
    """
    if steps < 1:
        raise ValueError(f"rm_update: steps must be at least 1, got {steps}")
    rm.model.train()
    n = len(positives)
    for _ in range(steps):
        s = rm.logits(questions * 2, references * 2, positives + negatives)   # [2P]
        s_pos, s_neg = s[:n], s[n:]
        loss = pairwise_loss(s_pos, s_neg, mask.to(s_pos.device))
        grad_norm, stepped = rm_step(rm.model, optimizer, loss, max_grad_norm)
    return {"rm_loss": loss.item(), "rm_grad_norm": grad_norm, "rm_skipped": not stepped}


# ----------------------------------------------------------------------------------------------------
# The model wrapper: batched scoring of (question, reference, completion) triples

class RewardModel:
    """A sequence classifier and its tokenizer, scoring VerifyRM inputs at their last token.

    rm = RewardModel.load("runs/toy/reward")
    rm.score(["1+1=?"], ["2"], ["1+1=2\\n#### 2"])   -> tensor([0.93])   (sigmoid, no grad)
    rm.logits(...)                                   -> tensor([2.61])   (raw, with grad)
    """

    def __init__(self, model, tokenizer, max_length: int = 1024, batch_size: int = 64):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # The classifier reads the last non-pad token, so it must know which id is padding.
        model.config.pad_token_id = tokenizer.pad_token_id
        # Over-long inputs lose their start, never the completion's final answer. Set on the tokenizer: the
        # truncation_side= call argument is silently ignored by transformers 5.24 (it kept the first tokens).
        tokenizer.truncation_side = "left"

    @classmethod
    def load(cls, path: str, **kwargs) -> "RewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
        return cls(model, AutoTokenizer.from_pretrained(path), **kwargs)

    def save(self, path: str) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def logits(self, questions: list[str], references: list[str], completions: list[str]) -> torch.Tensor:
        """[N] raw scores s_phi. Tokens past max_length are cut from the left, so the completion's end
        (its final answer) is always read."""
        texts = [rm_input(q, r, c) for q, r, c in zip(questions, references, completions, strict=True)]
        device = next(self.model.parameters()).device
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                   truncation=True, max_length=self.max_length, padding_side="right",
                                   add_special_tokens=False).to(device)
            out.append(self.model(**batch).logits[:, 0].float())
        return torch.cat(out) if out else torch.zeros(0, device=device)

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
    """Rows of a .jsonl, .json (a list) or .parquet file, each as a dict."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq
        return pq.read_table(path).to_pylist()
    with open(path) as f:
        if path.endswith(".json"):
            return json.load(f)
        rows = []
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: row {n}: not valid JSON ({e.msg})") from None
        return rows


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
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in out)
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
    what the RM must learn: on the toy, balanced accuracy on held-out policy samples 0.97 after 500 steps
    of 32 pairs, against 0.73 for L_BCE alone on the same triples (2-layer trunk, lr 1e-3).
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="BCE pre-training on a labelled jsonl/parquet file")
    t.add_argument("file")
    t.add_argument("--model", required=True, help="HF folder: a sequence classifier or a causal LM trunk")
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--lr", type=float, default=2e-5)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--max-length", type=int, default=1024)
    t.add_argument("--holdout", type=float, default=0.1, help="fraction kept aside to report accuracy")
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval", help="accuracy, precision, recall at a threshold")
    e.add_argument("file")
    e.add_argument("--model", required=True)
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--max-length", type=int, default=1024)
    args = p.parse_args(argv)
    try:
        rows = read_labelled(args.file)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    torch.manual_seed(getattr(args, "seed", 0))
    rm = RewardModel.load(args.model, max_length=args.max_length)
    if args.cmd == "eval":
        print(json.dumps({"file": args.file, **evaluate(rm, rows, args.threshold)}))
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
    rm.save(args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()

