"""Hot reload: the config file changing (or SIGHUP) applies the new configuration without a restart.

The file is polled (a ConfigMap's symlink swap and an editor's save both change what `stat` says) and read
once it has stopped changing. The new configuration is validated in full first; one that fails keeps the
running configuration and logs why, naming the key. One that changes what only a restart applies (Envoy's
listeners and clusters, ports, stores) is logged as needing one and not applied; anything else is swapped
into the runtime in one assignment, so a request sees all of the old configuration or all of the new.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from extproc.config import load_settings
from extproc.config.changes import compare
from extproc.config.problems import messages_of
from extproc.core.errors import ConfigError
from extproc.core.settings import Settings

log = logging.getLogger("extproc")
_POLL = 1.0  # seconds between looks at the config file
_SETTLE = 0.2  # a file still being written is read once it has not changed for this long


class ConfigReloader:
    def __init__(self, settings: Settings, apply: Callable[[Settings], None],
                 prepare: Callable[[Settings], Settings] = lambda s: s) -> None:
        """`prepare` turns what the file says into what this process runs (a worker's own ports, the processor
        token `extproc up` made), as it did at start."""
        self.running = settings
        self._apply = apply
        self._prepare = prepare
        self._path = Path(settings.source) if settings.source else None
        self._seen = self._digest()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path) if self._path else None
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns) if st else None

    def _digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self._path.read_bytes()).digest() if self._path else None
        except OSError:
            return None

    def reload(self, why: str = "the config file changed") -> bool:
        """Read, validate and apply the file; True when the new configuration is now running."""
        if self._path is None:
            log.warning("config reload (%s): the embedded default config is running; there is no file to read "
                        "(start with --config FILE)", why)
            return False
        self._seen = self._digest()
        try:
            new = self._prepare(load_settings(str(self._path)))
        except ConfigError as exc:
            log.error("config reload (%s): %s; the running config is kept", why, "; ".join(messages_of(exc)))
            return False
        except OSError as exc:
            log.error("config reload (%s): cannot read %s (%s); the running config is kept", why, self._path,
                      exc.strerror)
            return False
        change = compare(self.running, new)
        if not change.changed:
            log.info("config reload (%s): nothing the gateway uses changed", why)
            return False
        if change.needs_restart:
            log.warning("config reload (%s): %s only %s on a restart of extproc; the running config is kept "
                        "(nothing of the new file is applied)", why, ", ".join(change.needs_restart),
                        "applies" if len(change.needs_restart) == 1 else "apply")
            return False
        self._apply(new)
        self.running = new
        log.info("config reloaded (%s): %s", why, ", ".join(change.changed))
        return True

    async def run(self) -> None:
        """Until cancelled: reload when the file's content changes or on SIGHUP."""
        loop = asyncio.get_running_loop()
        hangup = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, hangup.set)
        try:
            stat = self._stat()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hangup.wait(), _POLL)
                if hangup.is_set():
                    hangup.clear()
                    self.reload("SIGHUP")
                    stat = self._stat()
                    continue
                now = self._stat()
                if now == stat:
                    continue
                await asyncio.sleep(_SETTLE)
                if self._stat() != now:
                    continue  # still being written: looked at again next time
                stat = now
                if now is not None and self._digest() != self._seen:
                    self.reload()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
