#!/usr/bin/env bash
# hetplug's GPU run (issue 21), prepared to go in one call within 10 minutes on a CUDA
# machine with Python 3.12 and torch (2.11 + CUDA) preinstalled and no package index.
#
#   bash benchmarks/gpu.sh                          # on the GPU machine
#   bash benchmarks/gpu.sh --dry-run                # here, on the CPU: same steps, small sizes, no install
#
# What it does, each step under its own time limit; a failing or timed-out step is
# recorded (rc, seconds, log) and the run goes on:
#   install      pip install --no-index --no-deps the cp312 wheels in benchmarks/wheels
#                (benchmarks/gpu-requirements.txt) into .gpu-venv, which sees the system torch
#   env          GPU name, CUDA, torch and Python versions, date          -> env.json
#   tests        pytest -m gpu (the CUDA variants of the tests)           -> tests.json, pytest.xml
#   bench_*      every benchmark with --device cuda --out                 -> bench_*.json
#   descriptors  SHEP descriptors for 10k agents on 64x64 cells           -> descriptors_10k.json
#                (target <= 1 ms per step)
#   sync         every plugin's per-step hooks on CUDA tensors under
#                torch.cuda.set_sync_debug_mode (check_inputs=False)       -> sync.json
#   summary      every step's status and every target row                  -> summary.json
# Output folder: benchmarks/results/gpu/<date>_<gpu>_torch<version>/ (commit it; then
# `python benchmarks/report.py` puts it in docs/performance.md). A dry run writes to
# runs/gpu-dry-run/<date>/ instead (not a GPU measurement).
#
# Preparing the wheels (on a machine with PyPI, before going to the GPU machine): the two
# commands in the header of benchmarks/gpu-requirements.txt (pip download ... cp312 wheels
# and pip wheel ... for the four source-only packages) fill benchmarks/wheels/ (git-ignored).
#
# Environment: PYTHON (default python3), BUDGET_S (default 570: steps that would start
# after it are skipped and recorded as such), SKIP_INSTALL=1.
set -u -o pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; fi
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-570}"
START=$(date +%s)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONPATH="$ROOT:$ROOT/adapters/benchmarl:$ROOT/adapters/epymarl${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [[ $DRY == 1 ]]; then
  DEVICE=cpu
  OUT="$ROOT/runs/gpu-dry-run/$(date -u +%Y%m%d-%H%M%S)"
else
  DEVICE=cuda
  if [[ "${SKIP_INSTALL:-0}" != 1 && -d "$ROOT/benchmarks/wheels" ]]; then
    # Keep the system torch; add what the wheels bring.
    "$PY" -m venv --system-site-packages "$ROOT/.gpu-venv" \
      && "$ROOT/.gpu-venv/bin/python" -m pip install --no-index --no-deps --quiet \
        --find-links "$ROOT/benchmarks/wheels" -r "$ROOT/benchmarks/gpu-requirements.txt" \
      > "$ROOT/.gpu-install.log" 2>&1 \
      && PY="$ROOT/.gpu-venv/bin/python" || echo "install failed: see .gpu-install.log" >&2
  fi
  NAME=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-cuda")' 2>/dev/null | tr -c 'A-Za-z0-9.\n' '-')
  TORCH=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null | tr -c 'A-Za-z0-9.\n' '-')
  OUT="$ROOT/benchmarks/results/gpu/$(date -u +%Y%m%d-%H%M)_${NAME:-unknown}_torch${TORCH:-unknown}"
fi
mkdir -p "$OUT"
OUT="${OUT#"$ROOT"/}"  # relative (we are in ROOT): the recorded commands stay machine-independent
STEPS="$OUT/steps.jsonl"
: > "$STEPS"
[[ -f "$ROOT/.gpu-install.log" && $DRY == 0 ]] && cp "$ROOT/.gpu-install.log" "$OUT/install.log"

# step NAME LIMIT_S STDOUT_FILE COMMAND...: run with a time limit, record rc and seconds.
step() {
  local name=$1 limit=$2 stdout=$3
  shift 3
  local now=$(date +%s)
  if (( now - START + limit > BUDGET_S )) && (( now - START + 30 > BUDGET_S )); then
    echo "{\"step\": \"$name\", \"rc\": null, \"skipped\": \"time budget ($BUDGET_S s) spent\"}" >> "$STEPS"
    echo "[gpu.sh] $name: skipped (budget)" >&2
    return
  fi
  # Never run past the budget: shorten the limit to what is left.
  local left=$(( BUDGET_S - (now - START) ))
  (( limit > left )) && limit=$left
  local t0=$(date +%s%N)
  timeout --kill-after=10 "$limit" "$@" > "$stdout" 2> "$OUT/$name.log"
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  local secs=$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $secs, \"limit_s\": $limit, \"timed_out\": $([[ $rc == 124 || $rc == 137 ]] && echo true || echo false)}" >> "$STEPS"
  echo "[gpu.sh] $name: rc=$rc in ${secs}s" >&2
}

B="$ROOT/benchmarks"
if [[ $DRY == 1 ]]; then
  # Small sizes: the point is that every step runs.
  QUICK=(--quick)
  SAMPLER=(--rounds 20)
  LBS=(--quick --repeat 3)
  SHPPO=(--quick --repeat 3)
  HETDPS=(--quick --no-old)
  BENCHMARL=(--algorithms iql --plugins per --repeat 1)
  DESC=(--agents 10000 --repeat 3)
else
  QUICK=()
  SAMPLER=(--rounds 200)
  LBS=()
  SHPPO=()
  HETDPS=(--no-old)
  BENCHMARL=(--algorithms iql mappo --repeat 5)
  DESC=(--agents 10000 --repeat 20)
fi

step env 60 "$OUT/env.stdout" "$PY" "$B/gpu_checks.py" env --device $DEVICE --out "$OUT/env.json"
step tests 150 "$OUT/tests.log.txt" "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml "$OUT/pytest.xml" tests
"$PY" - "$OUT" <<'EOF' > /dev/null 2>&1
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path
out = Path(sys.argv[1])
try:
    suite = ET.parse(out / "pytest.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    ok = counts["failures"] == 0 and counts["errors"] == 0 and counts["passed"] > 0
    row = {"measure": "pytest -m gpu", "value": counts["passed"], "unit": f"passed of {counts['tests']}",
           "target": "all pass", "met": ok}
    (out / "tests.json").write_text(json.dumps({"tests": counts, "summary": [row]}, indent=1) + "\n")
except Exception as err:
    (out / "tests.json").write_text(json.dumps({"error": repr(err)}) + "\n")
EOF
step sync 90 "$OUT/sync.stdout" "$PY" "$B/gpu_checks.py" sync --device $DEVICE --out "$OUT/sync.json"
step descriptors_10k 90 "$OUT/descriptors_10k.stdout" "$PY" "$B/gpu_checks.py" descriptors --device $DEVICE "${DESC[@]}" --out "$OUT/descriptors_10k.json"
step bench_descriptors 120 "$OUT/bench_descriptors.stdout" "$PY" "$B/bench_descriptors.py" --device $DEVICE "${QUICK[@]}" --out "$OUT/bench_descriptors.json"
step bench_sampler 90 "$OUT/bench_sampler.stdout" "$PY" "$B/bench_sampler.py" --device $DEVICE "${SAMPLER[@]}" --out "$OUT/bench_sampler.json"
step bench_shppo 90 "$OUT/bench_shppo.stdout" "$PY" "$B/bench_shppo.py" --device $DEVICE "${SHPPO[@]}" --out "$OUT/bench_shppo.json"
step bench_lbs 90 "$OUT/bench_lbs.stdout" "$PY" "$B/bench_lbs.py" --device $DEVICE "${LBS[@]}" --out "$OUT/bench_lbs.json"
step bench_hetdps 120 "$OUT/bench_hetdps.stdout" "$PY" "$B/bench_hetdps.py" --device $DEVICE "${HETDPS[@]}" --out "$OUT/bench_hetdps.json"
# bench_benchmarl prints its JSON on stdout (its --out is BenchMARL's run folder).
step bench_benchmarl 150 "$OUT/bench_benchmarl.json" "$PY" "$B/bench_benchmarl.py" --device $DEVICE "${BENCHMARL[@]}" --out "$OUT/benchmarl_runs"
rm -rf "$OUT/benchmarl_runs"
"$PY" "$B/gpu_checks.py" summary "$OUT" > /dev/null 2> "$OUT/summary.log"
echo "[gpu.sh] wrote $OUT (total $(( $(date +%s) - START )) s)" >&2
