#!/usr/bin/env bash
# Prints the pip pins (one per line) that keep a --system-site-packages venv on the system's numpy.
#
#   firmware_config/venv_pins.sh /usr/bin/python3      # Bookworm: numpy<2 and opencv-python-headless<4.12
#
# The apt picamera2 stack (simplejpeg, pidng) is built against the system's numpy, and a venv numpy of
# another major version breaks it ("numpy.dtype size changed"). Raspberry Pi OS Bookworm has numpy 1.x,
# and OpenCV 4.12 is the first that needs numpy 2, so there both are pinned below 2 / 4.12 (pip would
# otherwise download OpenCVs until one fits). Trixie has numpy 2.x (and Python 3.13, for which numpy
# 1.x has no wheels): numpy stays on 2.x. A system without numpy gets no pin; a Python that cannot
# be run, a numpy that cannot be imported or an unknown major version is an error (exit 1), never
# "no pins": unpinned, pip could put the wrong numpy beside picamera2.
set -euo pipefail
python="${1:?usage: $0 SYSTEM_PYTHON}"
# -I: the system's own site-packages only, never a user's ~/.local numpy
major="$("$python" -I -c '
import importlib.util, sys
if importlib.util.find_spec("numpy") is None:
    sys.exit(0)
import numpy
print(numpy.__version__.split(".")[0])')"
case "$major" in
    "") ;;
    1) printf '%s\n' "numpy<2" "opencv-python-headless<4.12" ;;
    2) printf '%s\n' "numpy>=2,<3" ;;
    *) echo "$0: the system's numpy is version $major.x; no pins are known for it" >&2; exit 1 ;;
esac
