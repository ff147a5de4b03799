"""The shape of ``smartbin.yaml``: one pydantic model per section, every key with its default and meaning.

Only the schema lives here; reading the file, checks across sections, warnings and paths are in
``edge.config``, which re-exports every class below (import them from there).

Usage:
    from edge.config import Config, MqttConfig
    print(Config().mqtt.topic_root("bin-1"))
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.bundle import normal_label

DEFAULT_MODEL = "models/trashnet-efficientnet-lite0-int8"
TOPIC_SAFE = r"^[A-Za-z0-9_-]+$"
# A topic's text: no MQTT wildcard, and no NUL or other control character (a broker drops the whole
# connection over a NUL, with nothing the bin could log).
TOPIC_TEXT = r"^[^#+\x00-\x1f\x7f-\x9f]+$"
Pixels = Annotated[int, Field(ge=8, le=8192)]  # one side of a frame
View = Literal["original", "mirrored", "flipped", "turned"]  # edge.imaging.VIEWS
MAX_THREADS = 16  # LiteRT interpreter threads, for model.threads and classify --threads alike


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment too, a
    boolean is no number (pydantic would read ``port: on`` as 1) and no value is infinite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_another_type(cls, value, info):
        annotation = cls.model_fields[info.field_name].annotation
        if value is None and isinstance(annotation, type) and issubclass(annotation, Section):
            return {}  # "mqtt:" with every key below it commented out: the section's defaults
        if value is None and not _takes_none(annotation):
            # "log_level:" with nothing after it: the default, as for the keys whose empty value is documented.
            return cls.model_fields[info.field_name].get_default(call_default_factory=True)
        if _misplaced_bool(value, annotation):
            what = f"{str(value).lower()} is a boolean" if isinstance(value, bool) else "holds a boolean"
            raise ValueError(f"{what}, not allowed here (YAML reads a bare yes, no, on, off, true or false "
                             f"as one: write a number, or quote text)")
        return value


def host_without_port(host: str, port_key: str) -> str:
    """``host`` when it is a host name or address alone (IPv6 as ``::1``); else ValueError saying why."""
    if any(char.isspace() or char in "/[]" for char in host):
        raise ValueError("a host name or address, without spaces, slashes or brackets")
    if ":" in host:
        import ipaddress

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"a host name or address without a port (the port goes in {port_key})") from None
    return host


MAX_PREFIX_LEVELS = 16


def not_a_broker_topic(prefix: str) -> str:
    """``prefix`` unless it starts with ``$`` or has more than ``MAX_PREFIX_LEVELS`` levels; else
    ValueError saying why."""
    # A broker acknowledges what a client publishes under $SYS/... and drops it: every message would vanish.
    if prefix.startswith("$"):
        raise ValueError("must not start with '$': brokers keep $ topics for themselves and drop what "
                         "clients publish there")
    # mosquitto closes the connection of a client that publishes deeper topics (200 levels), and
    # the bin could only log that it lost the connection: refused here, with room to spare.
    if prefix.count("/") >= MAX_PREFIX_LEVELS:
        raise ValueError(f"at most {MAX_PREFIX_LEVELS} levels (parts between '/'), got {prefix.count('/') + 1}")
    return prefix


def _one_spelling_each(names, noun: str, advice: str) -> None:
    """ValueError when two of ``names`` are one name in NFC (``edge.bundle.normal_label``)."""
    seen: dict[str, str] = {}
    for name in names:
        if normal_label(name) in seen:
            raise ValueError(f"{seen[normal_label(name)]!r} and {name!r} are the same {noun} written in two Unicode "
                             f"forms (composed and decomposed); {advice}")
        seen[normal_label(name)] = name


def _takes_none(annotation) -> bool:
    return annotation is type(None) or annotation is Any or type(None) in get_args(annotation)


def _takes_bool(annotation) -> bool:
    return annotation is bool or annotation is Any or any(_takes_bool(arg) for arg in get_args(annotation))


def _misplaced_bool(value, annotation) -> bool:
    """A boolean where the field (or, for a mapping or list, its values or items) takes none."""
    if isinstance(value, bool):
        return not _takes_bool(annotation)
    inner = get_args(annotation)
    if isinstance(value, dict) and len(inner) == 2:
        return any(_misplaced_bool(item, inner[1]) for item in value.values())
    if isinstance(value, (list, tuple)) and inner:
        return any(_misplaced_bool(item, inner[0]) for item in value)
    return False


class DeviceConfig(Section):
    """``device:`` this bin's name and where it keeps its state."""

    id: str = Field("smartbin-1", pattern=TOPIC_SAFE, max_length=64,
                    description="Name of this bin in MQTT topics and Home Assistant (ASCII letters, digits, - and _; "
                                "at most 64).")
    state_dir: str | None = Field(
        None, description="Folder for the SQLite store and the review photos. Empty: $STATE_DIRECTORY "
                          "(set by systemd's StateDirectory=) or ~/.local/state/smartbin.")

    @field_validator("id", mode="before")
    @classmethod
    def _number_quoted(cls, value):
        # YAML reads 007 as 7, 0123 as 83 and 12:30 as 750: a bin named by its digits must quote them.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"YAML read this as the number {value}: quote the name as written (id: \"...\")")
        return value


class ModelConfig(Section):
    """``model:`` the classifier bundle and how LiteRT runs it."""

    path: str = Field(DEFAULT_MODEL, min_length=1, description="Model bundle folder; a relative path is looked up beside the "
                                                 "config file, then in the current folder, then in the install.")
    threads: int = Field(2, ge=1, le=MAX_THREADS, description="LiteRT interpreter threads.")
    edgetpu: bool = Field(False, description="Use the Coral Edge TPU delegate when the bundle has an Edge TPU model "
                                             "(falls back to the CPU model with a warning).")
    views: list[View] = Field(
        ["original", "mirrored", "flipped"], min_length=1,
        description="How the model is shown the K settled frames of an item: frame i as views[i mod n] "
                    "(`original`, `mirrored` left to right, `flipped` top to bottom, `turned` 180°), the "
                    "probabilities averaged. Costs nothing extra (still K invokes); `classify` and the web "
                    "page show every view of a photo. Suits models trained with flip augmentation "
                    "(`augment.flip`, `augment.rotate90`: the shipped model and every recipe but the "
                    "no-augmentation ablation rows); `[original]` shows the frames as they are. Chosen on "
                    "val: `benchmarks/views.md`.")


class ReplayConfig(Section):
    """``camera.replay:`` a photo folder presented as items on a simulated tray."""

    path: str | None = Field(None, description="Folder of photos (class subfolders, also symlinked ones, become the "
                                                "`truth` of events, through the bundle's `label_map` if it has one; "
                                                "photos over 40 megapixels are skipped and counted).")
    fps: float = Field(10.0, ge=0, description="Frames per second; 0 replays as fast as the pipeline goes.")
    loop: bool = Field(False, description="Start again after the last photo instead of stopping the daemon.")
    order: Literal["shuffled", "sorted"] = Field(
        "shuffled", description="`shuffled`: classes mixed as on a real tray, in the same order every run; "
                                "`sorted`: by path, one class folder after the other.")
    empty_frames: int = Field(4, ge=1, description="Empty-tray frames shown between two items.")
    present_frames: int = Field(6, ge=1, description="Frames for which each item lies still on the tray.")
    tray_size: tuple[Pixels, Pixels] = Field((512, 384), description="Simulated tray frame size [width, height].")


class FakeCameraConfig(Section):
    """``camera.fake:`` plain scripted frames, for tests of the daemon itself."""

    frames: int = Field(100, ge=0, description="How many plain frames the fake camera delivers.")
    block_after: int | None = Field(None, ge=0, description="Hang after this many frames (tests the watchdog).")
    size: tuple[Pixels, Pixels] = Field((64, 48), description="Frame size [width, height].")


class CameraConfig(Section):
    """``camera:`` the frame source and its capture settings."""

    type: Literal["auto", "picamera2", "opencv", "replay", "fake"] = Field(
        "auto", description="auto tries picamera2, then OpenCV device 0; replay reads a photo folder.")
    device: int | str = Field(0, description="OpenCV source (camera.type: opencv only; auto always tries device 0): USB camera index, video file, RTSP URL, or the http(s):// or file:// URL of a recording (played once).")
    width: int = Field(640, ge=16, description="Capture width in pixels.")
    height: int = Field(480, ge=16, description="Capture height in pixels.")
    fps: float = Field(10.0, gt=0, le=120, description="Capture frame rate.")
    read_timeout_s: float = Field(5.0, gt=0, description="A read slower than this counts as a camera failure.")
    replay: ReplayConfig = Field(default_factory=ReplayConfig, description="Replay source options.")
    fake: FakeCameraConfig = Field(default_factory=FakeCameraConfig, description="Fake source options (tests).")


class DetectorConfig(Section):
    """``detector:`` when an item is on the tray and still enough to classify."""

    type: Literal["occupancy", "every_frame", "sensor"] = Field(
        "occupancy", description="occupancy: image difference against the empty tray; sensor: a GPIO break-beam "
                                 "or button (with --mock-gpio and a replay, the replayed photos break a simulated "
                                 "beam: a dry run, with the `sensor_clear_s` debounce off since a simulated beam "
                                 "never bounces); every_frame: classify every frame (demos).")
    roi: tuple[float, float, float, float] = Field(
        (0.0, 0.0, 1.0, 1.0), description="Region of interest [x, y, width, height] as fractions of the frame.")
    diff_threshold: float = Field(25.0, ge=0, le=255, description="Grey-level difference that marks a pixel changed.")
    occupied_fraction: float = Field(0.05, gt=0, le=1, description="Changed-pixel fraction that means an item is there.")
    still_threshold: float = Field(2.0, ge=0, le=255, description="Mean frame-to-frame difference (grey levels) at "
                                                                  "or below which the item counts as still.")
    still_frames: int = Field(2, ge=1, description="Consecutive still frames before classifying.")
    classify_frames: int = Field(3, ge=1, le=16, description="K: settled frames whose probabilities are averaged.")
    background_frames: int = Field(3, ge=1, description="Frames averaged into the first empty-tray background.")
    empty_frames_to_rearm: int = Field(2, ge=1, description="Empty frames (below half of occupied_fraction) needed "
                                                             "before the next item is awaited.")
    background_rate: float = Field(0.05, ge=0, le=1, description="How fast the empty-tray background follows slow "
                                                                 "light changes.")
    # 5 s: until then the bin sees nothing new (an item placed after a light came on was lost for 30 s,
    # then learnt into the tray, and its removal counted as an item).
    relearn_after_s: float | None = Field(
        5.0, gt=0, description="After a decision, a tray that stays changed and still this long becomes the new "
                               "empty tray (a light switched on, the camera bumped, an item stuck; taking the "
                               "stuck item away later is not an item); empty: never.")
    sensor_pin: int | str = Field(17, description="GPIO of the break-beam sensor or button (type sensor).")
    sensor_pull_up: bool = Field(True, description="Sensor pulls up (active when it pulls the line low).")
    sensor_settle_frames: int = Field(0, ge=0, description="Frames skipped after the beam breaks, while the item "
                                                           "drops into place (type sensor).")
    sensor_clear_s: float = Field(0.3, ge=0, le=10, description="Seconds the beam must stay clear before the next "
                                                                "break counts as a new item: an item bouncing through "
                                                                "the beam is one item (type sensor).")


class ReviewConfig(Section):
    """``decision.review:`` the bounded folder of rejected items' frames."""

    enabled: bool = Field(True, description="Save the frame of every rejected item for later labelling.")
    max_files: int = Field(500, ge=1, description="Oldest review photos are deleted beyond this many.")


class DecisionConfig(Section):
    """``decision:`` label -> bin rules and the confidence below which an item is rejected."""

    bins: dict[str, str] = Field(
        default_factory=lambda: {"cardboard": "paper", "paper": "paper", "glass": "glass", "metal": "packaging",
                                 "plastic": "packaging", "trash": "rest"},
        description="Label -> bin; several labels may share a bin.")
    reject_bin: str = Field("rest", description="Bin for items below min_confidence or with an unmapped label.")
    min_confidence: float = Field(0.6, ge=0, le=1, description="Below this the item goes to the reject bin.")
    review: ReviewConfig = Field(default_factory=ReviewConfig, description="Photos of rejected items.")

    @property
    def bin_names(self) -> list[str]:
        return sorted({*self.bins.values(), self.reject_bin})

    @field_validator("bins")
    @classmethod
    def _one_rule_per_label(cls, bins: dict[str, str]) -> dict[str, str]:
        # Labels are compared in NFC (edge.bundle.normal_label): "müll" typed composed and decomposed
        # are one label, and one of two rules for it would win without a word.
        _one_spelling_each(bins, "label", "keep one rule")
        return {name: normal_label(target) for name, target in bins.items()}

    @field_validator("reject_bin")
    @classmethod
    def _bin_in_nfc(cls, name: str) -> str:
        return normal_label(name)


class FlapConfig(Section):
    """``flap:`` the servo, its pulse widths and one angle per bin."""

    pin: int | str = Field(18, description="GPIO of the servo signal, BCM numbering (18 = header pin 12), or "
                                           "\"BOARD12\" for the header pin. Avoid GPIO 0-3 and 14-15 (HAT EEPROM, "
                                           "I2C, serial console).")
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "mock"] | None = Field(
        None, description="gpiozero pin factory: lgpio (any Pi on Bookworm or Trixie), rpigpio, pigpio, mock. Empty: "
                          "$GPIOZERO_PIN_FACTORY or gpiozero's own choice.")
    angles: dict[str, float] = Field(
        default_factory=lambda: {"paper": -60.0, "glass": -20.0, "packaging": 20.0, "rest": 60.0},
        description="Servo angle per bin in degrees.")
    neutral_angle: float = Field(0.0, description="Angle at rest, between items.")
    # A servo turns less than a full circle; 1e308 passed and every bin then got the same pulse.
    min_angle: float = Field(-90.0, ge=-360, le=360,
                             description="Angle at min_pulse_width; above max_angle reverses the servo (a mirrored mount).")
    max_angle: float = Field(90.0, ge=-360, le=360, description="Angle at max_pulse_width.")
    # Beyond 0.3-3 ms a hobby servo pushes against its end stop (and burns); a value in milliseconds is caught too.
    min_pulse_width: float = Field(0.0005, ge=0.0003, le=0.003,
                                   description="Pulse width in seconds at min_angle (SG90: 0.0005 = 0.5 ms).")
    max_pulse_width: float = Field(0.0025, ge=0.0003, le=0.003,
                                   description="Pulse width in seconds at max_angle (SG90: 0.0025 = 2.5 ms).")
    frame_width: float = Field(0.02, ge=0.005, le=0.05, description="PWM period in seconds (50 Hz servos: 0.02); "
                                                                       "0.005–0.05, and above `max_pulse_width`.")
    # At most 1.5 s: a stop waits out an item's drop and the flap's return (twice this) besides its
    # own 5 s, and must end inside systemd's TimeoutStopSec=10, or the flap is left unparked.
    settle_s: float = Field(0.4, ge=0, le=1.5, description="Time the servo needs to reach the bin's angle plus the time "
                                                         "the item needs to drop, before the flap returns (0 only for "
                                                         "benchmarks: a real servo would not move at all).")
    detach_when_idle: bool = Field(True, description="Stop the PWM signal at rest so the servo does not jitter.")

    @field_validator("angles")
    @classmethod
    def _one_angle_per_bin(cls, angles: dict[str, float]) -> dict[str, float]:
        # Bin names are matched in NFC, as labels are: a bin typed composed in decision.bins finds its
        # angle under a decomposed key.
        _one_spelling_each(angles, "bin", "keep one")
        return {normal_label(name): angle for name, angle in angles.items()}


class TlsConfig(Section):
    """``mqtt.tls:`` encryption and (optional) client certificates."""

    enabled: bool = Field(False, description="Connect with TLS (port 8883 usually).")
    ca_file: str | None = Field(None, description="CA certificate file; empty: the system's CAs.")
    certfile: str | None = Field(None, description="Client certificate for mutual TLS (optional).")
    keyfile: str | None = Field(None, description="Client key for mutual TLS (optional).")
    insecure: bool = Field(False, description="Skip the host-name check (never in production).")


class HomeAssistantConfig(Section):
    """``mqtt.home_assistant:`` MQTT discovery for Home Assistant."""

    enabled: bool = Field(True, description="Publish Home Assistant MQTT discovery configs (retained).")
    discovery_prefix: str = Field("homeassistant", pattern=TOPIC_TEXT, max_length=128,
                                  description="Home Assistant's discovery prefix (not starting with $).")
    status_topic: str = Field("homeassistant/status", pattern=TOPIC_TEXT, max_length=128,
                              description="Home Assistant's birth message topic (its MQTT option; it does not "
                                          "follow the discovery prefix). On 'online' the bin announces itself again.")

    @field_validator("discovery_prefix")
    @classmethod
    def _not_a_broker_topic(cls, prefix: str) -> str:
        return not_a_broker_topic(prefix)


class MqttConfig(Section):
    """``mqtt:`` the broker, topics, credentials and timing."""

    enabled: bool = Field(False, description="Publish events, counts and stats to an MQTT broker.")
    host: str = Field("127.0.0.1", min_length=1,
                      description="Broker host name or address (the port goes in mqtt.port; IPv6 as `::1`, "
                                  "without brackets).")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883 plain, 8883 TLS).")
    prefix: str = Field("smartbin", pattern=TOPIC_TEXT, max_length=128,
                        description="Topics are <prefix>/<device id>/... (no # or +, and not starting with $, "
                                    "which brokers keep for themselves).")
    keepalive: int = Field(30, ge=5, le=3600, description="Seconds between MQTT pings; the broker declares the bin "
                                                          "offline after 1.5 x this.")
    client_id: str | None = Field(None, description="MQTT client id; empty: smartbin-<device id>.")
    username: str | None = Field(None, description="Broker user name.")
    password_file: str | None = Field(
        None, description="File holding the broker password. Never put the password itself in this YAML; under "
                          "systemd the credential mqtt_password (LoadCredential=) is used when present.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")
    stats_interval_s: float = Field(30.0, ge=1, description="Seconds between `stats` messages.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay; doubles up to reconnect_max_s.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay.")
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig, description="Discovery.")

    @field_validator("host")
    @classmethod
    def _host_without_port(cls, host: str) -> str:
        return host_without_port(host, "mqtt.port")

    @field_validator("prefix")
    @classmethod
    def _not_a_broker_topic(cls, prefix: str) -> str:
        return not_a_broker_topic(prefix)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def topic_root(self, device_id: str) -> str:
        return f"{self.prefix}/{device_id}"


class WebConfig(Section):
    """``web:`` the upload-and-classify page and live status inside ``run``."""

    enabled: bool = Field(False, description="Serve the upload-and-classify page, live status and Prometheus "
                                             "`/metrics` inside `run`.")
    host: str = Field("127.0.0.1", min_length=1,
                      description="Address to listen on; 0.0.0.0 exposes the page to the network.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on; 0 picks a free port.")
    max_upload_mb: float = Field(10.0, gt=0, le=100, description="Largest accepted upload.")
    keep_uploads: bool = Field(False, description="Keep uploaded photos under <state_dir>/uploads.")
    allowed_hosts: list[str] = Field(default_factory=list,
                                     description="Host names the page may also be reached as, e.g. through a "
                                                 "reverse proxy: answered although the page listens on "
                                                 "127.0.0.1, and uploads from pages of these names accepted.")

    @field_validator("host")
    @classmethod
    def _host_without_port(cls, host: str) -> str:
        return host_without_port(host, "web.port")

    @field_validator("allowed_hosts")
    @classmethod
    def _names_without_ports(cls, names: list[str]) -> list[str]:
        return [host_without_port(name, "the proxy's own settings").lower() for name in names]


class WatchdogConfig(Section):
    """``watchdog:`` systemd watchdog pings, sent only while frames flow."""

    enabled: bool = Field(True, description="Tie systemd's watchdog (WatchdogSec=) to the camera: ping only while "
                                            "frames flow. false: ping whenever the process runs.")
    max_frame_gap_s: float = Field(10.0, gt=0, description="No ping when the last frame is older than this.")


class Config(Section):
    """The whole ``smartbin.yaml``."""

    version: Literal[1] = Field(1, description="Config format version.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Logging level.")
    device: DeviceConfig = Field(default_factory=DeviceConfig, description="This bin.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The classifier bundle.")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="Frame source.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Item detection.")
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="Label -> bin.")
    flap: FlapConfig = Field(default_factory=FlapConfig, description="The sorting servo.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT publishing and commands.")
    web: WebConfig = Field(default_factory=WebConfig, description="Local web page.")
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig, description="systemd watchdog.")
    source_path: str | None = Field(None, exclude=True, description="The file this config was read from (set by "
                                                                     "load_config, not a YAML key).")
