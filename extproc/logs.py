"""Log lines: JSON objects by default (one per line, for a log pipeline), or text for a terminal.

A record may carry structured fields (`extra={"fields": {...}}`, as the usage record does): JSON puts them
beside the message, text appends them as key=value. Bodies are logged only with `log.bodies`, and then
what looks like a key or a token in them is masked.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Any

import orjson

_SECRET = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"  # an Authorization value
    r"|\b(sk-[A-Za-z0-9_-]{6})[A-Za-z0-9_-]+"  # OpenAI- and Anthropic-style keys
    r"|\b(AIza[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+"  # Google API keys
    r"|\b(ya29\.)[A-Za-z0-9._-]+"  # Google OAuth access tokens
    r"|\b(eyJ[A-Za-z0-9_-]{4})[A-Za-z0-9._-]+")  # JWTs (ChatGPT and other access tokens)


def mask_secrets(text: str) -> str:
    """Keys and tokens cut to a recognisable stub: `sk-abc123…`."""
    return _SECRET.sub(lambda m: next(g for g in m.groups() if g is not None) + "…", text)


_LOGGED_BODY = 64 * 1024  # characters of a body a usage record shows


def logged_body(body: bytes) -> str:
    """A body for the log (log.bodies only): as text, cut at 64 KiB, keys and tokens masked."""
    text = body[:_LOGGED_BODY].decode("utf-8", "replace")
    return mask_secrets(text) + ("…" if len(body) > _LOGGED_BODY else "")


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    found = getattr(record, "fields", None)
    return found if isinstance(found, Mapping) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        doc.update(_fields(record))
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = _fields(record)
        if not extra:
            return line
        return line + " " + " ".join(f"{k}={_text(v)}" for k, v in extra.items() if v is not None)


def _text(value: Any) -> str:
    return str(value) if isinstance(value, (int, float)) else orjson.dumps(value, default=str).decode()


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("extproc").setLevel(level.upper())
