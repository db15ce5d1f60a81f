#!/usr/bin/env bash
# Add the downstream stack (full mmcv 2.1.0, mmdet 3.3.0, mmpose 1.3.2) to the
# project environment. Idempotent: each step checks what is installed and
# does nothing when it is already there.
#
#   tools/misc/setup_full.sh [PYTHON]      (default: .venv/bin/python)
#
# Steps (see requirements/downstream.txt and docs/design.md section 6):
#   1. mmcv 2.1.0 with compiled ops: tools/misc/build_mmcv.sh builds a wheel
#      once per torch version into build/wheels/ (about 7 min on 2 cores) or
#      reuses it; mmcv-lite is uninstalled first (both provide `mmcv`).
#   2. mmdet 3.3.0 and its runtime requirements.
#   3. mmpose 1.3.2 with --no-deps, plus json-tricks, munkres, cython and
#      xtcocotools 1.14.3 built from source against the installed numpy.
#   4. scikit-image (sample photographs for the end-to-end tests).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${1:-${PYTHON:-$ROOT/.venv/bin/python}}"
PIP=("$PY" -m pip --disable-pip-version-check)
REQ="$ROOT/requirements/downstream.txt"

say() { echo "setup_full: $*"; }

# version DIST -> installed version or empty
version() {
    "$PY" - "$1" <<'PYEOF'
import importlib.metadata as md, sys
try:
    print(md.version(sys.argv[1]))
except md.PackageNotFoundError:
    print('')
PYEOF
}

# pin DIST -> the version pinned in requirements/downstream.txt
pin() { sed -n "s/^$1==\\([^ ]*\\).*/\\1/p" "$REQ"; }

# 1. full mmcv -------------------------------------------------------------
MMCV="$(pin mmcv)"
mmcv_ok() {
    [[ "$(version mmcv)" == "$MMCV" ]] && "$PY" -c 'import mmcv.ops' >/dev/null 2>&1
}
if mmcv_ok; then
    say "mmcv $MMCV with ops present"
else
    WHEEL="$(MMCV_VERSION="$MMCV" nice -n 10 "$ROOT/tools/misc/build_mmcv.sh" "$PY" | tail -n 1)"
    if [[ -n "$(version mmcv-lite)" ]]; then
        say "uninstalling mmcv-lite (the full mmcv replaces it)"
        "${PIP[@]}" uninstall -y mmcv-lite
    fi
    if [[ -n "$(version mmcv)" ]]; then
        "${PIP[@]}" uninstall -y mmcv
    fi
    "${PIP[@]}" install "$WHEEL"
    mmcv_ok || { say "mmcv installed from $WHEEL but 'import mmcv.ops' fails"; exit 1; }
fi

# 2. mmdet ----------------------------------------------------------------
MMDET="$(pin mmdet)"
if [[ "$(version mmdet)" == "$MMDET" ]]; then
    say "mmdet $MMDET present"
else
    "${PIP[@]}" install "mmdet==$MMDET" pycocotools shapely terminaltables scipy six
fi

# 3. mmpose ---------------------------------------------------------------
MMPOSE="$(pin mmpose)"
XTCOCO="$(pin xtcocotools)"
for dist in json-tricks munkres cython; do
    if [[ -z "$(version "$dist")" ]]; then
        "${PIP[@]}" install "$dist"
    fi
done
if [[ "$(version xtcocotools)" == "$XTCOCO" ]] && "$PY" -c 'import xtcocotools.mask' >/dev/null 2>&1; then
    say "xtcocotools $XTCOCO present"
else
    # the PyPI wheel was built against numpy 1.x: build against ours
    "${PIP[@]}" install --no-build-isolation --no-binary xtcocotools "xtcocotools==$XTCOCO"
fi
if [[ "$(version mmpose)" == "$MMPOSE" ]]; then
    say "mmpose $MMPOSE present"
else
    "${PIP[@]}" install --no-deps "mmpose==$MMPOSE"
fi

# 4. sample photographs ---------------------------------------------------
if [[ -z "$(version scikit-image)" ]]; then
    "${PIP[@]}" install scikit-image
else
    say "scikit-image present"
fi

"$PY" - <<'PYEOF'
import mmcv, mmdet, mmpose, mmcv.ops  # noqa: F401
import mmdet.models, mmpose.models  # noqa: F401
print(f'setup_full: ok (mmcv {mmcv.__version__} with ops, mmdet '
      f'{mmdet.__version__}, mmpose {mmpose.__version__})')
PYEOF
