"""gpio: the servo flap on gpiozero's MockFactory with MockPWMPin, and the beam sensor."""

from __future__ import annotations

import time

import pytest

from edge.errors import FlapError, MissingLibraryError
from edge.gpio import BeamSensor, Flap, make_pin_factory

ANGLES = {"glass": -45.0, "metal": 45.0, "reject": 90.0}


def pulse_duty(angle: float) -> float:
    """Duty cycle for the default 0.5-2.5 ms pulses over -90..90 degrees in a 20 ms frame."""
    return (0.0005 + (angle + 90) / 180 * 0.002) / 0.02


@pytest.fixture
def flap():
    flap = Flap(pin=18, angles=ANGLES, settle_s=0)
    yield flap
    flap.close()


def test_goes_to_neutral_and_detaches_on_construction(flap):
    assert flap.history == [0.0, None]
    assert flap.is_detached and flap.angle is None
    assert flap.pwm_state() == 0.0


def test_visits_the_bin_angle_then_returns_to_neutral(flap):
    flap.move_to("glass")
    assert flap.angle == -45.0 and not flap.is_detached
    assert flap.pwm_state() == pytest.approx(pulse_duty(-45.0))
    flap.neutral()
    flap.move_to("reject")
    assert flap.pwm_state() == pytest.approx(pulse_duty(90.0))
    flap.neutral()
    assert flap.history == [0.0, None, -45.0, 0.0, None, 90.0, 0.0, None]
    assert flap.is_detached and flap.pwm_state() == 0.0


def test_keeps_holding_neutral_when_detach_is_off():
    with Flap(pin=18, angles=ANGLES, settle_s=0, detach_when_idle=False, neutral_angle=10) as flap:
        flap.move_to("metal")
        flap.neutral()
        assert flap.angle == pytest.approx(10.0) and not flap.is_detached
        assert flap.pwm_state() == pytest.approx(pulse_duty(10.0))


def test_an_unknown_bin_is_a_flap_error_naming_the_known_bins(flap):
    with pytest.raises(FlapError, match="unknown bin 'paper'.*glass, metal, reject"):
        flap.move_to("paper")


def test_angles_outside_the_servo_range_are_refused():
    with pytest.raises(FlapError, match="outside"):
        Flap(pin=18, angles={"glass": 120.0}, settle_s=0)


def test_set_angle_is_for_calibration_within_range(flap):
    flap.set_angle(30)
    assert flap.angle == pytest.approx(30.0)
    with pytest.raises(FlapError):
        flap.set_angle(100)


def test_a_raw_pulse_width_ignores_the_angles_within_what_a_servo_may_take(flap):
    assert flap.is_detached  # parked on construction: PWM off
    flap.set_pulse_width(0.0007)
    assert flap.pwm_state() == pytest.approx(0.0007 / 0.02)
    assert flap._servo.pwm_device.pin.frequency == 50 and not flap.is_detached  # pulses, not a steady level
    flap.set_pulse_width(0.0029)  # beyond the configured 2.5 ms end: finding the real one is the point
    assert flap.pwm_state() == pytest.approx(0.0029 / 0.02)
    for seconds in (0.0002, 0.0031):
        with pytest.raises(FlapError, match=r"outside 0.3..3 ms"):
            flap.set_pulse_width(seconds)


def test_close_after_a_raw_pulse_parks_at_neutral_even_from_detached(flap):
    flap.set_pulse_width(0.0029)
    flap.detach()
    flap.close()
    assert flap.history[-2:] == [0.0, None]


def test_the_pulse_limits_are_those_the_config_accepts():
    from edge.config_schema import FlapConfig
    from edge.gpio import PULSE_WIDTH_LIMITS

    for key in ("min_pulse_width", "max_pulse_width"):
        bounds = {type(rule).__name__: rule for rule in FlapConfig.model_fields[key].metadata}
        assert (bounds["Ge"].ge, bounds["Le"].le) == PULSE_WIDTH_LIMITS


def test_close_parks_at_neutral_releases_the_pin_and_can_repeat():
    flap = Flap(pin=18, angles=ANGLES, settle_s=0)
    flap.move_to("metal")
    flap.close()
    flap.close()
    assert flap.history[-2:] == [0.0, None]
    again = Flap(pin=18, angles=ANGLES, settle_s=0)  # the pin is free again
    again.close()


def test_closing_a_parked_flap_does_not_wait_another_settle_time():
    flap = Flap(pin=18, angles=ANGLES, settle_s=0.3)  # parks (neutral, detached) on construction
    time.sleep(0.3)
    moves = len(flap.history)
    start = time.perf_counter()
    flap.close()  # SIGTERM between items: systemd's TimeoutStopSec must not be spent on settling
    assert time.perf_counter() - start < 0.1
    assert len(flap.history) == moves and flap.history[-2:] == [0.0, None]


def test_waits_settle_time_after_each_move():

    flap = Flap(pin=18, angles=ANGLES, settle_s=0.05)
    start = time.perf_counter()
    flap.move_to("glass")
    assert time.perf_counter() - start >= 0.05
    flap.close()


def test_unknown_or_unavailable_pin_factories_are_clear_errors():
    with pytest.raises(FlapError, match="unknown pin factory 'gpio9'"):
        make_pin_factory("gpio9")
    with pytest.raises(MissingLibraryError, match="not available here: its library is not installed.*mock"):
        make_pin_factory("rpigpio")  # no RPi.GPIO off a Pi


def test_beam_sensor_reports_a_broken_beam():
    sensor = BeamSensor(pin=17, pull_up=True)
    assert not sensor.is_active()
    sensor.simulate(True)
    assert sensor.is_active()
    sensor.simulate(False)
    assert not sensor.is_active()
    sensor.close()


def test_auto_honours_gpiozero_pin_factory_mock_with_pwm_pins(monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    with Flap(pin=18, angles=ANGLES, settle_s=0, pin_factory="auto") as flap:
        flap.move_to("metal")
        assert flap.pwm_state() == pytest.approx(pulse_duty(45.0))


def test_the_move_history_stays_bounded_on_a_bin_that_sorts_for_months():
    from edge.gpio import HISTORY_LIMIT

    with Flap(pin=18, angles=ANGLES, settle_s=0) as flap:
        for _ in range(HISTORY_LIMIT * 2):
            flap.move_to("glass")
            flap.neutral()
        assert len(flap.history) <= 2 * HISTORY_LIMIT
        assert flap.history[-3:] == [ANGLES["glass"], 0.0, None]


def test_a_move_without_waiting_returns_at_once_and_the_next_command_waits_out_its_settle_time():
    with Flap(pin=18, angles=ANGLES, settle_s=0.2) as flap:
        start = time.perf_counter()
        flap.move_to("glass", wait=False)
        assert time.perf_counter() - start < 0.15 and flap.angle == ANGLES["glass"]
        flap.neutral()  # the item must land first: 0.2 s for the move, then 0.2 s for neutral itself
        assert time.perf_counter() - start >= 0.4


def test_off_a_pi_gpiozeros_own_factory_choice_fails_in_one_line_without_warnings(monkeypatch):
    import warnings

    from gpiozero.exc import PinFactoryFallback

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            Flap(pin=18, angles=ANGLES, settle_s=0, pin_factory="auto").close()
        except FlapError as err:
            assert "\n" not in str(err)
        else:
            pytest.skip("this machine has a working GPIO pin factory")
    assert not [w for w in caught if issubclass(w.category, PinFactoryFallback)]


@pytest.fixture
def fake_lgpio(monkeypatch):
    """lgpio's C binding stood in by a module that records tx_pwm, on a Pi 5 revision code."""
    import sys
    import types

    fake = types.ModuleType("lgpio")
    fake.SET_PULL_NONE, fake.SET_PULL_UP, fake.SET_PULL_DOWN = 0, 1, 2
    fake.BOTH_EDGES, fake.RISING_EDGE, fake.FALLING_EDGE = 3, 1, 2
    fake.error = type("error", (Exception,), {})
    fake.modes, fake.pwm = {}, []
    fake.gpiochip_open = lambda chip: 7
    fake.gpiochip_close = lambda handle: None
    fake.gpio_claim_input = lambda handle, gpio, flags=0: fake.modes.__setitem__(gpio, 0)
    fake.gpio_claim_output = lambda handle, gpio, level=0, flags=0: fake.modes.__setitem__(gpio, 2)
    fake.gpio_free = lambda handle, gpio: None
    fake.gpio_get_mode = lambda handle, gpio: fake.modes.get(gpio, 0)
    fake.gpio_read = lambda handle, gpio: 0
    fake.gpio_write = lambda handle, gpio, level: None
    fake.tx_pwm = lambda handle, gpio, freq, duty, offset=0, cycles=0: fake.pwm.append((freq, duty))
    monkeypatch.setitem(sys.modules, "lgpio", fake)
    sys.modules.pop("gpiozero.pins.lgpio", None)
    from gpiozero.pins.lgpio import LGPIOFactory

    monkeypatch.setattr(LGPIOFactory, "_get_revision", lambda self: 0xD04170)
    yield fake
    sys.modules.pop("gpiozero.pins.lgpio", None)  # later tests see the real (absent) lgpio again


@pytest.mark.parametrize("factory_name", ["lgpio", "auto"])
def test_lgpio_gets_the_exact_pulse_for_every_angle_not_whole_percent_steps(fake_lgpio, factory_name, monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with Flap(pin=18, angles={"paper": -60.0, "glass": -20.0, "nudged": -55.0}, settle_s=0,
              pin_factory=factory_name) as flap:
        for bin_name, angle in (("paper", -60.0), ("glass", -20.0), ("nudged", -55.0)):
            flap.move_to(bin_name)
            freq, duty = fake_lgpio.pwm[-1]
            pulse_ms = duty / 100 / freq * 1000
            assert pulse_ms == pytest.approx(1.5 + angle / 90, abs=1e-6)  # gpiozero alone: 0.8, 1.2, 0.8 ms
            assert flap.angle == pytest.approx(angle)


def test_a_reversed_angle_range_mirrors_the_servo_as_in_gpiozero():
    with Flap(pin=18, angles={"glass": -45.0}, min_angle=90, max_angle=-90, settle_s=0) as flap:
        flap.move_to("glass")
        assert flap.pwm_state() == pytest.approx(pulse_duty(45.0))  # -45 on a mirrored mount
    with pytest.raises(FlapError, match="both 10"):
        Flap(pin=18, angles={"glass": 10.0}, min_angle=10, max_angle=10, settle_s=0)


def test_a_gpio_fault_while_moving_is_a_flap_error_not_a_crash(flap, monkeypatch):
    from gpiozero.exc import PinInvalidState

    def broken(value):
        raise PinInvalidState('invalid state "0.04" for pin GPIO18')

    monkeypatch.setattr(flap._servo.pwm_device.pin, "_set_state", broken)
    with pytest.raises(FlapError, match="cannot drive the servo to -45 degrees: invalid state"):
        flap.move_to("glass")
