"""``smartbin web``: the upload-and-classify page on its own, for a laptop demo.

Inside ``smartbin run`` the same page is started by the daemon when ``web.enabled`` is set;
this command serves it without camera, flap or MQTT (the live section says so).

Usage:
    python -m edge web --model models/trashnet-efficientnet-lite0-int8 --port 8080
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from edge.cli_args import path_argument
from edge.errors import SmartbinError

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``web`` command to an ``argparse`` sub-parser set; its handler is ``args.func``."""
    parser = subparsers.add_parser(
        "web", help="serve the upload-and-classify web page on its own",
        description="Serve the upload-and-classify page (no camera, flap or MQTT). Ctrl+C stops it.")
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=path_argument,
                        help="smartbin.yaml (default: firmware_config/smartbin.yaml in a checkout, "
                             "else /etc/smartbin/smartbin.yaml)")
    parser.add_argument("--model", metavar="BUNDLE", type=path_argument,
                        help="model bundle folder (overrides model.path)")
    parser.add_argument("--host", help="address to listen on (overrides web.host; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any free one (overrides web.port)")


def run(args: argparse.Namespace) -> int:
    """Serves the page until Ctrl+C or SIGTERM. Returns 0, or 2 after printing a one-line error."""
    # The handler goes in before the address is printed (whoever reads it may stop us at once), and
    # a stop at any moment from here on ends the same way: the server closed if it started, exit 0.
    _install_stop_handler()
    server = None
    try:
        try:
            built = build_server(args)
            built.start()
            server = built
        except SmartbinError as err:
            for line in str(err).splitlines():
                print(f"error: {line}", file=sys.stderr)
            return 2
        except OSError as err:
            print(f"error: {err.strerror or err}", file=sys.stderr)
            return 2
        print(f"smartbin web page at {server.url} (Ctrl+C to stop)", flush=True)
        _wait_for_stop()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if server is not None:
            server.stop()
        _remove_stop_handler()
    return 0


def build_server(args: argparse.Namespace):
    """Builds the ``WebServer`` from the config file and the command-line overrides.

    Raises:
        ConfigError: the config is invalid.
        BundleError, ClassifierError: the model bundle is missing, corrupt or unloadable.
    """
    from edge import parts
    from edge.config import load_config, state_dir

    # --model is a path from where the user stands, not from the config file's folder.
    model = str(Path(args.model).resolve()) if args.model is not None else None
    overrides = {key: value for key, value in (
        ("model.path", model), ("web.host", args.host), ("web.port", args.port)) if value is not None}
    config = load_config(args.config, overrides)
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return parts.build_web(config, parts.load_classifier(config), parts.build_decider(config),
                           state_dir=state_dir(config))


class _Stopped(Exception):
    """Raised by the SIGTERM handler to end the wait, as Ctrl+C raises KeyboardInterrupt."""


def _raise_stopped(*_) -> None:
    raise _Stopped


def _install_stop_handler() -> None:
    # The handler raises rather than setting an Event: setting one from a handler deadlocks when the
    # signal lands while the main thread itself holds that Event's lock inside wait().
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)


def _remove_stop_handler() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_for_stop() -> None:
    """Returns never: Ctrl+C (KeyboardInterrupt) or SIGTERM (``_Stopped``) ends it."""
    while True:
        # Short sleeps: Python runs a handler between bytecodes, and a signal that lands just before
        # a sleep starts does not interrupt it; a long sleep would ignore SIGTERM for that long.
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.web", description="Serve the smartbin upload-and-classify page.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
