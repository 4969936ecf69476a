"""Reading training runs: a table of runs, a one-run report (reward paid vs truth, KL, RM health), and the
multi-seed summary of `bash run.sh reproduce`. Reads the files a run writes (summary.json, metrics.jsonl,
config.json); imports no project file and never a model.

    python report.py table runs/default/rule/seed0 runs/default/rm/seed0 runs/default/cooper/seed0
    python report.py report RUN_DIR [RUN_DIR ...]        report.md + report.png per run
    python report.py summarize runs/reproduce            results.json, results.md, curves.png
"""
import json
import math
import os
import sys


# ----------------------------------------------------------------------------------------------------
# Writing a run: config.json, metrics.jsonl (a line a step), samples.jsonl, summary.json (cooper.train)

def json_safe(value):
    """value with every non-finite float as None: json.dumps would write a bare NaN, which is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class RunLog:
    """metrics.jsonl, samples.jsonl and (--tensorboard) the event files of rank 0; no-ops on other ranks.
    On --resume the lines up to the checkpoint's step are kept and the rest (redone now) dropped."""

    def __init__(self, out: str, config: dict, main: bool, first_step: int, tensorboard: bool = False):
        self.main, self.history, self.board = main, [], None
        if not main:
            return
        dumps = []
        if first_step > 1:   # one metrics line per step; a samples line cut by a kill has no newline ([:-1])
            with open(os.path.join(out, "metrics.jsonl")) as f:
                self.history = [json.loads(line) for line in f.read().splitlines()[:first_step - 1]]
            with open(os.path.join(out, "samples.jsonl")) as f:
                dumps = [line for line in f.read().split("\n")[:-1] if json.loads(line)["step"] < first_step]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        self.metrics = open(os.path.join(out, "metrics.jsonl"), "w")
        self.metrics.writelines(json.dumps(m) + "\n" for m in self.history)
        self.samples = open(os.path.join(out, "samples.jsonl"), "w")
        self.samples.writelines(line + "\n" for line in dumps)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter   # optional: needs the tensorboard package
            self.board = SummaryWriter(os.path.join(out, "tensorboard"))

    def step(self, m: dict, samples: list[dict]) -> None:
        if not self.main:
            return
        for record in samples:
            self.samples.write(json.dumps(json_safe({"step": m["step"], **record})) + "\n")
        self.samples.flush()
        self.history.append(m)
        self.metrics.write(json.dumps(json_safe(m)) + "\n")
        self.metrics.flush()
        if self.board is not None:
            for k, v in m.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.board.add_scalar(k, v, m["step"])

    def close(self) -> None:
        if self.main:
            self.samples.close()
            self.metrics.close()
            if self.board is not None:
                self.board.close()


def sample_records(questions, references, details, group_size, n_prompts) -> list[dict]:
    """What the policy wrote and why it was paid, for the first n_prompts prompts of a step: each rollout
    with its reward, rule verdict and advantage; the positive, and every negative tried with its fate."""
    out, pairs = [], details["pairs"]
    for i in range(min(n_prompts, len(questions))):
        rows = range(i * group_size, (i + 1) * group_size)
        record = {"question": questions[i], "reference": references[i], "prompt": details["prompts"][i],
                  "rollouts": [{"text": details["texts"][j], "reward": round(details["rewards"][j], 4),
                                "correct": details["correct"][j], "advantage": round(details["advantages"][j], 4)}
                               for j in rows]}
        if pairs is not None:
            record["positive_index"] = pairs["positive_index"][i]
            record["negatives"] = [{"text": neg, "accepted": why is None, "rejected_because": why}
                                   for neg, why in pairs["attempts"][i]]
            if pairs["rejected"][i] is not None:
                record["rejected_negative"] = pairs["rejected"][i]
        out.append(record)
    return out


def run_summary(mode: str, seed: int, hack_gap: float, history: list[dict], evals: list[tuple[int, float]]) -> dict:
    """summary.json: start/final/best test accuracy, and reward paid, rule accuracy and KL over the last 10 steps;
    hacked: reward paid exceeds rule accuracy by more than --hack-gap."""
    last = history[-10:]
    mean = lambda key: sum(m[key] for m in last) / len(last)
    s = {"mode": mode, "seed": seed, "start_acc": evals[0][1], "final_acc": evals[-1][1],
         "best_acc": max(a for _, a in evals), "final_reward": mean("reward_mean"),
         "final_rule_acc": mean("rule_acc"), "final_kl": mean("kl")}
    s["hacked"] = s["final_reward"] - s["final_rule_acc"] > hack_gap
    return s



# ----------------------------------------------------------------------------------------------------
# Reading runs: a table, a one-run report (reward paid vs truth, KL, RM health), the multi-seed summary

def read_metrics(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def table(run_dirs: list[str]) -> str:
    """A markdown table of the runs' summary.json files (reward and rule acc: mean of the last 10 steps)."""
    lines = ["| mode | seed | start acc | final acc | best acc | final reward | final rule acc | final KL | hacked |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in run_dirs:
        s = read_summary(d)
        lines.append(f"| {s['mode']} | {s['seed']} | {s['start_acc']:.3f} | {s['final_acc']:.3f} | {s['best_acc']:.3f} | "
                     f"{s['final_reward']:.3f} | {s['final_rule_acc']:.3f} | {s['final_kl']:.4f} | {s['hacked']} |")
    return "\n".join(lines)


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping steps where it is absent or null."""
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_report(rows: list[dict], config: dict, run_dir: str) -> None:
    """report.png: reward paid vs truth, KL, RM loss and accuracy, valid pairs, the monitor's gap."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("reward paid vs rule-verified accuracy", ["reward_mean", "rule_acc", "test_acc"]),
              ("KL to the reference policy", ["kl"]), ("reward-model pairwise loss", ["rm_loss"]),
              ("reward-model balanced accuracy", ["rm_bacc", "rm_bacc_rollouts"]),
              ("valid pairs per step", ["valid_pairs"]),
              ("reward paid - rule accuracy", ["hack_gap"])]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            x, y = series(rows, key)
            if y:
                ax.plot(x, y, "o-" if key in ("test_acc", "rm_bacc") else "-", label=key, lw=1.2, ms=3)
        if title.startswith("reward paid -"):
            ax.axhline(config["hack_gap"], color="red", ls="--", lw=0.8, label="monitor threshold")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(f"{run_dir}  (--reward {config['reward']}, seed {config['seed']})")
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "report.png"), dpi=80)
    plt.close(fig)


def report(run_dir: str) -> str:
    """Write report.md and report.png for one run from its metrics.jsonl; returns the markdown. Without
    matplotlib (a vLLM environment may lack it) report.md alone, and one line that says so: a run that trained
    for hours must not fail at its last line for want of a plot."""
    rows = read_metrics(run_dir)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    try:
        plot_report(rows, config, run_dir)
        picture = ["![report](report.png)", ""]
    except ImportError as err:
        print(f"report: {err.name} is not installed, so {run_dir}/report.png was not drawn (pip install matplotlib)",
              file=sys.stderr)
        picture = []

    def at(key, which):
        _, y = series(rows, key)
        return f"{y[which]:.3f}" if y else "-"
    keys = ["reward_mean", "rule_acc", "test_acc", "kl", "rm_loss", "rm_bacc", "rm_bacc_rollouts", "valid_pairs"]
    lines = [f"# Run report: {run_dir}", "", f"`--reward {config['reward']}`, seed {config['seed']}, {len(rows)} steps.", "",
             "| metric | first | last |", "|---|---|---|"]
    lines += [f"| {k} | {at(k, 0)} | {at(k, -1)} |" for k in keys]
    warnings = [r["hack_warning"] for r in rows if r.get("hack_warning")]
    lines += ["", "## Hacking monitor", ""] + ([f"- WARNING {w}" for w in warnings] or ["No warning."])
    lines += [""] + picture
    text = "\n".join(lines)
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write(text)
    return text


def run_start_seed(run_dir: str):
    """The start seed a run trained from: its folder's name (start<k>-seed<j>, bash run.sh reproduce), else the
    start.json of its config's toy_dir, else None (a run not from the embedded toy start)."""
    import re
    found = re.fullmatch(r"start(\d+)-seed\d+", os.path.basename(os.path.normpath(run_dir)))
    if found:
        return int(found.group(1))
    start = run_start(run_dir)
    return None if start is None else start.get("seed", 0)


def run_start(run_dir: str) -> dict | None:
    """The start.json of the start a run trained from (its config's toy_dir), or None."""
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            toy_dir = json.load(f).get("toy_dir")
        with open(os.path.join(toy_dir, "start.json")) as f:
            return json.load(f)
    except (OSError, TypeError, ValueError):
        return None


def starts_table(starts: list[dict]) -> str:
    """results.md's table of the starts the runs trained from (toy.prepare_toy's start.json): the dev measurements
    each start is checked on (toy.START_BANDS), its test accuracy, and which checks it missed."""
    lines = ["| start seed | dev acc (no carry / carry) | start (test) acc | RM: forgotten carries paid | carried slips paid "
             "| copy slips caught | solutions paid | RM dev balanced acc | outside its bands | build s |", "|" + "---|" * 10]
    for s in starts:
        c = s.get("checks", {})
        missed = [k for k, ok in s.get("in_band", {}).items() if not ok]
        lines.append(f"| {s.get('seed', 0)} | {c.get('dev_acc', 0):.3f} ({c.get('dev_acc_no_carry', 0):.2f} / "
                     f"{c.get('dev_acc_carry', 0):.2f}) | {s.get('start_acc', 0):.3f} | {c.get('forgot_paid', 0):.2f} "
                     f"| {c.get('carried_paid', 0):.2f} | {c.get('copy_caught', 0):.2f} | {c.get('solution_paid', 0):.2f} "
                     f"| {c.get('balanced_acc', 0):.3f} | {', '.join(missed) or 'none'} | {s.get('seconds', 0):.0f} |")
    return "\n".join(lines)


def mean_sd(values: list[float]) -> str:
    """'mean +- sd' of the values (a lone value as itself).
    >>> mean_sd([0.5]), mean_sd([0.25, 0.75])
    ('0.500', '0.500 +- 0.354')
    """
    import statistics
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


SUMMARY_KEYS = ["seed", "start_acc", "final_acc", "best_acc", "final_reward", "final_rule_acc", "final_kl", "hacked"]


def reproduction_table(results: dict) -> str:
    """results.md's table: per mode a row pooled over every run (mean +- sd; starts: the start seeds), then a row
    per start seed (mean +- sd over its RL seeds)."""
    value_keys = SUMMARY_KEYS[1:-1]
    lines = ["| mode | starts | runs | start acc | final acc | best acc | final reward | final rule acc | final KL | hacked |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def row(mode, starts, rs):
        cells = [mean_sd([float(r[k]) for r in rs]) for k in value_keys]
        return (f"| {mode} | {starts} | {len(rs)} | " + " | ".join(cells)
                + f" | {sum(bool(r['hacked']) for r in rs)}/{len(rs)} |")
    for m, rs in results.items():
        starts = sorted({r.get("start_seed") for r in rs}, key=lambda s: (s is None, s))
        lines.append(row(f"**{m}**" if len(starts) > 1 else m, ",".join(map(str, starts)), rs))
    for m, rs in results.items():
        starts = sorted({r.get("start_seed") for r in rs}, key=lambda s: (s is None, s))
        if len(starts) > 1:
            lines += [row(m, str(s), [r for r in rs if r.get("start_seed") == s]) for s in starts]
    return "\n".join(lines)


def reproduction_checks(results: dict, margin: float = 0.10, near: float = 0.05) -> list[str]:
    """The finding per start seed and pooled, as lines: the frozen RM hacked (final accuracy below the start,
    reward paid >= 0.8), Cooper not hacked and >= start + margin and within `near` of the rule reward, rule >=
    start + margin. Means over RL seeds; each line names what holds (yes/NO)."""
    import statistics
    if not all(m in results for m in ("rule", "rm", "cooper")):
        return []
    starts = sorted({r.get("start_seed") for m in ("rule", "rm", "cooper") for r in results[m]},
                    key=lambda s: (s is None, s))
    mean = lambda m, k, s: statistics.mean(float(r[k]) for r in results[m] if s == "all" or r.get("start_seed") == s)
    yes = lambda ok: "yes" if ok else "NO"
    lines = []
    for s in starts + ["all"] * (len(starts) > 1):
        if s != "all" and not all(any(r.get("start_seed") == s for r in results[m]) for m in ("rule", "rm", "cooper")):
            continue
        pick = lambda m: [r for r in results[m] if s == "all" or r.get("start_seed") == s]
        start, rule, cooper, rm = (mean("cooper", "start_acc", s), mean("rule", "final_acc", s),
                                   mean("cooper", "final_acc", s), mean("rm", "final_acc", s))
        rm_hacked = all(float(r["final_acc"]) < float(r["start_acc"]) and float(r["final_reward"]) >= 0.8
                        for r in pick("rm"))
        cooper_clean = not any(r["hacked"] for r in pick("cooper"))
        lines.append(f"- start {s}: start {start:.3f}; frozen RM hacked on every run (final {rm:.3f} < start, paid "
                     f">= 0.8): {yes(rm_hacked)}; Cooper hacked on none: {yes(cooper_clean)}; Cooper {cooper:.3f} "
                     f"({cooper - start:+.3f} over the start, >= {margin}: {yes(cooper - start >= margin)}; "
                     f"{cooper - rule:+.3f} vs rule, within {near}: {yes(cooper >= rule - near)}); rule {rule:.3f} "
                     f"({rule - start:+.3f}, >= {margin}: {yes(rule - start >= margin)})")
    return lines


def summarize_reproduction(root: str, modes=("rule", "rm", "cooper")) -> str:
    """results.json, results.md and curves.png from root/<mode>/<run>/ runs (bash run.sh reproduce: runs named
    start<k>-seed<j>, one per start seed k and RL seed j). results.json: per mode a list of the runs' summaries,
    each with its start_seed. curves.png: per mode the mean over runs of reward paid, rule accuracy of the
    rollouts and greedy test accuracy, with the spread (min to max) over start seeds of each start's mean."""
    import statistics
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = {m: sorted((os.path.join(root, m, d) for d in os.listdir(os.path.join(root, m))
                       if os.path.exists(os.path.join(root, m, d, "summary.json"))))
            for m in modes if os.path.isdir(os.path.join(root, m))}
    runs = {m: dirs for m, dirs in runs.items() if dirs}
    results = {m: [{**{k: read_summary(d)[k] for k in SUMMARY_KEYS}, "start_seed": run_start_seed(d)} for d in dirs]
               for m, dirs in runs.items()}
    with open(os.path.join(root, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    text = reproduction_table(results)
    checks = reproduction_checks(results)
    starts = {}
    for d in (d for dirs in runs.values() for d in dirs):
        start = run_start(d)
        if start is not None:
            starts.setdefault(start.get("seed", 0), start)
    starts_md = starts_table([starts[k] for k in sorted(starts)]) if starts else ""
    with open(os.path.join(root, "results.md"), "w") as f:
        f.write(text + "\n" + ("\n" + "\n".join(checks) + "\n" if checks else "")
                + ("\nThe starts:\n\n" + starts_md + "\n" if starts_md else ""))

    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), sharey=True, squeeze=False)
    for ax, (m, dirs) in zip(axes[0], runs.items()):
        all_rows = [read_metrics(d) for d in dirs]
        starts = [r["start_seed"] for r in results[m]]
        for key, label in (("reward_mean", "reward paid"), ("rule_acc", "rule-verified accuracy (rollouts)"),
                           ("test_acc", "test accuracy (greedy)")):
            per_run = [dict(zip(*series(rows, key))) for rows in all_rows]
            if key == "test_acc":   # the curve starts at each run's start
                for p, d in zip(per_run, dirs):
                    p[0] = read_summary(d)["start_acc"]
            steps = sorted(set.intersection(*(set(p) for p in per_run)))
            line, = ax.plot(steps, [statistics.mean(p[s] for p in per_run) for s in steps],
                            "o-" if key == "test_acc" else "-", label=label, ms=3, lw=1.2)
            per_start = [[statistics.mean(p[s] for p, k in zip(per_run, starts) if k == start) for s in steps]
                         for start in sorted(set(starts), key=lambda s: (s is None, s))]
            if len(per_start) > 1:
                ax.fill_between(steps, [min(v) for v in zip(*per_start)], [max(v) for v in zip(*per_start)],
                                color=line.get_color(), alpha=0.2, lw=0)
        n_starts = len(set(starts))
        ax.set_title(f"--reward {m} (mean of {len(dirs)} runs, {n_starts} start{'s' * (n_starts > 1)})", fontsize=10)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(root, "curves.png"), dpi=80)
    plt.close(fig)
    return text + ("\n\n" + "\n".join(checks) if checks else "") + ("\n\n" + starts_md if starts_md else "")


def main(argv: list[str]) -> None:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command == "table":
        print(table(rest))
    elif command == "report":
        for run_dir in rest:
            print(report(run_dir))
    elif command == "summarize" and len(rest) == 1:
        print(summarize_reproduction(rest[0]))
    else:
        raise SystemExit("usage: python report.py table RUN_DIR ... | report RUN_DIR ... | summarize ROOT")


if __name__ == "__main__":
    main(sys.argv[1:])
