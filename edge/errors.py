"""Every error smartbin raises on purpose, in one place (gpiozero's ``exc.py`` is the model).

Each class mixes in the builtin it behaves like, so callers can catch either
``SmartbinError`` or the familiar builtin.

Usage:
    from edge.errors import BundleError
    try:
        bundle = load_bundle(path)
    except BundleError as err:
        print(f"error: {err}")
"""


class SmartbinError(Exception):
    """Base class of all smartbin errors."""


class BundleError(SmartbinError, ValueError):
    """A model bundle is missing, incomplete, corrupt or does not match its manifest."""


class ConfigError(SmartbinError, ValueError):
    """The configuration is invalid; ``problems`` holds ``(key, problem)`` pairs."""

    def __init__(self, problems, source: str | None = None):
        self.problems = list(problems)
        self.source = source  # the file they are in, when there is one
        super().__init__("\n".join(f"{key}: {problem}" for key, problem in self.problems))


class CameraError(SmartbinError, RuntimeError):
    """A camera source cannot be opened or stopped delivering frames."""


class MissingInputError(CameraError):
    """The camera names a file or folder that is not there or cannot be what it should be (a video
    file, a replay folder): waiting cannot help, so the daemon exits 2, which systemd does not retry."""


class ClassifierError(SmartbinError, RuntimeError):
    """The LiteRT interpreter cannot be built or run for a bundle."""


class FlapError(SmartbinError, RuntimeError):
    """The sorting flap cannot be driven (bad pin factory, unknown bin)."""


class MissingLibraryError(FlapError, ImportError):
    """A library the configured hardware needs is not installed (restarting cannot help: exit 2)."""


class StoreError(SmartbinError, OSError):
    """The state database (counts and outbox) cannot be opened or written."""


class StoreUnusableError(StoreError):
    """The state folder cannot be used until a person acts (a damaged database, another daemon using
    it): restarting cannot help, so the daemon exits 2, which systemd does not retry."""


class CommandError(SmartbinError, ValueError):
    """A remote command is malformed, unknown or failed."""


class UploadError(SmartbinError, ValueError):
    """An upload the web page refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
