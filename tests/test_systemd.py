"""The systemd unit: `systemd-analyze verify` is clean, and it asks for what the daemon relies on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "smartbin.service"
INSTALLED_BINARY = "/opt/smartbin/venv/bin/smartbin"


def directives() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key}", []).append(value)
    return values


@pytest.mark.timeout(60)
def test_systemd_analyze_verify_is_clean(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify insists that ExecStart exists; the real path only exists on an installed Pi.
    unit = tmp_path / "smartbin.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_BINARY, sys.executable))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=50)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "smartbin" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def test_the_unit_is_a_watched_notify_service_with_hardening():
    unit = directives()
    expected = {
        "Service.Type": "notify", "Service.Restart": "on-failure", "Service.User": "smartbin",
        "Service.StateDirectory": "smartbin", "Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict",
        "Service.ProtectHome": "yes", "Service.PrivateTmp": "yes",
        "Service.LoadCredential": "mqtt_password:/etc/smartbin/mqtt_password",
    }
    for key, value in expected.items():
        assert unit[key] == [value], key
    assert "GPIOZERO_PIN_FACTORY=lgpio" in unit["Service.Environment"]
    # Groups come from the user (install.sh): a unit naming a group the system lacks never starts.
    assert "Service.SupplementaryGroups" not in unit
    # Retries end: 10 failed starts in 5 minutes leave the unit failed, not restarting for ever.
    assert int(unit["Service.RestartSec"][0]) * int(unit["Unit.StartLimitBurst"][0]) \
        < int(unit["Unit.StartLimitIntervalSec"][0])
    assert int(unit["Service.WatchdogSec"][0]) >= 10
    assert int(unit["Service.TimeoutStopSec"][0]) > 5  # the daemon needs at most 5 s
    allowed = " ".join(unit["Service.DeviceAllow"])
    for device in ("video4linux", "media", "dma_heap", "gpiochip"):
        assert device in allowed
    assert "PrivateDevices" not in "".join(unit)  # it would hide the camera and GPIO
    assert unit["Service.ExecStart"][0].startswith(INSTALLED_BINARY + " run --config /etc/smartbin/smartbin.yaml")


def test_the_install_script_gives_the_user_the_gpio_and_video_groups_the_unit_relies_on():
    script = (UNIT.parents[1] / "firmware_config" / "install.sh").read_text()
    groups = next(line for line in script.splitlines() if line.startswith("usermod -a -G"))
    assert "gpio" in groups and "video" in groups and "smartbin" in groups


def test_the_install_script_puts_the_binary_where_the_unit_expects_it():
    script = (UNIT.parents[1] / "firmware_config" / "install.sh").read_text()
    assert "/opt/smartbin/venv" in script
    assert "systemctl enable smartbin" in script and "systemctl restart smartbin" in script  # re-runs upgrade
    for folder in ("/runs", "/.venv", "/state"):  # a checkout's training runs and quick-start venv stay behind
        assert f"--exclude {folder} " in script


def test_the_install_script_checks_the_config_as_the_service_will_run_it():
    script = (UNIT.parents[1] / "firmware_config" / "install.sh").read_text()
    # as user smartbin from /: a relative model path or an unreadable model fails here, not at boot
    assert '(cd / && runuser -u smartbin -- "$PREFIX/venv/bin/smartbin" validate-config --as-service' in script
    assert "--chown=root:root --chmod=u=rwX,go=rX" in script  # the service reads the code and model, never writes
    assert "/usr/bin/python3 -m venv --system-site-packages" in script  # never a pyenv/conda python on root's PATH


def venv_pins(tmp_path, fake_python: str) -> subprocess.CompletedProcess:
    """venv_pins.sh run with a stand-in for the system Python (it prints what numpy's check would)."""
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\n" + fake_python)
    python.chmod(0o755)
    script = UNIT.parents[1] / "firmware_config" / "venv_pins.sh"
    return subprocess.run(["bash", str(script), str(python)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("major, pins", [
    ("1", ["numpy<2", "opencv-python-headless<4.12"]),  # Bookworm
    ("2", ["numpy>=2,<3"]),  # Trixie (Python 3.13: numpy 1.x has no wheels for it)
    ("", []),  # no system numpy: nothing to stay compatible with
])
def test_the_install_script_keeps_the_venv_on_the_system_numpys_major_version(tmp_path, major, pins):
    # picamera2 from apt is built against the system's numpy; another major version in the venv breaks it.
    result = venv_pins(tmp_path, f"echo {major}\n" if major else "exit 0\n")
    assert result.returncode == 0 and result.stdout.splitlines() == pins
    install = (UNIT.parents[1] / "firmware_config" / "install.sh").read_text()
    assert 'venv_pins.sh" /usr/bin/python3)' in install and '"$PREFIX/src[edge]" "${PINS[@]}"' in install
    assert "wait $! ||" in install  # a failing venv_pins.sh stops the install instead of meaning "no pins"


@pytest.mark.parametrize("fake_python, message", [
    ("echo 'ImportError: numpy is broken' >&2; exit 1\n", "numpy is broken"),
    ("echo 3\n", "no pins are known for it"),
])
def test_a_numpy_that_cannot_be_read_is_an_error_not_no_pins(tmp_path, fake_python, message):
    # Unpinned, pip could put a numpy of the wrong major version beside the apt picamera2.
    result = venv_pins(tmp_path, fake_python)
    assert result.returncode != 0 and result.stdout == "" and message in result.stderr


def test_the_install_script_remakes_a_venv_left_by_an_older_python():
    # Bookworm -> Trixie: the old venv still starts on Python 3.13 but its packages are in lib/python3.11.
    install = (UNIT.parents[1] / "firmware_config" / "install.sh").read_text()
    assert '[[ ! -d "$PREFIX/venv/lib/$SYSTEM_PYTHON/site-packages" ]]' in install


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run it as another user")
def test_the_run_as_root_hint_keeps_the_options_given():
    script = UNIT.parents[1] / "firmware_config" / "install.sh"
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c",
                           f"bash -s -- --mqtt-password-file pw.txt < {script}"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "run as root: sudo" in done.stderr and "--mqtt-password-file pw.txt" in done.stderr
