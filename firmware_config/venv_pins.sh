#!/usr/bin/env bash
# Prints the pip pins (one per line) that keep a --system-site-packages venv on the system's numpy.
#
#   firmware_config/venv_pins.sh /usr/bin/python3      # Bookworm: numpy<2 and opencv-python-headless<4.12
#
# The apt picamera2 stack (simplejpeg, pidng) is built against the system's numpy, and a venv numpy of
# another major version breaks it ("numpy.dtype size changed"). Raspberry Pi OS Bookworm has numpy 1.x,
# and OpenCV 4.12 is the first that needs numpy 2, so there both are pinned below 2 / 4.12 (pip would
# otherwise download OpenCVs until one fits). Trixie has numpy 2.x (and Python 3.13, for which numpy
# 1.x has no wheels): numpy stays on 2.x. A system without numpy gets no pin.
set -euo pipefail
python="${1:?usage: $0 SYSTEM_PYTHON}"
# -I: the system's own site-packages only, never a user's ~/.local numpy
major="$("$python" -I -c 'import numpy; print(numpy.__version__.split(".")[0])' 2>/dev/null || true)"
case "$major" in
    1) printf '%s\n' "numpy<2" "opencv-python-headless<4.12" ;;
    2) printf '%s\n' "numpy>=2,<3" ;;
    *) ;;
esac
