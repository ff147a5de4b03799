#!/usr/bin/env bash
# Installs smartbin as a systemd service on 64-bit Raspberry Pi OS, Bookworm or Trixie (arm64; LiteRT has no 32-bit wheels).
#
#   git clone <this repository> smartbin && cd smartbin
#   sudo firmware_config/install.sh                                  # no broker password
#   sudo firmware_config/install.sh --mqtt-password-file ~/mqtt.pw   # broker wants a password
#
# What it does (each step is safe to repeat; docs/install-pi.md explains them):
#   1. apt packages: picamera2 + libcamera and lgpio come from Raspberry Pi OS, never from pip
#   2. a system user `smartbin` in the groups gpio and video
#   3. the source in /opt/smartbin/src and a venv in /opt/smartbin/venv with --system-site-packages
#      (so the venv sees the apt picamera2/libcamera bindings), then pip install .[edge];
#      /usr/local/bin/smartbin links to it
#   4. /etc/smartbin/smartbin.yaml (kept if it exists) and /etc/smartbin/mqtt_password (0600, root)
#   5. the systemd unit, enabled and (re)started
set -euo pipefail
umask 022  # whatever sudo inherited: the service user must read the venv, the source and the config

PREFIX=/opt/smartbin
CONF_DIR=/etc/smartbin
PASSWORD_FILE=""

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
GIVEN=("$@")  # for the "run as root" hint: the loop below shifts them away
while [[ $# -gt 0 ]]; do
    case "$1" in
        --mqtt-password-file)
            [[ $# -ge 2 ]] || { echo "--mqtt-password-file needs a FILE (see --help)" >&2; exit 2; }
            PASSWORD_FILE="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ $EUID -ne 0 ]]; then
    echo "run as root: sudo $0 ${GIVEN[*]}" >&2
    exit 1
fi
if [[ -n "$PASSWORD_FILE" && ! ( -f "$PASSWORD_FILE" && -r "$PASSWORD_FILE" ) ]]; then
    echo "cannot read password file $PASSWORD_FILE" >&2
    exit 2
fi
SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ARCH="$(dpkg --print-architecture)"
if [[ "$ARCH" != "arm64" && "$ARCH" != "amd64" ]]; then
    # ai-edge-litert publishes no armhf wheels: stop before apt, the user and the copy, not at pip.
    echo "this is a $ARCH system; smartbin needs 64-bit Raspberry Pi OS (arm64): reinstall the SD card with it" >&2
    exit 2
fi

echo "== 1/5 apt packages"
apt-get update
apt-get install -y --no-install-recommends \
    python3-venv python3-pip python3-picamera2 python3-lgpio python3-gpiozero mosquitto-clients rsync

echo "== 2/5 user smartbin (groups gpio, video)"
if ! id smartbin >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/smartbin --no-create-home --shell /usr/sbin/nologin smartbin
fi
# Raspberry Pi OS has the group gpio; plain Debian (a dry run on a PC) does not.
usermod -a -G "$(getent group gpio >/dev/null && echo gpio,video || echo video)" smartbin

echo "== 3/5 source and venv in $PREFIX"
mkdir -p "$PREFIX"
# Only what the bin runs: not a checkout's training runs, quick-start venv, local state or test output
# (--delete-excluded also removes them from an install made before they were excluded).
# Owned by root and readable by all, whatever the checkout's owner and umask: the service (user
# smartbin) must read the model, and must not be able to change the code it runs.
rsync -a --delete --delete-excluded --chown=root:root --chmod=u=rwX,go=rX \
    --exclude .git --exclude '*.egg-info' --exclude __pycache__ --exclude .pytest_cache \
    --exclude /runs --exclude /.venv --exclude /state --exclude /test-artifacts --exclude /build --exclude /dist \
    "$SRC_DIR/" "$PREFIX/src/"
# The system's Python (not a pyenv or conda one first on root's PATH): only it sees the apt picamera2.
# A venv made otherwise (or broken by a Python upgrade) is made anew. After an OS upgrade (Bookworm to
# Trixie: Python 3.11 to 3.13) the old venv still starts, but its packages sit in lib/python3.11,
# which the new Python does not read.
SYSTEM_PYTHON="$(/usr/bin/python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')"
if ! grep -qsx "include-system-site-packages = true" "$PREFIX/venv/pyvenv.cfg" \
        || ! grep -qsx "home = /usr/bin" "$PREFIX/venv/pyvenv.cfg" \
        || [[ ! -d "$PREFIX/venv/lib/$SYSTEM_PYTHON/site-packages" ]] \
        || ! "$PREFIX/venv/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")' 2>/dev/null; then
    rm -rf "$PREFIX/venv"
    /usr/bin/python3 -m venv --system-site-packages "$PREFIX/venv"
    "$PREFIX/venv/bin/pip" install --upgrade pip  # once per venv, not on every upgrade
fi
# The venv keeps the system's numpy major version, which the apt picamera2 stack is built against
# (Bookworm: numpy<2 and OpenCV<4.12; Trixie: numpy 2): venv_pins.sh says why.
mapfile -t PINS < <(bash "$PREFIX/src/firmware_config/venv_pins.sh" /usr/bin/python3)
wait $! || { echo "cannot tell which numpy the system has (firmware_config/venv_pins.sh failed)" >&2; exit 1; }
echo "   pins for the system's numpy: ${PINS[*]:-none}"
"$PREFIX/venv/bin/pip" install "$PREFIX/src[edge]" "${PINS[@]}"
# So that `smartbin validate-config ...`, as the docs write it, works from any shell.
ln -sfn "$PREFIX/venv/bin/smartbin" /usr/local/bin/smartbin

echo "== 4/5 config in $CONF_DIR"
install -d -m 0755 "$CONF_DIR"
if [[ ! -f "$CONF_DIR/smartbin.yaml" ]]; then
    # The service runs outside the source tree, so the default model gets an absolute path.
    sed "s#^  path: models/#  path: $PREFIX/src/models/#" "$PREFIX/src/firmware_config/smartbin.yaml" \
        > "$CONF_DIR/smartbin.yaml"
    chmod 0644 "$CONF_DIR/smartbin.yaml"
    echo "   wrote $CONF_DIR/smartbin.yaml (edit it, then: sudo systemctl restart smartbin)"
else
    echo "   kept the existing $CONF_DIR/smartbin.yaml"
fi
# systemd hands this file to the service as the credential mqtt_password (LoadCredential=); it must
# exist for the service to start, so it is created empty when the broker needs no password.
if [[ -n "$PASSWORD_FILE" && ! "$PASSWORD_FILE" -ef "$CONF_DIR/mqtt_password" ]]; then
    install -m 0600 -o root -g root "$PASSWORD_FILE" "$CONF_DIR/mqtt_password"
elif [[ ! -f "$CONF_DIR/mqtt_password" ]]; then
    install -m 0600 -o root -g root /dev/null "$CONF_DIR/mqtt_password"
fi
# As the service will run it: as smartbin, from / (a relative model path or a model the service
# cannot read passes a check run as root from the checkout, and then stops the service).
if ! (cd / && runuser -u smartbin -- "$PREFIX/venv/bin/smartbin" validate-config --as-service "$CONF_DIR/smartbin.yaml"); then
    echo "the new version is installed but the service was not restarted: fix $CONF_DIR/smartbin.yaml as the" >&2
    echo "lines above say, then run this script again. A running service keeps the old code it has loaded" >&2
    echo "only until its next restart (or a reboot), which runs the new version with this config." >&2
    exit 2
fi

echo "== 5/5 systemd service"
install -m 0644 "$PREFIX/src/systemd/smartbin.service" /etc/systemd/system/smartbin.service
systemctl daemon-reload
systemctl enable smartbin
# restart, not start: on a re-run (an upgrade) the old process must not keep running on replaced files
systemctl restart smartbin || echo "the service did not start (no camera yet?): see  journalctl -u smartbin" >&2
systemctl --no-pager --lines=5 status smartbin || true
echo "done: follow the log with  journalctl -u smartbin -f"
