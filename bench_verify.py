"""Benchmark of verify.py: agreement with labelled pairs, speed, and optionally the same against Math-Verify.

    python bench_verify.py FILE [--format fields|gsm8k-solutions] [--completion-field F] [--reference-field F]
                           [--label-field F] [--question-field F] [--last-number] [--repeats N]
                           [--compare math-verify] [--show N]

FILE is jsonl. With --compare math-verify (pip install math-verify; optional, for this command only) Math-Verify
runs on the same pairs, called as verl calls it (the reference wrapped in \\boxed{}, read as LaTeX; the completion
read as an expression or LaTeX), and the pairs where the two verifiers disagree are printed for inspection.
"""
import time

import annotate
import reward
import verify as V


def _field(row, path, where):
    for key in path.split("."):
        if not isinstance(row, dict) or key not in row:
            raise SystemExit(f"{where}: no field '{path}' (missing '{key}')")
        row = row[key]
    return row


def _label(v, where):
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    if isinstance(v, bool) or v in (0, 1):
        return bool(v)
    raise SystemExit(f"{where}: label {v!r} is not a boolean")


def load_pairs(path, fmt="fields", completion="completion", reference="reference", label="label", question=None):
    """[(completion, reference, label, question)] from a .jsonl/.json/.parquet file (reward.read_rows). Nested
    fields as 'a.b'. fmt 'gsm8k-solutions': the 4 labelled solutions per row of gsm8k/example_model_solutions.jsonl,
    read as annotate.convert_gsm8k_solutions reads them (the reference: the last `A:` line of ground_truth)."""
    try:
        if fmt == "gsm8k-solutions":
            return [(r["completion"], r["reference"], bool(r["label"]), None)
                    for r in annotate.convert_gsm8k_solutions(path)]
        rows = reward.read_rows(path)
    except ValueError as e:   # a missing file, a bad row: one line naming it
        raise SystemExit(f"error: {e}")
    pairs = []
    for n, row in enumerate(rows, 1):
        where = f"{path}: row {n}"
        pairs.append((str(_field(row, completion, where)), str(_field(row, reference, where)),
                      _label(_field(row, label, where), where), question and _field(row, question, where)))
    if not pairs:
        raise SystemExit(f"error: {path}: no rows")
    return pairs


def _run(fn, pairs, repeats):
    """Verdicts, all per-call latencies (s, sorted) and the median calls/s over `repeats` passes."""
    lat, rates = [], []
    for _ in range(repeats):
        start, verdicts = time.perf_counter(), []
        for c, r, _, q in pairs:
            t = time.perf_counter()
            verdicts.append(bool(fn(c, r, q)))
            lat.append(time.perf_counter() - t)
        rates.append(len(pairs) / (time.perf_counter() - start))
    return verdicts, sorted(lat), sorted(rates)[len(rates) // 2]


def _report(name, pairs, verdicts, lat, rate, timeouts):
    labels = [p[2] for p in pairs]
    tp = sum(v and l for v, l in zip(verdicts, labels))
    fa = sum(v and not l for v, l in zip(verdicts, labels))
    acc = sum(v == l for v, l in zip(verdicts, labels)) / len(labels)
    ms = lambda f: 1000 * lat[min(int(f * len(lat)), len(lat) - 1)]
    print(f"{name:<12} {acc:>9.4f} {tp / max(sum(verdicts), 1):>9.4f} {tp / max(sum(labels), 1):>7.4f} {fa:>7} "
          f"{rate:>9.0f} {ms(.5):>7.3f} {ms(.99):>7.3f} {1000 * lat[-1]:>8.1f} {timeouts:>8}")
    return acc


def _short(s, n=70):
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[:n // 2 - 2] + " .. " + s[-(n // 2 - 2):]


def _math_verify():
    """Math-Verify as verl's reward (verl/utils/reward_score/math_verify.py) calls it."""
    try:
        import logging
        from math_verify.metric import math_metric
        from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig
    except ImportError:
        raise SystemExit("--compare math-verify needs `pip install math-verify` (optional, benchmark only)")
    logging.disable(logging.WARNING)
    metric = math_metric(gold_extraction_target=(LatexExtractionConfig(),),
                         pred_extraction_target=(ExprExtractionConfig(), LatexExtractionConfig()))

    def call(completion, reference, _question):
        try:
            return metric(["\\boxed{" + reference + "}"], [completion])[0] > 0
        except Exception:  # its timeout and parse errors: verl scores them 0
            return False
    return call


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Agreement of verify() with labelled completions, and its speed.")
    ap.add_argument("file")
    ap.add_argument("--format", choices=["fields", "gsm8k-solutions"], default="fields")
    ap.add_argument("--completion-field", default="completion")
    ap.add_argument("--reference-field", default="reference")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--question-field", help="enables letter vs option-text matching")
    ap.add_argument("--last-number", action="store_true", help="fall back to a completion's last number")
    ap.add_argument("--compare", choices=["math-verify"], help="also run Math-Verify on the same pairs")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the data; calls/s is their median")
    ap.add_argument("--show", type=int, default=50, help="at most this many disagreeing pairs are printed")
    a = ap.parse_args(argv)
    pairs = load_pairs(a.file, a.format, a.completion_field, a.reference_field, a.label_field, a.question_field)
    print(f"{len(pairs)} labelled pairs from {a.file}, {a.repeats} passes; latencies over all passes")
    print(f"{'verifier':<12} {'accuracy':>9} {'precision':>9} {'recall':>7} {'f_acc':>7} {'calls/s':>9} "
          f"{'p50_ms':>7} {'p99_ms':>7} {'max_ms':>8} {'timeouts':>8}")
    V.warm_up()  # the one-time worker start is not a call
    before = V.stats["timeouts"]
    ours = _run(lambda c, r, q: V.verify(c, r, question=q, last_number=a.last_number), pairs, a.repeats)
    acc = _report("ours", pairs, *ours, V.stats["timeouts"] - before)
    if not a.compare:
        return
    mv = _run(_math_verify(), pairs, a.repeats)
    mv_acc = _report("math_verify", pairs, *mv, sum(t >= 5.0 for t in mv[1]))  # its own limit is 5 s
    print(f"accuracy ours={acc:.4f} math_verify={mv_acc:.4f} speedup={ours[2] / mv[2]:.1f}")
    differ = [(p, o, m) for p, o, m in zip(pairs, ours[0], mv[0]) if o != m]
    print(f"\n{len(differ)} pairs where the verifiers disagree (label, ours, math_verify | reference | completion):")
    for (c, r, label, _), o, m in differ[:a.show]:
        print(f"{label!s:>5} {o!s:>5} {m!s:>5} | {_short(r, 40)} | {_short(c)}")
    if len(differ) > a.show:
        print(f"... and {len(differ) - a.show} more (--show N)")


if __name__ == "__main__":
    main()
