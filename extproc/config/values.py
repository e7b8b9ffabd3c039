"""Validation helpers for config values: each error names the dotted key and what was expected."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from extproc.config.problems import ConfigErrors, keep, report
from extproc.core.admission import MESSAGE_TIMEOUT, AdmissionPolicy
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
    """Every unknown key of a section, each with a suggestion; reported, not fatal: the rest is still checked."""
    unknown = [f"{f'{key}.{name}' if key else name}: unknown key{did_you_mean(str(name), allowed)}; "
               f"expected one of {', '.join(sorted(allowed))}" for name in section if name not in allowed]
    if unknown:
        report(ConfigErrors(unknown))


def section(value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
    """A mapping (empty when unset) with only the `allowed` keys; not a mapping: reported, and {} stands in."""
    found = keep({}, mapping, value or {}, key)
    reject_unknown(found, key, allowed)
    return found


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


def relay_port(value: Any, processor: Address, workers: int = 1) -> int:
    """Where the processor relays streamed answers (a failure midway ends them with an error event); worker i
    listens on it + i, after the workers' own processor ports."""
    default = processor.port + workers if 0 < processor.port <= 65535 - 2 * workers else 0
    port = value.get("relay_port", default) if isinstance(value, dict) else default
    ours = range(processor.port, processor.port + workers)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535 - workers + 1 \
            or any(p in ours for p in range(port, port + workers)):
        raise ConfigError(f"processor.relay_port: expected a port number 1-65535 clear of the workers' processor "
                          f"ports ({processor.port}-{processor.port + workers - 1}), got {port!r}")
    return port


def processor_workers(value: Any, shared_state: bool) -> int:
    """processor.workers: the number of cores when health is shared (state.redis), else one — several processes
    that do not share health would each learn cooldowns alone."""
    default = len(os.sched_getaffinity(0)) if shared_state else 1  # the cores this process may use
    workers = value.get("workers", default) if isinstance(value, dict) else default
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise ConfigError(f"processor.workers: expected a number of processes 1-64, got {workers!r}")
    if workers > 1 and not shared_state:
        raise ConfigError(f"processor.workers: {workers} processes share health through Redis; set state.redis.url "
                          "(e.g. redis://127.0.0.1:6379/0) or processor.workers: 1")
    return workers


ADMISSION_KEYS = ("max_wait", "max_requests")


def admission(value: Any) -> AdmissionPolicy:
    """processor.max_wait (s a request's headers may wait to be read) and processor.max_requests (open at once
    per processor, 0: no limit): past either, a new request gets 503 with retry-after at once."""
    section = value if isinstance(value, dict) else {}
    default = AdmissionPolicy()
    max_wait = section.get("max_wait", default.max_wait)
    if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or not 0 < max_wait < MESSAGE_TIMEOUT:
        raise ConfigError(f"processor.max_wait: expected seconds above 0 and under Envoy's {MESSAGE_TIMEOUT:g} s "
                          f"message timeout (e.g. 1), got {max_wait!r}")
    max_requests = section.get("max_requests", default.max_requests)
    if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 0:
        raise ConfigError(f"processor.max_requests: expected a number of requests (0: no limit), got {max_requests!r}")
    return AdmissionPolicy(float(max_wait), max_requests)


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

