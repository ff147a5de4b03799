"""``smartbin web``: serves the page on its own; bad input is one error line and exit 2."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.web_support import request

pytestmark = pytest.mark.timeout(60)


def smartbin(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge", *args], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def test_web_serves_the_page_until_sigterm_then_exits_0(tiny_bundle, tmp_path):
    config = tmp_path / "smartbin.yaml"
    config.write_text("device:\n  id: bin-7\n")
    process = smartbin("web", "--config", str(config), "--model", str(tiny_bundle), "--port", "0")
    try:
        line = process.stdout.readline()
        assert "smartbin web page at http://127.0.0.1:" in line
        url = line.split(" at ", 1)[1].split()[0]
        status, _, result = request(url + "api/status")
        assert status == 200 and result["live"] is False and result["model"]["name"] == tiny_bundle.name
        assert result["device_id"] == "bin-7"  # so a Prometheus scraping the page labels it as this bin
        status, _, body = request(url + "metrics")
        assert status == 200 and 'smartbin_info{device_id="bin-7",live="false"' in body.decode()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("args, message", [
    (["--model", "no/such/bundle"], "model bundle folder not found"),
    (["--config", "no-such.yaml"], "file not found: no-such.yaml"),
])
def test_bad_input_is_one_error_line_and_exit_2(tiny_bundle, args, message):
    process = smartbin("web", "--port", "0", *args)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err


def test_a_port_in_use_is_one_error_line_and_exit_2(tiny_bundle):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = smartbin("web", "--model", str(tiny_bundle), "--port", str(port))
        _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert f"error: web page cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


class FakeServer:
    """Stands in for ``WebServer``: sends this process a SIGTERM at the step named ``stop_at``."""

    def __init__(self, stop_at: str):
        self.stop_at, self.stopped = stop_at, False

    def _maybe_stop(self, step: str) -> None:
        if step == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    def start(self) -> None:
        self._maybe_stop("start")

    @property
    def url(self) -> str:
        self._maybe_stop("print")  # the address is read just before it is printed
        return "http://127.0.0.1:9/"

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize("stop_at", ["start", "print"])
def test_a_sigterm_at_any_step_of_starting_ends_the_run_with_exit_0(monkeypatch, capsys, stop_at):
    from edge.web import cli

    fake = FakeServer(stop_at)
    monkeypatch.setattr(cli, "build_server", lambda args: fake)
    assert cli.run(argparse.Namespace()) == 0
    assert fake.stopped == (stop_at == "print")  # a server that never finished starting has nothing to stop
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
