"""Validation helpers for config values: each error names the dotted key and what was expected."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from extproc.core.errors import ConfigError
from extproc.core.settings import Address

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


def expand_env(value: Any, env: Mapping[str, str], key: str, unset: list[tuple[str, str]]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string; each unset ${VAR} is noted in `unset` (key, name)."""
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name, has_default, default = match.group(1), match.group(2), match.group(3)
            if env.get(name):
                return env[name]
            if has_default is not None:  # like the shell's ${VAR:-default}: unset or empty
                return default or ""
            if name not in env:
                unset.append((key, name))
            return ""
        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{key}.{k}" if key else str(k), unset) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, f"{key}[{i}]", unset) for i, v in enumerate(value)]
    return value


def reject_unknown(section: Mapping[str, Any], key: str, allowed: set[str]) -> None:
    for name in section:
        if name not in allowed:
            where = f"{key}.{name}" if key else str(name)
            raise ConfigError(f"{where}: unknown key{did_you_mean(str(name), allowed)}; "
                              f"expected one of {', '.join(sorted(allowed))}")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string")
    return value


def string_list(value: Any, key: str, allowed: frozenset[str] | None = None) -> list[str]:
    """A list of strings, each one of `allowed` when given."""
    hint = f" drawn from {', '.join(sorted(allowed))}" if allowed is not None else ""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings{hint}")
    if allowed is not None:
        for i, item in enumerate(value):
            if item not in allowed:
                raise ConfigError(f"{key}[{i}]: {item!r} is not one of {', '.join(sorted(allowed))}")
    return value


def number(value: Any, key: str, *, whole: bool = False, zero_ok: bool = False) -> float:
    """A number > 0 (≥ 0 with zero_ok), a whole one with `whole`; the error says which was expected."""
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0 or (value == 0 and not zero_ok):
        what = "whole number" if whole else "number"
        raise ConfigError(f"{key}: expected a {what} {'≥ 0' if zero_ok else '> 0'}, got {value!r}")
    return value


def positive_int(value: Any, key: str) -> int:
    return int(number(value, key, whole=True))


def non_negative_int(value: Any, key: str) -> int:
    return int(number(value, key, whole=True, zero_ok=True))


def positive_number(value: Any, key: str) -> float:
    return float(number(value, key))


def non_negative_number(value: Any, key: str) -> float:
    return float(number(value, key, zero_ok=True))


def choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def processor_token(value: Any) -> str | None:
    """The shared secret between Envoy and the processor: whoever can open a stream gets credentials."""
    if not isinstance(value, dict) or not value.get("token"):
        return None
    token = string(value["token"], "processor.token")
    if len(token) < 16 or not all(33 <= ord(c) <= 126 for c in token):
        raise ConfigError("processor.token: use 16+ visible ASCII characters (e.g. `openssl rand -hex 24`)")
    return token


def relay_port(value: Any, processor: Address) -> int:
    """Where the processor relays streamed answers (a failure midway ends them with an error event)."""
    default = processor.port + 1 if 0 < processor.port < 65535 else 0
    port = value.get("relay_port", default) if isinstance(value, dict) else default
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535 or port == processor.port:
        raise ConfigError(f"processor.relay_port: expected a port number 1-65535 other than processor.port, got "
                          f"{port!r}")
    return port


def address(value: Any, key: str, default: Address) -> Address:
    if value is None:
        return default
    section = mapping(value, key)
    reject_unknown(section, key, {"address", "port"})
    host = string(section.get("address", default.host), f"{key}.address")
    port = section.get("port", default.port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"{key}.port: expected a port number 0-65535, got {port!r}")
    return Address(host, port)



def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value

