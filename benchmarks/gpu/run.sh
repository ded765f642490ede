#!/usr/bin/env bash
# The GPU kit: every figure of issue 12 in one command on the GPU machine (no network there).
#
# On the GPU machine, from the repository root, with $OUT set and the folder .gpukit/ made by
# benchmarks/gpu/prepare.sh sent along (device tool: command below, carry [".gpukit"],
# timeout_s 540):
#
#     KIT_DIR=.gpukit bash benchmarks/gpu/run.sh
#
# It installs the carried wheels into /tmp/site (PYTHONPATH; the tree itself is the package,
# nothing is pip-installed from it), then runs benchmarks/gpu/kit.py, which caps every process
# at 24 GiB of GPU memory and writes $OUT/gpu_kit.json (device, versions, every figure, an error
# per failed part; rewritten after every part) and $OUT/gpu_kit.log, all within about 8 minutes
# (KIT_TOTAL_S, default 470 s, this script's start to the last part's end). What each part
# measures: the docstring of benchmarks/gpu/kit.py. Extra arguments go to kit.py (e.g.
# --parts memory_8b,speed_hf).
#
# CPU smoke run of the same driver (tiny architecture, no wheels, no cap, ~1 minute; the test
# suite runs it in tests/test_gpu_kit.py); OUT defaults to a new temporary folder:
#
#     bash benchmarks/gpu/run.sh --smoke
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
PY="${PYTHON:-python3}"

if [ "${1:-}" = "--smoke" ]; then
  shift
  OUT="${OUT:-$(mktemp -d -t srlite-gpukit-smoke-XXXXXX)}"
  mkdir -p "$OUT"
  exec "$PY" benchmarks/gpu/kit.py --smoke --out "$OUT/gpu_kit.json" --log "$OUT/gpu_kit.log" "$@"
fi

: "${OUT:?run.sh writes its results under \$OUT (the device tool sets it)}"
mkdir -p "$OUT"
START=$(date +%s)
TOTAL="${KIT_TOTAL_S:-470}"
KIT="${KIT_DIR:-.gpukit}"
SITE="${KIT_SITE:-/tmp/site}"
LOG="$OUT/gpu_kit.log"
JSON="$OUT/gpu_kit.json"

echo "== gpu kit $(date -u +%FT%TZ): installing $KIT/wheels into $SITE" | tee -a "$LOG"
install_rc=0
failed_wheels=()
shopt -s nullglob
wheels=("$KIT"/wheels/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  install_rc=127
  echo "no wheels in $KIT/wheels: run benchmarks/gpu/prepare.sh here first and send $KIT along" | tee -a "$LOG"
else
  pip_target=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")
  if ! "${pip_target[@]}" "${wheels[@]}" >> "$LOG" 2>&1; then
    install_rc=1  # all-or-nothing failed: install one by one, so one bad wheel costs only its own parts
    for w in "${wheels[@]}"; do
      "${pip_target[@]}" "$w" >> "$LOG" 2>&1 || failed_wheels+=("$(basename "$w")")
    done
  fi
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
install_s=$(( $(date +%s) - START ))
echo "== install: exit $install_rc, ${#wheels[@]} wheels, ${install_s} s, failed: ${failed_wheels[*]:-none}" | tee -a "$LOG"
failed_json="[]"
[ ${#failed_wheels[@]} -gt 0 ] && failed_json="[$(printf '"%s",' "${failed_wheels[@]}" | sed 's/,$//')]"

tokenizer=()
[ -f "$KIT/tokenizer/tokenizer.json" ] && tokenizer=(--tokenizer "$KIT/tokenizer")
budget=$(( TOTAL - $(date +%s) + START - 15 ))  # 15 s for the driver's start and last write
"$PY" benchmarks/gpu/kit.py --out "$JSON" --log "$LOG" --budget-s "$budget" --work /tmp/srlite-gpukit \
  --install "{\"exit_code\": $install_rc, \"wheels\": ${#wheels[@]}, \"failed\": $failed_json, \"seconds\": $install_s, \"site\": \"$SITE\"}" \
  "${tokenizer[@]}" "$@"
rc=$?
if [ ! -s "$JSON" ]; then  # the driver died before its first write: still leave one JSON
  printf '{"error": "kit.py exited with %s before writing a report; see gpu_kit.log", "install_exit_code": %s}\n' \
    "$rc" "$install_rc" > "$JSON"
fi
echo "== gpu kit done in $(( $(date +%s) - START )) s (exit $rc): $JSON" | tee -a "$LOG"
if [ "$(stat -c %s "$LOG")" -gt 15000000 ]; then  # files come back only up to 16 MB each: keep both ends
  { head -c 3000000 "$LOG"; printf '\n\n[... log cut to its first 3 MB and last 11 MB ...]\n\n'; tail -c 11000000 "$LOG"; } > "$LOG.cut"
  mv "$LOG.cut" "$LOG"
fi
exit $rc
