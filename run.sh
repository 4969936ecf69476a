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
  "$PY" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # torch first and alone: a bare `pip install transformers` could otherwise pull a different torch build.
  "$PY" -m pip install -q $(grep '^torch==' requirements.txt) ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
  "$PY" -m pip install -q -r requirements.txt
  # packages whose declared dependencies must not be installed (see the comment in requirements.txt)
  nodeps=$(sed -n 's/^#no-deps //p' requirements.txt)
  [ -z "$nodeps" ] || "$PY" -m pip install -q --no-deps $nodeps
  cp requirements.txt "$stamp"
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

case "${1:-default}" in
  test)
    shift
    exec "$PY" -m pytest -q "$@"
    ;;
  default)
    out=runs/default
    "$PY" cooper.py prepare
    for mode in rule rm cooper; do
      "$PY" cooper.py --reward "$mode" --steps "${STEPS:-120}" --seed 0 --out "$out/$mode"
    done
    "$PY" cooper.py report "$out/rule" "$out/rm" "$out/cooper" >/dev/null
    echo
    "$PY" cooper.py table "$out/rule" "$out/rm" "$out/cooper" | tee "$out/table.md"
    echo "reports: $out/<mode>/report.md and report.png"
    ;;
  reproduce)
    shift
    out=${OUT:-runs/reproduce}
    "$PY" cooper.py prepare
    one_run() {   # mode seed [more cooper.py args]; its log next to its run folder
      mkdir -p "$out/$1"
      OMP_NUM_THREADS=1 "$PY" cooper.py --reward "$1" --seed "$2" --steps "${STEPS:-150}" --out "$out/$1/seed$2" \
        "${@:3}" >"$out/$1/seed$2.log" 2>&1 || echo "FAILED: --reward $1 --seed $2 (see $out/$1/seed$2.log)"
    }
    # JOBS runs at a time (default 2), one thread each: on 2 cores this beats one run on two threads.
    for seed in $(seq 0 $(( ${SEEDS:-3} - 1 ))); do
      for mode in rule rm cooper; do
        one_run "$mode" "$seed" "$@" &
        while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n || true; done
      done
    done
    wait
    for mode in rule rm cooper; do "$PY" cooper.py report "$out/$mode"/seed*/ >/dev/null; done
    "$PY" cooper.py summarize "$out"
    echo "wrote $out/results.json, $out/results.md, $out/curves.png"
    ;;
  *)
    exec "$PY" cooper.py "$@"
    ;;
esac
