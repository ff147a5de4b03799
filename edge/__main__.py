"""``smartbin`` / ``python -m edge``: run the bin, check a config, classify photos, serve the web page.

Exit codes: 0 success; 1 a fatal error while sorting (systemd restarts the service);
2 bad input (invalid config, missing model, no camera), reported as one line per problem.

Usage:
    smartbin run --replay photos/ --mock-gpio                 # a virtual bin on a laptop
    smartbin run --config /etc/smartbin/smartbin.yaml         # the service on a Pi
    smartbin validate-config firmware_config/smartbin.yaml
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from edge import __version__
from edge.cli_args import path_argument
from edge.config import DEFAULT_CONFIG

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartbin", description="A waste-sorting bin: camera -> item detector -> classifier -> flap, "
                                     "with durable counts over MQTT.",
        epilog="Try it without a Pi:  smartbin run --replay PHOTO_FOLDER --mock-gpio")
    parser.add_argument("--version", action="version", version=f"smartbin {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_run_parser(commands)
    validate = commands.add_parser(
        "validate-config", help="check a config file and print one `key: problem` line per problem",
        description="Check a config file. Exit 0 when valid (warnings are printed), 2 with one "
                    "`key: problem` line per problem.")
    validate.add_argument("file", metavar="FILE", type=path_argument, help="the smartbin.yaml to check")
    validate.add_argument("--model", metavar="BUNDLE", type=path_argument,
                          help="check against this model bundle instead of model.path (as `run --model` would run)")
    validate.add_argument("--as-service", action="store_true",
                          help="this user is the one the service runs as: a TLS or password file it cannot read is "
                               "a problem, not a warning (install.sh checks so)")
    validate.set_defaults(func=validate_config)
    from edge import calibrate, classify_cli
    from edge.web import cli as web_cli

    classify_cli.add_parser(commands)
    web_cli.add_parser(commands)
    calibrate.add_parser(commands)
    return parser


def add_run_parser(commands) -> None:
    run = commands.add_parser(
        "run", help="run the bin (camera or photo replay, flap, counts, MQTT)",
        description="Run the bin. Options override the matching config keys. Stops cleanly on Ctrl+C or "
                    "SIGTERM (flap parked, `stopped` published).",
        epilog="Example: smartbin run --replay data/photos --replay-fps 2 --mock-gpio --mqtt 127.0.0.1:1883")
    run.add_argument("--config", metavar="FILE", type=path_argument, default=DEFAULT_CONFIG,
                     help="config file (default: firmware_config/smartbin.yaml in a checkout, "
                          "else /etc/smartbin/smartbin.yaml)")
    run.add_argument("--replay", metavar="DIR", type=path_argument,
                     help="replay a folder of photos as items on a simulated tray instead of a camera")
    run.add_argument("--replay-fps", metavar="N", type=float,
                     help="replay frames per second; 0 = as fast as the pipeline goes")
    run.add_argument("--mock-gpio", action="store_true",
                     help="simulate the servo and a beam sensor (no Raspberry Pi needed; with --replay the "
                          "replayed photos break the beam)")
    run.add_argument("--max-items", metavar="N", type=int, help="exit 0 after sorting N items")
    run.add_argument("--mqtt", metavar="HOST:PORT", type=host_port,
                     help="publish to this MQTT broker (turns mqtt.enabled on)")
    run.add_argument("--device-id", metavar="ID", help="this bin's name in topics (overrides device.id)")
    run.add_argument("--state-dir", metavar="DIR", type=path_argument,
                     help="folder for counts, outbox and review photos (overrides device.state_dir)")
    run.add_argument("--model", metavar="BUNDLE", type=path_argument, help="model bundle folder (overrides model.path)")
    run.set_defaults(func=run_daemon)


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    if "://" in text:  # mqtt://host:1883, as many clients write a broker
        raise argparse.ArgumentTypeError(f"give HOST:PORT without a scheme, e.g. 127.0.0.1:1883 (TLS is "
                                         f"mqtt.tls.enabled in the config), got {text!r}")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if ":" not in host:  # "[broker]:1883" would otherwise be taken for the host "broker"
            raise argparse.ArgumentTypeError(f"brackets are for IPv6 addresses only, e.g. [::1]:1883, got {text!r}")
    elif text.count(":") > 1:
        raise argparse.ArgumentTypeError(f"write an IPv6 address in brackets, e.g. [::1]:1883, got {text!r}")
    else:
        host, _, port = text.partition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:1883, got {text!r}")
    if not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"the port must be 1-65535, got {text!r}")
    return host, int(port)


# The config key each `run` option sets, to name the option when its value is the problem.
OPTION_OF_KEY = {"camera.replay.path": "--replay", "camera.replay.fps": "--replay-fps", "mqtt.host": "--mqtt",
                 "mqtt.port": "--mqtt", "device.id": "--device-id", "device.state_dir": "--state-dir",
                 "model.path": "--model"}


def run_overrides(args: argparse.Namespace) -> dict:
    overrides = {}
    if args.replay is not None:
        overrides["camera.type"] = "replay"
        # Absolute and tidied (no "a/../"), not resolved: errors name the path as typed, not where its links lead.
        overrides["camera.replay.path"] = os.path.abspath(args.replay.expanduser())
    if args.replay_fps is not None:
        overrides["camera.replay.fps"] = args.replay_fps
    if args.mock_gpio:
        overrides["flap.pin_factory"] = "mock"
    if args.mqtt is not None:
        overrides.update({"mqtt.enabled": True, "mqtt.host": args.mqtt[0], "mqtt.port": args.mqtt[1]})
    if args.device_id is not None:
        overrides["device.id"] = args.device_id
    if args.state_dir is not None:
        overrides["device.state_dir"] = str(args.state_dir.expanduser().resolve())
    if args.model is not None:
        overrides["model.path"] = str(args.model.expanduser().resolve())
    return overrides


def run_daemon(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.config_checks import camera_input_problems, config_warnings
    from edge.daemon import Daemon
    from edge.errors import (BundleError, CameraError, ClassifierError, ConfigError, MissingInputError,
                             MissingLibraryError, SmartbinError, StoreUnusableError)

    if args.max_items is not None and args.max_items < 1:
        return fail(["error: --max-items: must be at least 1"])
    overrides = run_overrides(args)
    try:
        config = load_config(args.config, overrides)
        if problems := camera_input_problems(config):
            raise ConfigError(problems, str(config.source_path))
    except ConfigError as err:
        # The service may be reading /etc/smartbin/smartbin.yaml: say which file the keys are in, and
        # which problems came from an option instead.
        given = {key: OPTION_OF_KEY[key] for key in overrides if key in OPTION_OF_KEY}
        return fail([f"error: invalid config {err.source}:"] + [
            f"{key} (given as {given[key]}): {problem}" if key in given else f"{key}: {problem}"
            for key, problem in err.problems])
    logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    for key, warning in config_warnings(config):
        logging.getLogger("edge.config").warning("%s: %s", key, warning)
    daemon = Daemon(config, max_items=args.max_items)
    daemon.install_signal_handlers()  # before start-up: a stop asked while the model loads is kept, not fatal
    try:
        daemon.start()
    except (SmartbinError, OSError) as err:
        daemon.close()
        lines = [f"error: {line}" for line in str(err).splitlines() or [type(err).__name__]]
        replay_folder = isinstance(err, CameraError) and config.camera.type == "replay"
        if isinstance(err, (BundleError, ClassifierError, ConfigError, MissingInputError, MissingLibraryError,
                            StoreUnusableError)) or replay_folder:
            return fail(lines)  # bad input: exit 2, which systemd does not retry (RestartPreventExitStatus=2)
        # The camera, the GPIO chip or the disk: often not ready yet at boot, so exit 1 and let systemd retry.
        for line in lines:
            print(line, file=sys.stderr)
        return EXIT_FAILURE
    except BaseException:
        daemon.close()  # the flap parks on any fatal error, also one nobody foresaw
        raise
    return daemon.run()


def validate_config(args: argparse.Namespace) -> int:
    from edge.bundle import load_bundle
    from edge.config import load_config, model_dir
    from edge.config_checks import camera_input_problems, config_warnings, model_warnings, unreadable_files
    from edge.errors import BundleError, ClassifierError, ConfigError

    overrides = {} if args.model is None else {"model.path": str(args.model.expanduser().resolve())}
    model_key = "model.path" if args.model is None else "model.path (given as --model)"
    try:
        config = load_config(args.file, overrides)
    except ConfigError as err:
        return fail([f"{key}: {problem}" for key, problem in err.problems])
    if problems := camera_input_problems(config):
        return fail([f"{key}: {problem}" for key, problem in problems])
    try:
        bundle = load_bundle(model_dir(config))
    except BundleError as err:
        return fail([f"{model_key}: {err}"])
    try:
        # The model file itself, as `run` loads it: a manifest that lies about it or a damaged
        # file with a matching checksum is refused here, not at the bin's next start.
        from edge.classifier import Classifier

        Classifier(bundle, threads=1, views=config.model.views)
    except ImportError:
        print("warning: model.path: ai-edge-litert is not installed here, so the model file itself was not "
              "loaded (pip install 'smartbin[edge]')", file=sys.stderr)
    except (BundleError, ClassifierError) as err:
        return fail([f"{model_key}: {err}"])
    unreadable = unreadable_files(config)
    if unreadable and args.as_service:
        return fail([f"{key}: {problem}" for key, problem in unreadable])
    for key, warning in config_warnings(config) + model_warnings(config, bundle) + [
            (key, f"{problem}; the service's user must be able to") for key, problem in unreadable]:
        print(f"warning: {key}: {warning}", file=sys.stderr)
    print(f"{args.file}: ok")
    return 0


def fail(lines: list[str]) -> int:
    """Prints each problem on its own line (config problems as ``key: problem``) and returns exit code 2."""
    for line in lines:
        print(line, file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
