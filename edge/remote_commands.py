"""Remote commands for the daemon (MQTT ``<prefix>/<device_id>/cmd/<name>``): checked on MQTT's
thread, so bad input is answered at once, and run on the sorting loop's thread between two frames,
so a command never races the flap.

Usage:
    class Daemon(RemoteCommands): ...   # the loop calls self._run_commands() between frames
"""

from __future__ import annotations

import logging
import queue
from typing import Any

from edge import commands as cmd
from edge import parts
from edge.bundle import normal_label
from edge.errors import CommandError, FlapError

MAX_QUEUED_FLAPS = 2  # an operator testing the flap, not a queue of moves that would stall sorting
log = logging.getLogger("edge.daemon")  # the daemon's own messages, as before the split: journal filters keep working


class RemoteCommands:
    """The daemon's command handlers, as a mixin of ``Daemon``, whose parts they use: ``_commands``
    (a bounded queue), ``_stop``, ``link``, ``recorder``, ``store``, ``classifier``, ``web``,
    ``flap``, ``stats``, ``config``, ``_park`` and ``_warn_about_labels``."""

    def _on_command(self, name: str, payload: bytes) -> None:
        """MQTT thread: validate now (bad input is answered at once), run later on the loop's thread."""
        try:
            command = cmd.parse_command(name, payload)
        except CommandError as err:  # request_id_of never raises, so a bad payload always gets its reply
            self._reply(cmd.result(name, False, str(err), cmd.request_id_of(payload)))
            return
        if self._stop.is_set():  # the loop that runs commands is gone: answer now, not never
            self._reply(cmd.result(name, False, "the bin is stopping", command.request_id))
            return
        if command.name == "flap":  # a flap move takes about 2 x settle_s of the sorting loop's time
            with self._commands.mutex:
                flaps_waiting = sum(1 for waiting in self._commands.queue if waiting.name == "flap")
            if flaps_waiting >= MAX_QUEUED_FLAPS:
                self._reply(cmd.result(name, False, f"busy: {flaps_waiting} flap commands wait already",
                                       command.request_id))
                return
        try:
            self._commands.put_nowait(command)
        except queue.Full:
            self._reply(cmd.result(name, False, "busy: too many queued commands", command.request_id))
            return
        if self._stop.is_set():  # the stop began meanwhile and may have answered the queue already
            self._refuse_waiting_commands()

    def _run_commands(self) -> None:
        """Runs the oldest waiting command, one per frame: a burst of them must not stop the camera
        frames (and with them systemd's watchdog pings) or delay a stop."""
        if self._stop.is_set():
            return
        try:
            command = self._commands.get_nowait()
        except queue.Empty:
            return
        # Outside dispatch, which turns every error into a reply: a failed commit of the last
        # item must stop the loop here exactly as it would before the next flap move.
        self.recorder.wait()
        self._reply(cmd.dispatch(command, {"reset_counts": self._reset_counts,
                                           "reload_model": self._reload_model, "flap": self._flap_command}))

    def _refuse_waiting_commands(self) -> None:
        """On stop: every command not yet run is answered, none is run."""
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            self._reply(cmd.result(command.name, False, "the bin is stopping", command.request_id))

    def _reply(self, reply: dict[str, Any]) -> None:
        log.info("command %s: %s", reply["command"], "ok" if reply["ok"] else reply.get("error"))
        if self.link is not None:
            self.link.publish_result(reply)

    def _reset_counts(self, command) -> dict[str, Any]:
        self.recorder.wait()
        counts = self.counts = self.store.reset_counts()
        if self.link is not None:
            self.link.wake(counts_changed=True)
        return {"counts": counts}

    def _reload_model(self, command) -> dict[str, Any]:
        # Build and validate the new bundle completely before touching the running one.
        new = parts.load_classifier(self.config, command.path)
        self.classifier = new
        warnings = self._warn_about_labels()
        if self.web is not None:
            from edge.web import payloads
            self.web.classifier, self.web.model = new, payloads.model_block(new)
        if self.link is not None:
            self.link.publish_discovery()
        reply = {"model": new.bundle.name, "sha256": new.bundle.manifest.sha256, "labels": list(new.labels)}
        return reply | ({"warnings": warnings} if warnings else {})

    def _flap_command(self, command) -> dict[str, Any]:
        bin_name = normal_label(command.bin)  # as the config's bin names: "ä" composed or decomposed
        if bin_name not in self.flap.angles:  # an operator's typo, not a faulty flap
            raise CommandError(f"unknown bin {command.bin!r} (known: {', '.join(self.flap.angles)})")
        try:
            self.flap.move_to(bin_name)
        except FlapError:
            self.stats.flap_error()
            raise
        angle = self.flap.angles[bin_name]
        self._park()
        return {"bin": bin_name, "angle": angle}
