"""``smartbin calibrate-flap``: step the flap through each bin's angle so an installer can adjust them.

Without ``--step`` the flap visits every bin for ``--hold`` seconds and returns to neutral.
With ``--step`` it waits at each bin for a keypress: Enter accepts the angle, ``+5`` / ``-5``
nudge it, ``=-60`` (or an unsigned number) tries that angle, ``q`` stops. At the end it prints the ``flap.angles``
block to paste into smartbin.yaml. With ``--pulse`` it sends raw pulse widths instead, to find
where the servo's travel really ends: ``+0.1`` / ``-0.1`` nudge (ms), ``=0.6`` tries 0.6 ms, ``min``
and ``max`` mark the current pulse as ``flap.min_pulse_width`` / ``max_pulse_width``, Enter or ``q``
stops and prints them.

Usage:
    smartbin calibrate-flap --config /etc/smartbin/smartbin.yaml --step
    smartbin calibrate-flap --config /etc/smartbin/smartbin.yaml --pulse
    smartbin calibrate-flap --mock-gpio --hold 0
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Callable

from edge.bundle import normal_label
from edge.cli_args import path_argument
from edge.config import DEFAULT_CONFIG

EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value <= 60:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be between 0 and 60 seconds, got {text}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "calibrate-flap", help="move the flap to each bin's angle to check and adjust the angles",
        description="Move the flap to each bin's angle in turn. With --step, adjust each angle interactively "
                    "and get the flap.angles block to paste into the config.")
    parser.add_argument("--config", metavar="FILE", type=path_argument, default=DEFAULT_CONFIG,
                        help="config file (default: firmware_config/smartbin.yaml in a checkout, "
                             "else /etc/smartbin/smartbin.yaml)")
    parser.add_argument("--mock-gpio", action="store_true", help="simulate the servo (no Raspberry Pi needed)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--step", action="store_true", help="wait at each bin; type an angle or +N/-N to adjust")
    mode.add_argument("--pulse", action="store_true",
                      help="send raw pulse widths (ms) to find the servo's real end stops; prints "
                           "flap.min_pulse_width / max_pulse_width (then calibrate the angles with --step)")
    parser.add_argument("--bin", metavar="NAME", action="append", help="only this bin (repeatable)")
    parser.add_argument("--hold", metavar="SECONDS", type=_seconds, default=1.5,
                        help="seconds at each bin without --step (default 1.5)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, ask: Callable[[str], str] = input) -> int:
    from edge import parts
    from edge.config import load_config
    from edge.errors import ConfigError, FlapError

    try:
        config = load_config(args.config, {"flap.pin_factory": "mock"} if args.mock_gpio else {})
    except ConfigError as err:
        for key, problem in err.problems:
            print(f"error: {key}: {problem}", file=sys.stderr)
        return 2
    settings = config.flap
    if getattr(args, "pulse", False) and args.bin:
        print("error: --bin: --pulse finds the servo's range, not a bin's angle; drop --bin", file=sys.stderr)
        return 2
    bins = [normal_label(name) for name in args.bin] if args.bin else list(settings.angles)
    unknown = [name for name in bins if name not in settings.angles]
    if unknown:
        print(f"error: --bin: unknown bin {', '.join(unknown)} (known: {', '.join(settings.angles)})", file=sys.stderr)
        return 2
    try:
        flap = parts.build_flap(config)
    except FlapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # SIGTERM (systemctl, kill) and SIGHUP (an SSH session dropping) stop it as Ctrl-C does: the
    # flap parks at neutral and what was found so far is still printed.
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    try:
        if getattr(args, "pulse", False):
            return _calibrate_pulses(flap, settings, ask)
        return _calibrate_angles(flap, settings, bins, args, ask)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _parked_after(flap, work: Callable[[], object]) -> bool:
    """Runs ``work``, then parks the flap whatever happened; True when Ctrl-C or a signal stopped it."""
    try:
        work()
    except KeyboardInterrupt:
        return True
    finally:
        for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the parking short (run() restores them)
            signal.signal(signum, signal.SIG_IGN)
        flap.close()
    return False


def _calibrate_pulses(flap, settings, ask: Callable[[str], str]) -> int:
    from edge.errors import FlapError

    widths = {"min_pulse_width": settings.min_pulse_width, "max_pulse_width": settings.max_pulse_width}
    try:
        interrupted = _parked_after(flap, lambda: find_pulse_widths(flap, settings, ask, widths))
    except FlapError as err:  # the first pulse is where a real pin fails
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\nflap:")
    for key, seconds in widths.items():
        print(f"  {key}: {seconds:.6g}")
    if interrupted:
        print("# interrupted: the pulse widths marked so far (an end left unmarked keeps its configured value)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if widths["min_pulse_width"] >= widths["max_pulse_width"]:
        print("# min_pulse_width must be below max_pulse_width: validate-config would refuse this block",
              file=sys.stderr)
        return 1
    print("# new pulse widths move every angle: run calibrate-flap --step next")
    return 0


def _calibrate_angles(flap, settings, bins: list[str], args: argparse.Namespace, ask: Callable[[str], str]) -> int:
    angles = dict(settings.angles)
    args.flap_settings = settings

    def visit_bins() -> None:
        for name in bins:
            carry_on = visit(flap, name, angles, args, ask)
            flap.neutral()
            if not carry_on:
                break

    interrupted = _parked_after(flap, visit_bins)
    print("\nflap:\n  angles:")
    for name, angle in angles.items():
        print(f"    {name}: {angle:g}")
    print(f"  neutral_angle: {settings.neutral_angle:g}")
    if interrupted:
        print("# interrupted: bins not reached keep their configured angles", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def pulse_ms(settings, angle: float) -> float:
    """The pulse width, in ms, that ``angle`` becomes (linear from min_angle/min_pulse_width to
    max_angle/max_pulse_width, as gpiozero's AngularServo maps it): the figure to compare with the
    servo's data sheet, and the one that moves every angle when the pulse widths change."""
    share = (angle - settings.min_angle) / (settings.max_angle - settings.min_angle)
    return 1000 * (settings.min_pulse_width + share * (settings.max_pulse_width - settings.min_pulse_width))


def visit(flap, name: str, angles: dict[str, float], args: argparse.Namespace, ask: Callable[[str], str]) -> bool:
    """Moves to one bin's angle; with --step lets the installer adjust ``angles[name]`` (each accepted
    nudge is kept at once, so a Ctrl-C loses none). Returns whether to carry on with the next bin."""
    from edge.errors import FlapError

    angle = angles[name]
    print(f"bin {name}: {angle:g} degrees ({pulse_ms(args.flap_settings, angle):.2f} ms pulse)", flush=True)
    flap.set_angle(angle)
    if not args.step:
        time.sleep(max(0.0, args.hold))
        return True
    while True:
        try:
            answer = ask(f"  {name} at {angle:g} degrees ({pulse_ms(args.flap_settings, angle):.2f} ms): "
                         f"Enter = keep, +N/-N = nudge, =A = try angle A, q = quit > ")
        except EOFError:
            return False
        answer = answer.strip()
        if not answer:
            return True
        if answer.lower() == "q":
            return False
        try:
            candidate = angle + float(answer) if answer[0] in "+-" else float(answer.removeprefix("="))
            flap.set_angle(candidate)
            angle = angles[name] = candidate
        except ValueError:
            print("  type +N, -N, =A, Enter or q")
        except FlapError as err:
            print(f"  {err}")


def find_pulse_widths(flap, settings, ask: Callable[[str], str], widths: dict[str, float]) -> dict[str, float]:
    """Lets the installer send raw pulses and mark the servo's ends in ``widths`` (seconds; start it
    with the configured ones, kept for an end left unmarked), which it also returns."""
    from edge.errors import FlapError

    pulse = round(pulse_ms(settings, settings.neutral_angle), 3)
    flap.set_pulse_width(pulse / 1000)
    while True:
        try:
            answer = ask(f"  pulse {pulse:g} ms: +N/-N = nudge (ms), =P = try P ms, min / max = mark this pulse "
                         f"as that end, Enter or q = done > ").strip().lower()
        except EOFError:
            answer = "q"
        if answer in ("", "q"):
            return widths
        if answer in ("min", "max"):
            key = f"{answer}_pulse_width"
            widths[key] = pulse / 1000
            if widths["min_pulse_width"] >= widths["max_pulse_width"]:
                print(f"  note: min_pulse_width {widths['min_pulse_width'] * 1000:g} ms is not below max_pulse_width "
                      f"{widths['max_pulse_width'] * 1000:g} ms yet; mark the other end too")
            else:
                print(f"  {key}: {pulse:g} ms")
            continue
        try:
            candidate = round(pulse + float(answer) if answer[0] in "+-" else float(answer.removeprefix("=")), 3)
            flap.set_pulse_width(candidate / 1000)
            pulse = candidate
        except ValueError:
            print("  type +N, -N, =P (milliseconds), min, max, Enter or q")
        except FlapError as err:
            print(f"  {err}")
