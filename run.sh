#!/usr/bin/env bash
# Cooper, one entry point.
#   bash run.sh                     embedded toy: rule / rm / cooper from one start, then a table (< 10 min, 2 CPUs)
#   bash run.sh test                the test suite (what CI runs)
#   bash run.sh reproduce           rule / rm / cooper x SEEDS seeds (default 3) -> runs/reproduce/results.{json,md}, curves.png
#   bash run.sh --reward cooper --policy PATH --reward-model PATH --train FILE --test FILE --out DIR
#                                   any other arguments go to cooper.py unchanged
# Environment: VENV (default .venv), STEPS (default-run steps per mode), TORCH_INDEX (a pip index for torch,
# e.g. https://download.pytorch.org/whl/cpu for the small CPU build on a laptop).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

# ---- environment: create or reuse a virtual environment with the pinned dependencies ----
[ -x "$PY" ] || python3 -m venv "$VENV"
stamp="$VENV/.cooper-requirements"
if ! cmp -s requirements.txt "$stamp"; then
  echo "installing pinned dependencies into $VENV ..."
  # torch first and alone: a bare `pip install transformers` could otherwise pull a different torch build.
  "$PY" -m pip install -q $(grep '^torch==' requirements.txt) ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
  "$PY" -m pip install -q -r requirements.txt
  # packages whose declared dependencies must not be installed (see the comment in requirements.txt)
  nodeps=$(sed -n 's/^#no-deps //p' requirements.txt)
  [ -z "$nodeps" ] || "$PY" -m pip install -q --no-deps $nodeps
  cp requirements.txt "$stamp"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

# Train every mode for seeds 0..$2-1, $4 runs at a time with one thread each (on 2 cores, several one-thread
# runs beat one two-thread run); each run's log sits next to its folder: $1/<mode>/seed<k>.log
train_modes() {   # out seeds steps jobs [more cooper.py args]
  local out=$1 seeds=$2 steps=$3 jobs=$4
  shift 4
  "$PY" cooper.py prepare
  for seed in $(seq 0 $((seeds - 1))); do
    for mode in rule rm cooper; do
      mkdir -p "$out/$mode"
      ( OMP_NUM_THREADS=1 "$PY" cooper.py --reward "$mode" --seed "$seed" --steps "$steps" --out "$out/$mode/seed$seed" \
          "$@" >"$out/$mode/seed$seed.log" 2>&1 && echo "done: --reward $mode --seed $seed" ) \
        || echo "FAILED: --reward $mode --seed $seed (see $out/$mode/seed$seed.log)" &
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    done
  done
  wait
  for mode in rule rm cooper; do "$PY" cooper.py report "$out/$mode"/seed*/ >/dev/null; done
}

case "${1:-default}" in
  test)
    shift
    exec "$PY" -m pytest -q "$@"
    ;;
  default)
    out=runs/default
    train_modes "$out" 1 "${STEPS:-120}" 3
    echo
    "$PY" cooper.py table "$out"/{rule,rm,cooper}/seed0 | tee "$out/table.md"
    echo "per-run reports: $out/<mode>/seed0/report.md and report.png"
    ;;
  reproduce)
    shift
    out=${OUT:-runs/reproduce}
    train_modes "$out" "${SEEDS:-3}" "${STEPS:-150}" "${JOBS:-2}" "$@"
    "$PY" cooper.py summarize "$out"
    echo "wrote $out/results.json, $out/results.md, $out/curves.png"
    ;;
  *)
    exec "$PY" cooper.py "$@"
    ;;
esac
