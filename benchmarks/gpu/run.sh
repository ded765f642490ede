#!/usr/bin/env bash
# The GPU kit: every figure of issue 12 in one command on the GPU machine (no network there).
#
# On the GPU machine, from the repository root, with $OUT set and the folder .gpukit/ made by
# benchmarks/gpu/prepare.sh sent along (device tool: command below, carry [".gpukit"],
# timeout_s 540):
#
#     KIT_DIR=.gpukit bash benchmarks/gpu/run.sh
#
# It records the machine's own package versions, installs the carried wheels into /tmp/site
# (PYTHONPATH; the tree itself is the package, nothing is pip-installed from it), then runs
# benchmarks/gpu/kit.py, which caps every process at 24 GiB of GPU memory and writes
# $OUT/gpu_kit.json (device, versions, every figure, an error per failed part; rewritten after
# every step) and $OUT/gpu_kit.log, all within KIT_TOTAL_S (default 480 s: this script's start to
# the last step's end, the install included). What each part measures and the time plan:
# the docstring of benchmarks/gpu/kit.py. Extra arguments go to kit.py (e.g. --parts memory_8b).
#
# CPU smoke run of the same driver (tiny architecture, no wheels, no cap, under a minute; the
# test suite runs it in tests/integration/benchmarks/test_gpu_kit.py); OUT defaults to a new temporary folder:
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
TOTAL="${KIT_TOTAL_S:-480}"
KIT="${KIT_DIR:-.gpukit}"
SITE="${KIT_SITE:-/tmp/site}"
LOG="$OUT/gpu_kit.log"
JSON="$OUT/gpu_kit.json"

# The machine's own versions, before the carried wheels shadow any (fsspec, peft are carried)
base_versions=$("$PY" - <<'PYEOF' 2>/dev/null || echo null
import importlib.metadata as m, json
names = ["torch", "transformers", "peft", "accelerate", "fsspec", "huggingface_hub", "tokenizers", "safetensors",
         "triton", "numpy", "pandas", "pyarrow", "xxhash", "trl", "datasets", "bitsandbytes", "unsloth", "xformers"]
def version(n):
    try:
        return m.version(n)
    except m.PackageNotFoundError:
        return None
print(json.dumps({n: version(n) for n in names}))
PYEOF
)
echo "== gpu kit $(date -u +%FT%TZ): machine's packages: $base_versions" | tee -a "$LOG"
echo "== installing $KIT/wheels into $SITE" | tee -a "$LOG"
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
# bitsandbytes picks libbitsandbytes_cuda<torch's CUDA>.so (cuda130 for torch cu130, the one carried);
# BNB_CUDA_VERSION would override that choice, so it must not be set. The library links
# libcudart.so.13 / libcublas(Lt).so.13, which torch has loaded by then (bitsandbytes imports
# torch first); torch's own copies (pip's nvidia folders, not the system toolkit's) also go on
# LD_LIBRARY_PATH in case the library is loaded on its own.
unset BNB_CUDA_VERSION
cuda_libs=$(find "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)/nvidia" -maxdepth 3 \
  \( -name 'libcublas.so.13*' -o -name 'libcudart.so.13*' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)
[ -n "$cuda_libs" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$cuda_libs"
echo "== CUDA 13 libraries for bitsandbytes: ${cuda_libs:-none found (torch loads its own)}" | tee -a "$LOG"
install_s=$(( $(date +%s) - START ))
echo "== install: exit $install_rc, ${#wheels[@]} wheels, ${install_s} s, failed: ${failed_wheels[*]:-none}" | tee -a "$LOG"
failed_json="[]"
[ ${#failed_wheels[@]} -gt 0 ] && failed_json="[$(printf '"%s",' "${failed_wheels[@]}" | sed 's/,$//')]"

tokenizer=()
[ -f "$KIT/tokenizer/tokenizer.json" ] && tokenizer=(--tokenizer "$KIT/tokenizer")
deadline=$(( START + TOTAL - 10 ))  # 10 s for the driver's last write and this script's end
"$PY" benchmarks/gpu/kit.py --out "$JSON" --log "$LOG" --deadline "$deadline" --work /tmp/srlite-gpukit \
  --install "{\"exit_code\": $install_rc, \"wheels\": ${#wheels[@]}, \"failed\": $failed_json, \"seconds\": $install_s, \"site\": \"$SITE\"}" \
  --base-versions "$base_versions" "${tokenizer[@]}" "$@"
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
