"""The sorting flap and the optional beam sensor: the only edge module that imports gpiozero.

Hardware sits behind gpiozero pin factories chosen by name (``lgpio`` on a Pi 5, ``mock``
everywhere else). The mock factory uses ``MockPWMPin`` so that ``AngularServo`` runs
for real on a laptop and tests can read back the pulses it would send.

Usage:
    from edge.gpio import Flap
    flap = Flap(pin=18, angles={"glass": -45, "metal": 45, "reject": 0}, pin_factory="mock")
    flap.move_to("glass")
    flap.neutral()
    flap.close()
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from typing import Any

from edge.errors import FlapError, MissingLibraryError

log = logging.getLogger(__name__)

HISTORY_LIMIT = 1000
# The pulse widths a hobby servo may be sent (seconds): flap.min_pulse_width and max_pulse_width
# are validated against the same range, and calibrate-flap --pulse stays inside it.
PULSE_WIDTH_LIMITS = (0.0003, 0.003)
# Only factories that can drive a servo: gpiozero's NativeFactory has no PWM.
PIN_FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
}
# GPIOs of the 40-pin header that other things already use on most Pis.
SPOKEN_FOR = {"GPIO0": "the HAT ID EEPROM", "GPIO1": "the HAT ID EEPROM", "GPIO2": "I2C, with a fixed pull-up to 3.3 V",
              "GPIO3": "I2C, with a fixed pull-up to 3.3 V", "GPIO14": "the serial console",
              "GPIO15": "the serial console"}


def pins_checked() -> bool:
    """True when gpiozero is installed, so ``gpio_name`` really checks pins (else it passes them on)."""
    import importlib.util

    return importlib.util.find_spec("gpiozero") is not None


def gpio_name(pin: int | str) -> str:
    """The BCM name (``GPIO18``) of a pin in any of gpiozero's spellings (18, "GPIO18", "BOARD12", "J8:12").

    Raises:
        ValueError: not a GPIO of the 40-pin header (99, "BOARD1" = 3V3, "banana"), with gpiozero's reason.
    """
    try:
        from gpiozero.pins.mock import MockFactory
    except ImportError:  # no gpiozero here: the pin is checked when the flap starts
        return str(pin)
    factory = MockFactory()  # knows the header's pin names; drives nothing
    try:
        return factory.board_info.to_gpio(pin)
    except Exception as err:  # noqa: BLE001 -- PinInvalidPin and friends
        raise ValueError(str(err)) from None
    finally:
        factory.close()


def make_pin_factory(name: str):
    """Builds a gpiozero pin factory by name.

    Args:
        name: ``mock`` (MockFactory with MockPWMPin), ``lgpio``, ``rpigpio``, ``pigpio``, or
            ``auto`` (gpiozero's own choice, honouring ``GPIOZERO_PIN_FACTORY``).

    Raises:
        FlapError: the name is unknown or that backend cannot start on this machine.
    """
    if name == "auto":
        # Honour GPIOZERO_PIN_FACTORY ourselves for the names we know, so that "mock" gets
        # PWM-capable pins (gpiozero's own mock default cannot drive a servo).
        name = os.environ.get("GPIOZERO_PIN_FACTORY", "").strip().lower() or "auto"
        if name == "auto":
            # gpiozero's own first choice is lgpio too; ours sends the servo's pulse unrounded.
            try:
                return _lgpio_factory()
            except Exception as err:  # noqa: BLE001 -- not a Pi, or no lgpio: gpiozero tries the others
                log.info("gpio: lgpio not available (%s); gpiozero picks a pin factory", err)
                return None
        if name not in ("mock", *PIN_FACTORIES):
            return None
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    if name not in PIN_FACTORIES:
        choices = ", ".join(["mock", "auto", *PIN_FACTORIES])
        raise FlapError(f"unknown pin factory {name!r} (choose one of {choices})")
    module_name, class_name = PIN_FACTORIES[name]
    try:
        if name == "lgpio":
            return _lgpio_factory()
        import importlib

        return getattr(importlib.import_module(module_name), class_name)()
    except ImportError as err:  # not installed: no retry will install it
        raise MissingLibraryError(f"pin factory {name!r} is not available here: its library is not installed "
                                  f"({err}); use 'mock' (or --mock-gpio) off a Raspberry Pi") from None
    except Exception as err:  # BadPinFactory, OSError from a /dev/gpiochip not there yet at boot...
        raise FlapError(f"pin factory {name!r} is not available here ({err}); "
                        f"use 'mock' (or --mock-gpio) off a Raspberry Pi") from None


def _lgpio_factory():
    """gpiozero's ``LGPIOFactory`` whose pins send lgpio the PWM duty cycle unrounded.

    gpiozero 2.0.1's ``LGPIOPin`` sends ``int(value * 100)`` percent (gpiozero issue #1209, open):
    at a servo's 50 Hz one percent is 0.2 ms of pulse, 18 degrees of a 0.5-2.5 ms servo, so every
    angle would be rounded toward the lower pulse and a calibration nudge of a few degrees would do
    nothing. lgpio's ``tx_pwm`` takes the duty cycle as a float percentage.
    """
    import lgpio
    from gpiozero.exc import PinInvalidState
    from gpiozero.pins.lgpio import LGPIOFactory, LGPIOPin

    class UnroundedLGPIOPin(LGPIOPin):
        def _set_state(self, value):
            if not self._pwm:
                return super()._set_state(value)
            self._pwm = (self._pwm[0], value * 100)
            try:
                lgpio.tx_pwm(self.factory._handle, self._number, *self._pwm)
            except lgpio.error:
                raise PinInvalidState(f'invalid state "{value}" for pin {self!r}') from None
            return None

    factory = LGPIOFactory()
    factory.pin_class = UnroundedLGPIOPin
    return factory


def _resolve_factory(pin_factory: Any) -> tuple[Any, bool]:
    """Returns (factory, owned): a name builds a factory we must close; an object is borrowed."""
    if isinstance(pin_factory, str):
        return make_pin_factory(pin_factory), True
    return pin_factory, False


@contextlib.contextmanager
def _fallbacks_logged():
    """Turns gpiozero's warning per pin factory it could not load (while choosing one itself) into log lines.

    Off a Pi that is four multi-line warnings before our own one-line error; on a Pi the
    choice it finally made is worth a log line, not a warning on stderr.
    """
    from gpiozero.exc import PinFactoryFallback

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            yield
        finally:
            for warning in caught:
                if issubclass(warning.category, PinFactoryFallback):
                    log.info("gpio: %s", warning.message)
    for warning in caught:  # anything else gpiozero says is passed on untouched
        if not issubclass(warning.category, PinFactoryFallback):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _is_mock(factory: Any) -> bool:
    from gpiozero.pins.mock import MockFactory

    return isinstance(factory, MockFactory)


class Flap:
    """The servo flap that steers an item into its bin.

    The flap goes to neutral on construction, waits ``settle_s`` after every move, and
    (with ``detach_when_idle``) stops sending pulses when parked, since a hobby servo
    held by jittery software PWM hums and twitches.

    Usage:
        flap = Flap(pin=18, angles={"glass": -45, "metal": 45, "reject": 0}, settle_s=0.4)
        flap.move_to("metal"); flap.neutral()
    """

    def __init__(self, *, pin: int | str, angles: dict[str, float], neutral_angle: float = 0.0,
                 min_angle: float = -90.0, max_angle: float = 90.0,
                 min_pulse_width: float = 0.0005, max_pulse_width: float = 0.0025,
                 frame_width: float = 0.02, settle_s: float = 0.4, detach_when_idle: bool = True,
                 pin_factory: Any = "mock"):
        if min_angle == max_angle:
            raise FlapError(f"flap: min_angle and max_angle are both {min_angle}")
        # As in gpiozero, min_angle above max_angle reverses the servo (a mirrored mount).
        self._range = tuple(sorted((float(min_angle), float(max_angle))))
        for name, angle in {**angles, "neutral": neutral_angle}.items():
            if not self._range[0] <= angle <= self._range[1]:
                raise FlapError(f"flap: angle {angle} for {name!r} is outside {self._range[0]}..{self._range[1]}")
        self.angles = {name: float(angle) for name, angle in angles.items()}
        self.bins: tuple[str, ...] = tuple(self.angles)
        self.neutral_angle = float(neutral_angle)
        self.settle_s = max(0.0, float(settle_s))
        self.detach_when_idle = detach_when_idle
        # Commanded angles (None = detached), newest last, for tests and calibration; trimmed to the
        # last HISTORY_LIMIT so a bin sorting for months does not grow it without bound.
        self.history: list[float | None] = []
        self._settled_at = 0.0  # monotonic time the last commanded move has settled by
        self._off_the_angles = False  # a raw pulse (set_pulse_width) holds the servo outside every angle
        self._lock = threading.Lock()
        self._factory, self._owns_factory = _resolve_factory(pin_factory)
        from gpiozero import AngularServo

        try:
            with _fallbacks_logged():
                self._servo = AngularServo(
                    pin, initial_angle=None, min_angle=min_angle, max_angle=max_angle,
                    min_pulse_width=min_pulse_width, max_pulse_width=max_pulse_width,
                    frame_width=frame_width, pin_factory=self._factory,
                )
        except Exception as err:  # bad pin name, pin in use, PWM unsupported...
            self._close_factory()
            raise FlapError(f"flap: cannot drive a servo on pin {pin!r}: {err or type(err).__name__}") from None
        try:
            self.neutral()
        except FlapError as err:  # the first PWM write is where a real pin fails (lgpio errors)
            self._servo.close()
            self._close_factory()
            raise FlapError(f"{err} (pin {pin!r})") from None

    def move_to(self, bin_name: str, wait: bool = True) -> None:
        """Turns the flap to the bin's angle and waits for it to settle.

        Args:
            bin_name: a bin of ``angles``.
            wait: ``False`` returns as soon as the servo is commanded, so the caller can do other
                work while it travels; the next command (or ``wait_settled``) waits out the rest.

        Raises:
            FlapError: ``bin_name`` has no angle.
        """
        if bin_name not in self.angles:
            raise FlapError(f"flap: unknown bin {bin_name!r} (known: {', '.join(self.bins)})")
        with self._lock:
            self._command(self.angles[bin_name], wait=wait)

    def wait_settled(self) -> None:
        """Sleeps out what is left of the last move's settle time."""
        remaining = self._settled_at - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def set_angle(self, angle: float) -> None:
        """Turns the flap to an explicit angle (for calibration) and waits for it to settle."""
        if not self._range[0] <= angle <= self._range[1]:
            raise FlapError(f"flap: angle {angle} is outside {self._range[0]}..{self._range[1]}")
        with self._lock:
            self._command(float(angle))

    def set_pulse_width(self, seconds: float) -> None:
        """Sends a raw pulse of ``seconds``, ignoring the configured pulse widths and angles, and waits
        to settle: how ``calibrate-flap --pulse`` finds where a servo's travel really ends.

        Raises:
            FlapError: outside ``PULSE_WIDTH_LIMITS`` (what the config accepts) or a GPIO fault.
        """
        low, high = PULSE_WIDTH_LIMITS
        if not low <= seconds <= high:
            raise FlapError(f"flap: a pulse of {seconds * 1000:g} ms is outside {low * 1000:g}..{high * 1000:g} ms")
        with self._lock:
            self.wait_settled()
            try:
                pin = self._servo.pwm_device.pin
                # As gpiozero's Servo.value does: a detached servo's pin has PWM off, and a state set
                # then would be a steady high level on a real pin, not a pulse.
                pin.frequency = int(1 / self._servo.frame_width)
                pin.state = seconds / self._servo.frame_width
            except Exception as err:  # as in _command
                raise FlapError(f"flap: cannot send a {seconds * 1000:g} ms pulse: {err or type(err).__name__}") from None
            self._off_the_angles = True
            self._settled_at = time.monotonic() + self.settle_s
            self.wait_settled()

    def neutral(self) -> None:
        """Returns to the neutral angle, waits to settle, then detaches if configured."""
        with self._lock:
            self._command(self.neutral_angle)
            if self.detach_when_idle:
                self._detach()

    def detach(self) -> None:
        """Stops sending pulses: the servo holds by friction and cannot jitter."""
        with self._lock:
            self._detach()

    @property
    def angle(self) -> float | None:
        """The commanded angle, or None while detached."""
        return self._servo.angle

    @property
    def is_detached(self) -> bool:
        return self._servo.value is None

    @property
    def pin_factory(self) -> Any:
        """The gpiozero pin factory driving the servo; a beam sensor on the same board should share it."""
        return self._servo.pin_factory

    def pwm_state(self) -> float | None:
        """The mock pin's current duty cycle (0 when detached); None on real hardware."""
        if not _is_mock(self._servo.pin_factory):
            return None
        return self._servo.pwm_device.pin.state

    def close(self) -> None:
        """Parks the flap at neutral, then releases the pin (safe to call twice)."""
        if self._servo.closed:
            return
        try:
            if self._off_the_angles or self.history[-1:] != [None] or self._last_angle() != self.neutral_angle:
                self.neutral()  # parked already (neutral, detached): no second settle wait on SIGTERM
        finally:
            self._servo.close()
            self._close_factory()

    def _command(self, angle: float, wait: bool = True) -> None:
        self.wait_settled()  # an item still dropping from the last move must land before the flap turns
        try:
            self._servo.angle = angle
        except Exception as err:  # gpiozero's PinInvalidState, lgpio's error, OSError: a GPIO fault
            raise FlapError(f"flap: cannot drive the servo to {angle:g} degrees: {err or type(err).__name__}") from None
        self._remember(angle)
        self._off_the_angles = False
        self._settled_at = time.monotonic() + self.settle_s
        if wait:
            self.wait_settled()

    def _detach(self) -> None:
        try:
            self._servo.detach()
        except Exception as err:  # as in _command
            raise FlapError(f"flap: cannot detach the servo: {err or type(err).__name__}") from None
        self._remember(None)

    def _last_angle(self) -> float | None:
        return next((angle for angle in reversed(self.history) if angle is not None), None)

    def _remember(self, angle: float | None) -> None:
        self.history.append(angle)
        if len(self.history) > 2 * HISTORY_LIMIT:  # trimmed in batches: one list copy per HISTORY_LIMIT moves
            del self.history[:-HISTORY_LIMIT]

    def _close_factory(self) -> None:
        if self._owns_factory and self._factory is not None:
            self._factory.close()
            self._owns_factory = False

    def __enter__(self) -> Flap:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class BeamSensor:
    """A break-beam sensor or button that says "an item is on the tray".

    Usage:
        sensor = BeamSensor(pin=17, pull_up=True, pin_factory="lgpio")
        trigger = make_trigger("sensor", is_active=sensor.is_active)
    """

    def __init__(self, *, pin: int | str, pull_up: bool = True, pin_factory: Any = "mock"):
        from gpiozero import DigitalInputDevice

        self._factory, self._owns_factory = _resolve_factory(pin_factory)
        try:
            with _fallbacks_logged():
                self._device = DigitalInputDevice(pin, pull_up=pull_up, pin_factory=self._factory)
        except Exception as err:
            if self._owns_factory and self._factory is not None:
                self._factory.close()
            raise FlapError(f"sensor: cannot read pin {pin!r}: {err or type(err).__name__}") from None
        self._pull_up = pull_up

    def is_active(self) -> bool:
        """True while the beam is broken (or the button pressed)."""
        return bool(self._device.is_active)

    @property
    def is_simulated(self) -> bool:
        """True on the mock pin factory, where ``simulate`` sets the beam."""
        return _is_mock(self._device.pin_factory)

    def simulate(self, active: bool) -> None:
        """Mock only: breaks (True) or restores (False) the simulated beam."""
        if not _is_mock(self._device.pin_factory):
            raise FlapError("sensor: simulate() needs the mock pin factory")
        pin = self._device.pin
        # With a pull-up the input is active when pulled low, as a real beam sensor does.
        if active == self._pull_up:
            pin.drive_low()
        else:
            pin.drive_high()

    def close(self) -> None:
        self._device.close()
        if self._owns_factory and self._factory is not None:
            self._factory.close()
            self._owns_factory = False
