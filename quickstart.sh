#!/usr/bin/env bash
# One command from a fresh checkout to a running virtual bin: creates .venv, installs smartbin's
# device side, and sorts replayed photos with the shipped model and a simulated flap.
#
#   ./quickstart.sh [PHOTO_FOLDER] [extra `smartbin run` options, e.g. --mqtt 127.0.0.1:1883]
#
# PHOTO_FOLDER (relative to where you stand; a folder that does not exist is an error) defaults to
# $SMARTBIN_DATA (the same rules), then ../shared/data/trashnet beside this checkout; class
# subfolders become each item's `truth`. Without any of them it makes a few plain demo pictures so
# the pipeline runs. Packages are installed on the first run (and when pyproject.toml changes).
set -euo pipefail
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then  # a first argument that is not an option is the folder
  if [ ! -d "$1" ]; then
    echo "quickstart.sh: $1: no such photo folder" >&2
    exit 2
  fi
  photos="$(cd "$1" && pwd)"  # from where the user stands, before the cd below
  shift
elif [ -n "${SMARTBIN_DATA:-}" ]; then  # set on purpose: a typo must not turn into demo pictures
  if [ ! -d "$SMARTBIN_DATA" ]; then
    echo "quickstart.sh: SMARTBIN_DATA=$SMARTBIN_DATA: no such photo folder" >&2
    exit 2
  fi
  photos="$(cd "$SMARTBIN_DATA" && pwd)"
fi
cd "$(dirname "$0")"
photos="${photos:-../shared/data/trashnet}"

# A venv left half-made by an interrupted first run (no pip in it) is made again.
if ! { [ -x .venv/bin/python ] && .venv/bin/python -m pip --version >/dev/null 2>&1; }; then
  python3 -m venv --clear .venv
fi
# Installed once per pyproject.toml: later runs start without the network.
stamp=".venv/.smartbin-installed"
wanted="$(python3 -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[edge]"
  echo "$wanted" > "$stamp"
fi

if [ ! -d "$photos" ]; then
  photos=state/demo-photos
  echo "No photo folder found; replaying generated demo pictures from $photos (labels will be guesses)."
  .venv/bin/python - "$photos" <<'PY'
import sys, pathlib, cv2, numpy as np
root = pathlib.Path(sys.argv[1])
rng = np.random.default_rng(0)
for name, colour in (("cardboard", (60, 120, 170)), ("glass", (90, 160, 80)), ("metal", (170, 170, 175))):
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        image = np.full((512, 384, 3), 235, np.uint8)
        cv2.ellipse(image, (192, 256), (110 + 10 * i, 160), 0, 0, 360, colour, -1)
        image = cv2.add(image, rng.integers(0, 12, image.shape, dtype=np.uint8))
        cv2.imwrite(str(root / name / f"{name}{i}.jpg"), image)
PY
fi

exec .venv/bin/smartbin run --replay "$photos" --replay-fps 0 --mock-gpio --state-dir state "$@"
