"""The `smartbin` command line: exit codes, one-line errors, overrides, calibrate-flap."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys

import pytest

from edge.__main__ import build_parser, main, run_overrides
from edge.calibrate import run as calibrate

pytestmark = pytest.mark.timeout(120)


def write_config(tmp_path, text: str = "", bundle=None):
    path = tmp_path / "smartbin.yaml"
    model = f"model: {{path: {bundle}}}\n" if bundle else ""
    path.write_text(model + text)
    return path


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "validate-config", "classify", "web", "calibrate-flap"):
        assert command in out


def test_validate_config_accepts_a_good_file_and_prints_warnings(tmp_path, tiny_bundle, capsys):
    path = write_config(tmp_path, "mqtt: {enabled: true, host: 192.0.2.10}\n", tiny_bundle)
    assert main(["validate-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"{path}: ok"
    assert captured.err.startswith("warning: mqtt.tls.enabled: broker 192.0.2.10 is not on this machine")


def test_validate_config_warns_when_the_bins_do_not_name_the_models_labels(tmp_path, tiny_bundle, capsys):
    # A model retrained on new classes with the TrashNet bins left in place: every item would go to "rest".
    path = write_config(tmp_path, "decision: {bins: {cardboard: paper, bottle: paper}}\n", tiny_bundle)
    assert main(["validate-config", str(path)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: decision.bins")]
    assert err == ["warning: decision.bins: labels without a bin go to 'rest': glass, metal",
                   "warning: decision.bins.bottle: not a label of the model (never used); "
                   "the model's labels are cardboard, glass, metal"]


def test_validate_config_checks_the_bins_against_the_model_run_would_use(tmp_path, tiny_bundle, capsys):
    # The config still names the shipped model; the user runs it with `run --model` their own bundle.
    path = write_config(tmp_path, "decision: {bins: {cardboard: paper, glass: glass, metal: rest}}\n")
    assert main(["validate-config", str(path), "--model", str(tiny_bundle)]) == 0
    assert "decision.bins" not in capsys.readouterr().err


def test_a_password_file_the_service_user_cannot_read_fails_the_check_as_the_service(tmp_path, tiny_bundle, capsys,
                                                                                       monkeypatch):
    # install.sh checks as user smartbin: a root-only file passed that check, then stopped the service (exit 2).
    import builtins

    import edge.config_checks

    (tmp_path / "broker.pw").write_text("s3cret\n")
    path = write_config(tmp_path, "mqtt: {username: bin, password_file: broker.pw}\n", tiny_bundle)

    def denied(file, *args, **kwargs):
        if str(file).endswith("broker.pw"):
            raise PermissionError(13, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(edge.config_checks, "open", denied, raising=False)
    assert main(["validate-config", str(path)]) == 0  # another user (pi) cannot judge: a warning
    assert "warning: mqtt.password_file: user " in capsys.readouterr().err
    assert main(["validate-config", "--as-service", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mqtt.password_file: user ") and "broker.pw (permission denied)" in err


def test_validate_config_prints_one_key_problem_line_each_and_exits_2(tmp_path, capsys):
    path = write_config(tmp_path, "camera: {type: webcam}\nflap: {pins: 3}\nmqtt: {password: x}\n")
    assert main(["validate-config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert sorted(line.split(":")[0] for line in lines) == ["camera.type", "flap.pins", "mqtt.password"]


def test_validate_config_checks_the_model_bundle(tmp_path, capsys):
    path = write_config(tmp_path, f"model: {{path: {tmp_path / 'missing'}}}\n")
    assert main(["validate-config", str(path)]) == 2
    assert capsys.readouterr().err.startswith("model.path: ")


def test_validate_config_loads_the_model_file_as_run_would(tmp_path, tiny_bundle, capsys):
    import json
    import shutil

    lying = shutil.copytree(tiny_bundle, tmp_path / "lying")
    manifest = json.loads((lying / "manifest.json").read_text())
    manifest["input"]["height"] = manifest["input"]["width"] = 2 * manifest["input"]["height"]
    (lying / "manifest.json").write_text(json.dumps(manifest))
    assert main(["validate-config", str(write_config(tmp_path)), "--model", str(lying)]) == 2
    assert "does not match the manifest's" in capsys.readouterr().err


def test_run_reports_a_bad_config_by_file_and_key_or_a_bad_model_in_one_line_and_exits_2(tmp_path, capsys,
                                                                                           photo_folder):
    config = write_config(tmp_path, "bogus: 1\n")
    assert main(["run", "--config", str(config)]) == 2
    assert capsys.readouterr().err == f"error: invalid config {config}:\nbogus: unknown key\n"
    path = write_config(tmp_path, f"model: {{path: {tmp_path / 'missing'}}}\n")
    assert main(["run", "--config", str(path), "--replay", str(photo_folder), "--mock-gpio",
                 "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "model bundle folder not found" in err and "Traceback" not in err


def test_run_names_the_option_whose_value_is_the_problem_and_makes_no_state_for_a_missing_replay(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["run", "--config", str(config), "--replay", str(tmp_path), "--replay-fps", "-1",
                 "--device-id", "bin 1", "--mock-gpio", "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: invalid config {config}:"
    assert "camera.replay.fps (given as --replay-fps): Input should be greater than or equal to 0 (got -1.0)" in err
    assert any(line.startswith("device.id (given as --device-id): one or more ASCII letters") for line in err)
    assert main(["run", "--config", str(config), "--replay", str(tmp_path / "gone"), "--mock-gpio",
                 "--state-dir", str(tmp_path / "state")]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"camera.replay.path (given as --replay): folder not found: {tmp_path / 'gone'}"]
    assert not (tmp_path / "state").exists()


def test_run_with_the_web_page_on_a_port_another_program_holds_exits_2_not_retried(tmp_path, tiny_bundle,
                                                                                    photo_folder, capsys):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        config = write_config(tmp_path, f"web: {{enabled: true, port: {holder.getsockname()[1]}}}\n", tiny_bundle)
        assert main(["run", "--config", str(config), "--replay", str(photo_folder), "--mock-gpio",
                     "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: web.port: web page cannot listen on 127.0.0.1:") and "Traceback" not in err


def test_run_options_become_config_overrides(tmp_path):
    args = build_parser().parse_args(["run", "--replay", "photos", "--replay-fps", "0", "--mock-gpio",
                                      "--mqtt", "broker.local:1884", "--device-id", "b2", "--state-dir", "st"])
    overrides = run_overrides(args)
    assert overrides["camera.type"] == "replay" and overrides["camera.replay.fps"] == 0
    assert overrides["flap.pin_factory"] == "mock"
    assert (overrides["mqtt.enabled"], overrides["mqtt.host"], overrides["mqtt.port"]) == (True, "broker.local", 1884)
    assert overrides["device.id"] == "b2" and overrides["device.state_dir"].endswith("st")


def test_a_leading_tilde_in_a_path_option_is_the_home_folder_as_in_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    # Quoted in the shell ('~/bin-state'), the tilde reaches the program as it is.
    args = build_parser().parse_args(["run", "--state-dir", "~/bin-state", "--replay", "~/photos", "--model", "~/m"])
    overrides = run_overrides(args)
    assert overrides["device.state_dir"] == str(tmp_path / "bin-state")
    assert overrides["camera.replay.path"] == str(tmp_path / "photos") and overrides["model.path"] == str(tmp_path / "m")


@pytest.mark.parametrize("address, message", [
    ("nohost", "HOST:PORT"), ("host:99999", "the port must be 1-65535, got 'host:99999'"),
    ("host:0", "the port must be 1-65535"), ("::1", "in brackets, e.g. [::1]:1883"),
    ("::1:1883", "e.g. [::1]:1883, got '::1:1883'"), ("[::1]", "HOST:PORT"),
    ("[broker]:1883", "brackets are for IPv6 addresses only")])
def test_a_bad_mqtt_address_is_a_usage_error(capsys, address, message):
    with pytest.raises(SystemExit) as caught:
        main(["run", "--mqtt", address])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_an_ipv6_broker_is_written_in_brackets():
    from edge.__main__ import host_port

    assert host_port("[::1]:1884") == ("::1", 1884) and host_port("broker.local:1883") == ("broker.local", 1883)


def test_a_broker_url_with_a_scheme_is_told_to_drop_it():
    import argparse

    from edge.__main__ import host_port

    with pytest.raises(argparse.ArgumentTypeError, match="without a scheme"):
        host_port("mqtt://127.0.0.1:1883")


def test_run_as_a_process_sorts_max_items_then_exits_0(tmp_path, tiny_bundle, photo_folder):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n", tiny_bundle)
    done = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(path), "--replay", str(photo_folder),
         "--replay-fps", "0", "--mock-gpio", "--max-items", "2", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "sorted 2 items" in done.stderr
    assert "flap parked at neutral" in done.stderr


def test_calibrate_flap_visits_every_bin_and_prints_the_angles(tmp_path, capsys):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    assert main(["calibrate-flap", "--config", str(path), "--mock-gpio", "--hold", "0"]) == 0
    out = capsys.readouterr().out
    assert "bin paper: -60 degrees (0.83 ms pulse)" in out and "    rest: 60" in out  # 0.5-2.5 ms over -90..90


def test_calibrate_flap_step_mode_adjusts_angles_interactively(tmp_path, capsys):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    answers = iter(["+5", "=-70", "", "abc", "200", "", "q"])
    args = argparse.Namespace(config=path, mock_gpio=True, step=True, bin=None, hold=0)
    assert calibrate(args, ask=lambda prompt: next(answers)) == 0
    out = capsys.readouterr().out
    assert "    paper: -70" in out          # nudged to -55, then set to -70
    assert "    glass: -20" in out          # kept, after a typo and an out-of-range angle
    assert "outside" in out
    assert "    packaging: 20" in out       # q stops at packaging, angle kept


def test_calibrate_flap_pulse_mode_marks_the_servos_real_ends(tmp_path, capsys):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    answers = iter(["+0.2", "=0.7", "min", "abc", "5", "2.3", "max", ""])
    args = argparse.Namespace(config=path, mock_gpio=True, step=False, pulse=True, bin=None, hold=0)
    assert calibrate(args, ask=lambda prompt: next(answers)) == 0
    out = capsys.readouterr().out
    assert "flap:\n  min_pulse_width: 0.0007\n  max_pulse_width: 0.0023\n" in out
    assert "outside 0.3..3 ms" in out and "type +N, -N, =P (milliseconds)" in out
    assert "run calibrate-flap --step next" in out


def test_calibrate_flap_pulse_mode_keeps_an_unmarked_end_and_refuses_crossed_ends(tmp_path, capsys):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    args = argparse.Namespace(config=path, mock_gpio=True, step=False, pulse=True, bin=None, hold=0)
    answers = iter(["=2.6", "min", "q"])
    assert calibrate(args, ask=lambda prompt: next(answers)) == 1  # 2.6 ms is not below the configured 2.5
    captured = capsys.readouterr()
    assert "max_pulse_width: 0.0025" in captured.out and "validate-config would refuse" in captured.err
    assert main(["calibrate-flap", "--config", str(path), "--mock-gpio", "--pulse", "--bin", "glass"]) == 2
    assert "--pulse finds the servo's range" in capsys.readouterr().err


def test_calibrate_flap_pulse_mode_reports_a_gpio_fault_in_one_line(tmp_path, capsys, monkeypatch):
    from edge.errors import FlapError
    from edge.gpio import Flap

    def fault(self, seconds):
        raise FlapError("flap: cannot send a 1.5 ms pulse: GPIO busy")

    monkeypatch.setattr(Flap, "set_pulse_width", fault)
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    assert main(["calibrate-flap", "--config", str(path), "--mock-gpio", "--pulse"]) == 2
    assert capsys.readouterr().err == "error: flap: cannot send a 1.5 ms pulse: GPIO busy\n"


def test_calibrate_flap_ctrl_c_parks_the_flap_and_still_prints_the_angles_adjusted_so_far(tmp_path, capsys):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    answers = iter(["+5", "", "+3"])

    def ask(prompt):
        answer = next(answers, None)
        if answer is None:
            raise KeyboardInterrupt  # Ctrl-C at glass's prompt, after a nudge
        return answer

    args = argparse.Namespace(config=path, mock_gpio=True, step=True, bin=None, hold=0)
    assert calibrate(args, ask=ask) == 130
    captured = capsys.readouterr()
    assert "    paper: -55" in captured.out and "    glass: -17" in captured.out  # both adjustments kept
    assert "    packaging: 20" in captured.out and "bins not reached keep their configured angles" in captured.err


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_calibrate_flap_stopped_by_a_signal_parks_the_flap_like_ctrl_c(tmp_path, capsys, monkeypatch, signum):
    import os
    import signal

    from edge.gpio import Flap

    moves, close = [], Flap.close

    def closing(self):
        moves.append("closed: parked and detached")
        close(self)

    monkeypatch.setattr(Flap, "close", closing)
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")

    def ask(prompt):
        os.kill(os.getpid(), getattr(signal, signum))  # an SSH session dropping, systemctl stop
        return ""

    args = argparse.Namespace(config=path, mock_gpio=True, step=True, bin=None, hold=0)
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = [signal.getsignal(stop) for stop in stop_signals]
    assert calibrate(args, ask=ask) == 130
    assert moves == ["closed: parked and detached"] and "flap:\n  angles:" in capsys.readouterr().out
    assert [signal.getsignal(stop) for stop in stop_signals] == before  # handed back afterwards


def test_calibrate_flap_pulse_mode_interrupted_still_prints_the_ends_marked_so_far(tmp_path, capsys):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    answers = iter(["=0.7", "min"])

    def ask(prompt):
        answer = next(answers, None)
        if answer is None:
            raise KeyboardInterrupt
        return answer

    args = argparse.Namespace(config=path, mock_gpio=True, step=False, pulse=True, bin=None, hold=0)
    assert calibrate(args, ask=ask) == 130
    captured = capsys.readouterr()
    assert "flap:\n  min_pulse_width: 0.0007\n  max_pulse_width: 0.0025\n" in captured.out  # max as configured
    assert "interrupted" in captured.err


def test_calibrate_flap_hold_that_is_not_a_number_is_one_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["calibrate-flap", "--mock-gpio", "--hold", "abc"])
    assert "argument --hold: expected a number of seconds, got 'abc'" in capsys.readouterr().err


def test_calibrate_flap_rejects_an_unknown_bin(tmp_path, capsys):
    path = write_config(tmp_path, "flap: {settle_s: 0}\n")
    assert main(["calibrate-flap", "--config", str(path), "--mock-gpio", "--bin", "attic"]) == 2
    assert "unknown bin attic" in capsys.readouterr().err


def test_an_unforeseen_error_while_starting_still_parks_the_flap(tmp_path, photo_folder, monkeypatch):
    from edge.daemon import Daemon

    closed = []
    monkeypatch.setattr(Daemon, "start", lambda self: (_ for _ in ()).throw(RuntimeError("surprise")))
    monkeypatch.setattr(Daemon, "close", lambda self, flush_s=1.0: closed.append(True))
    with pytest.raises(RuntimeError, match="surprise"):
        main(["run", "--config", str(write_config(tmp_path)), "--replay", str(photo_folder), "--mock-gpio",
              "--state-dir", str(tmp_path / "state")])
    assert closed == [True]


def test_run_exits_1_when_the_camera_is_missing_so_systemd_retries_it(tmp_path, capsys):
    path = write_config(tmp_path, "camera: {type: opencv, device: /dev/video99}\n")
    assert main(["run", "--config", str(path), "--mock-gpio", "--state-dir", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "/dev/video99" in err and "Traceback" not in err


def test_run_exits_2_when_the_pin_factorys_library_is_missing_as_no_restart_installs_it(tmp_path, capsys, photo_folder):
    pytest.importorskip("gpiozero")
    if importlib.util.find_spec("lgpio") is not None:
        pytest.skip("lgpio is installed here")
    path = write_config(tmp_path, "flap: {pin_factory: lgpio}\n")
    assert main(["run", "--config", str(path), "--replay", str(photo_folder),
                 "--state-dir", str(tmp_path / "state")]) == 2
    err = capsys.readouterr().err
    assert "pin factory 'lgpio' is not available here: its library is not installed" in err
    assert err.count("--mock-gpio") == 1 and "Traceback" not in err


def test_run_exits_2_for_config_problems_found_only_at_start(tmp_path, capsys, photo_folder):
    not_a_certificate = tmp_path / "ca.pem"
    not_a_certificate.write_text("not a certificate\n")
    path = write_config(tmp_path, f"mqtt: {{enabled: true, tls: {{enabled: true, ca_file: {not_a_certificate}}}}}\n")
    assert main(["run", "--config", str(path), "--replay", str(photo_folder), "--mock-gpio",
                 "--state-dir", str(tmp_path / "state")]) == 2
    assert main(["run", "--config", str(path), "--replay", str(tmp_path / "no-photos"), "--mock-gpio",
                 "--state-dir", str(tmp_path / "state")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_run_exits_2_on_a_state_folder_it_cannot_use_until_someone_acts(tmp_path, capsys, photo_folder):
    # Restarting every 5 s cannot repair a damaged database, nor stop the other bin using the folder.
    from edge.store import Store

    state = tmp_path / "state"
    state.mkdir()
    (state / "smartbin.db").write_bytes(b"not a database" * 100)
    args = ["run", "--config", str(write_config(tmp_path)), "--replay", str(photo_folder), "--mock-gpio",
            "--state-dir", str(state)]
    assert main(args) == 2
    assert "the state database is damaged" in capsys.readouterr().err
    (state / "smartbin.db").unlink()
    other = Store(state / "smartbin.db")
    try:
        assert main(args) == 2
    finally:
        other.close()
    err = capsys.readouterr().err
    assert "another smartbin (pid" in err and "Traceback" not in err


def test_run_exits_2_when_the_video_file_it_names_is_not_there(tmp_path, capsys):
    path = write_config(tmp_path, f"camera: {{type: opencv, device: {tmp_path / 'nope.avi'}}}\n")
    assert main(["run", "--config", str(path), "--mock-gpio", "--state-dir", str(tmp_path / "state")]) == 2
    assert "video file not found" in capsys.readouterr().err


def test_an_empty_path_is_a_usage_error_not_the_current_folder(capsys):
    for args in (["validate-config", ""], ["run", "--replay", " "], ["run", "--config", ""],
                 ["calibrate-flap", "--config", ""], ["web", "--model", ""], ["classify", "--model", "", "x.jpg"]):
        with pytest.raises(SystemExit) as caught:
            main(args)
        assert caught.value.code == 2
        assert "an empty path names no file or folder" in capsys.readouterr().err


def test_validate_config_names_a_replay_folder_that_is_not_there(tmp_path, capsys):
    path = write_config(tmp_path, f"camera: {{type: replay, replay: {{path: {tmp_path / 'gone'}}}}}\n")
    assert main(["validate-config", str(path)]) == 2
    assert capsys.readouterr().err == f"camera.replay.path: folder not found: {tmp_path / 'gone'}\n"
