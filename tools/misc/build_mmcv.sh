#!/usr/bin/env bash
# Build (or reuse) a wheel of the full mmcv 2.1.0 with its compiled CPU ops.
#
#   tools/misc/build_mmcv.sh [PYTHON]      (default: .venv/bin/python)
#
# PyPI has only mmcv's sdist for current torch. It builds unmodified with
#   MMCV_WITH_OPS=1 MAX_JOBS=2 CFLAGS=-g0, --no-build-isolation,
# and one change of flag: mmcv's setup.py hard-codes -std=c++17, torch 2.14's
# headers need C++20. A tiny compiler wrapper (first on PATH and set as CC/CXX)
# rewrites -std=c++17 to -std=c++20; the sdist itself is never edited.
#
# The wheel goes to build/wheels/torch-<torch version>/ (ignored by git): it
# fits that torch only, so the folder is keyed on it. A copy is kept in the
# user's cache, ${XDG_CACHE_HOME:-~/.cache}/convattn_mm/wheels/torch-<version>/,
# so that a fresh clone on the same machine (CI) reuses it too. When a wheel
# for this torch and this Python is in either place, nothing is built (pip's
# own wheel cache is bypassed: it is not keyed on the torch version). The
# last line printed is the wheel's path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${1:-${PYTHON:-$ROOT/.venv/bin/python}}"
MMCV_VERSION="${MMCV_VERSION:-2.1.0}"

read -r TORCH_VERSION PY_TAG < <("$PY" - <<'PYEOF'
import sys
import torch
print(torch.__version__, f'cp{sys.version_info[0]}{sys.version_info[1]}')
PYEOF
)
WHEEL_DIR="${MMCV_WHEEL_DIR:-$ROOT/build/wheels/torch-$TORCH_VERSION}"
USER_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/convattn_mm/wheels/torch-$TORCH_VERSION"
mkdir -p "$WHEEL_DIR"

find_wheel() {  # DIR -> path of a matching wheel or empty
    ls -1 "$1"/mmcv-"$MMCV_VERSION"-"$PY_TAG"-*.whl 2>/dev/null | head -n 1 || true
}

keep_user_copy() {
    mkdir -p "$USER_DIR" 2>/dev/null && cp -n "$1" "$USER_DIR"/ 2>/dev/null || true
}

WHEEL="$(find_wheel "$WHEEL_DIR")"
if [[ -z "$WHEEL" ]]; then
    CACHED="$(find_wheel "$USER_DIR")"
    if [[ -n "$CACHED" ]]; then
        cp "$CACHED" "$WHEEL_DIR"/
        WHEEL="$(find_wheel "$WHEEL_DIR")"
    fi
fi
if [[ -n "$WHEEL" ]]; then
    echo "build_mmcv: reusing $WHEEL" >&2
    keep_user_copy "$WHEEL"
    echo "$WHEEL"
    exit 0
fi

# Compiler wrapper: same compiler, -std=c++17 -> -std=c++20.
WRAP_DIR="$ROOT/build/mmcv-cxx20/bin"
mkdir -p "$WRAP_DIR"
cat > "$WRAP_DIR/cxx20-wrap" <<'WRAPEOF'
#!/usr/bin/env bash
# Run the real compiler named like this link, with -std=c++17 rewritten to -std=c++20.
self_dir="$(cd "$(dirname "$0")" && pwd)"
name="$(basename "$0")"
path_wo_self="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$self_dir" | paste -sd: -)"
real="$(PATH="$path_wo_self" command -v "$name")" || {
    echo "cxx20-wrap: no real '$name' on PATH" >&2; exit 127; }
args=()
for a in "$@"; do
    if [[ "$a" == "-std=c++17" ]]; then args+=("-std=c++20"); else args+=("$a"); fi
done
exec "$real" "${args[@]}"
WRAPEOF
chmod +x "$WRAP_DIR/cxx20-wrap"
for name in c++ g++ gcc cc; do
    ln -sf cxx20-wrap "$WRAP_DIR/$name"
done

echo "build_mmcv: building mmcv==$MMCV_VERSION for torch $TORCH_VERSION ($PY_TAG) into $WHEEL_DIR" >&2
start=$(date +%s)
env PATH="$WRAP_DIR:$PATH" CC="$WRAP_DIR/gcc" CXX="$WRAP_DIR/g++" \
    MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-2}" CFLAGS="-g0" \
    "$PY" -m pip --disable-pip-version-check wheel --no-cache-dir --no-deps --no-build-isolation \
    -w "$WHEEL_DIR" "mmcv==$MMCV_VERSION" >&2
echo "build_mmcv: built in $(( $(date +%s) - start )) s" >&2

WHEEL="$(find_wheel "$WHEEL_DIR")"
if [[ -z "$WHEEL" ]]; then
    echo "build_mmcv: pip wheel finished but no mmcv-$MMCV_VERSION-$PY_TAG wheel in $WHEEL_DIR" >&2
    exit 1
fi
keep_user_copy "$WHEEL"
echo "$WHEEL"
