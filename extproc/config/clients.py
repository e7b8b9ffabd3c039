"""The `clients` section: the keys that may spend the owner's credentials, their limits, and the teams that share
a budget and per-minute limits. Every error names its key and the fix."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from extproc.config.problems import keep, report
from extproc.config.values import (
    boolean,
    choice,
    did_you_mean,
    mapping,
    positive_int,
    positive_number,
    reject_unknown,
    section,
    string,
    string_list,
)
from extproc.core.budget import PERIODS, Budget
from extproc.core.clients import ClientKey, ClientPolicy, Team, digest
from extproc.core.errors import ConfigError
from extproc.core.settings import Address

_NO_KEY = bytes(32)  # a client key's digest when the command was not given the key: it matches no key
_TEAM_FIELDS = {"keys", "budget", "rpm", "tpm"}


def parse_clients(raw: Any, listen: Address, secrets: bool = True) -> ClientPolicy:
    """`clients`: the keys that may spend the owner's credentials. Required by default off loopback."""
    found = section(raw, "clients", {"keys", "require_key", "teams"})
    loopback = listen.host in ("127.0.0.1", "::1", "localhost") or listen.host.startswith("127.")
    require = keep(not loopback, boolean, found.get("require_key", not loopback), "clients.require_key")
    entries = found.get("keys") or []
    if not isinstance(entries, list):
        report(ConfigError("clients.keys: expected a list of keys, e.g. [{name: me, key: ${CLIENT_KEY}}]"))
        entries = []
    keys = [k for i, entry in enumerate(entries) if (k := keep(None, _client_key, entry, f"clients.keys[{i}]",
                                                                  secrets)) is not None]
    if require and not entries:
        raise ConfigError(f"clients.keys: listen.address {listen.host} is not loopback, so anyone who reaches it "
                          "would spend your credentials; add clients.keys (e.g. [{name: me, key: ${CLIENT_KEY}}]) "
                          "or set clients.require_key: false to opt out")
    if len({k.name for k in keys}) != len(keys):
        raise ConfigError("clients.keys: each key needs a name of its own (it is what logs show)")
    teams = keep({}, _teams, found.get("teams"), [k.name for k in keys])
    return ClientPolicy(tuple(replace(k, team=teams.get(k.name)) for k in keys), require)


def _budget(raw: Any, key: str) -> Budget | None:
    if raw is None:
        return None
    budget = mapping(raw, key)
    reject_unknown(budget, key, {"usd", "per"})
    if "usd" not in budget:
        raise ConfigError(f"{key}.usd: how many US dollars may be spent per period, e.g. {{usd: 50, per: month}}")
    return Budget(positive_number(budget["usd"], f"{key}.usd"), choice(budget.get("per", "month"), f"{key}.per",
                                                                       PERIODS))


def _optional_int(entry: dict[str, Any], field: str, key: str) -> int | None:
    return positive_int(entry[field], f"{key}.{field}") if entry.get(field) is not None else None


def _client_key(raw: Any, key: str, secrets: bool) -> ClientKey:
    entry = mapping(raw, key)
    reject_unknown(entry, key, {"name", "key", "sha256", "models", "rpm", "tpm", "tpm_per_model", "budget"})
    name = string(entry.get("name"), f"{key}.name")
    if ("key" in entry) == ("sha256" in entry):
        raise ConfigError(f"{key}: give either key (e.g. ${{CLIENT_KEY}}) or sha256 (its hex SHA-256), not both "
                          "or neither")
    secret = ""
    if "key" in entry and not secrets and not entry["key"]:
        sha = _NO_KEY
    elif "key" in entry:
        secret = string(entry["key"], f"{key}.key")
        if len(secret) < 16:
            raise ConfigError(f"{key}.key: use at least 16 characters (e.g. `openssl rand -hex 24`)")
        sha = digest(secret)
    else:
        hexed = string(entry["sha256"], f"{key}.sha256").lower()
        if len(hexed) != 64 or any(c not in "0123456789abcdef" for c in hexed):
            raise ConfigError(f"{key}.sha256: expected 64 hex digits (sha256sum of the key), not the key itself")
        sha = bytes.fromhex(hexed)
    return ClientKey(name, sha, tuple(string_list(entry.get("models") or [], f"{key}.models")),
                     _optional_int(entry, "rpm", key), _budget(entry.get("budget"), f"{key}.budget"), secret,
                     tpm=_optional_int(entry, "tpm", key),
                     tpm_per_model=_per_model(entry.get("tpm_per_model"), f"{key}.tpm_per_model"))


def _per_model(raw: Any, key: str) -> tuple[tuple[str, int], ...]:
    """`tpm_per_model: {glob of the model asked for: tokens per minute}`."""
    if raw is None:
        return ()
    limits = mapping(raw, key)
    if not limits:
        raise ConfigError(f"{key}: expected model globs and their tokens per minute, e.g. {{claude-*: 200000}}")
    return tuple((str(model), positive_int(tpm, f"{key}.{model}")) for model, tpm in limits.items())


def _teams(raw: Any, names: list[str]) -> dict[str, Team]:
    """`clients.teams: {name: {keys: [...], budget, rpm, tpm}}` → each key's team; a key is in one team at most,
    and a team lists configured keys only."""
    if raw is None:
        return {}
    teams = mapping(raw, "clients.teams")
    member: dict[str, Team] = {}
    for team_name, body in teams.items():
        key = f"clients.teams.{team_name}"
        team = keep(None, _team, str(team_name), body, key)
        if team is None:
            continue
        if team.counter in names:
            report(ConfigError(f"{key}: a client key is named {team.counter!r}, which is where this team's counts "
                               f"are kept; rename the key or the team"))
        listed = mapping(body, key).get("keys")
        for i, name in enumerate(string_list(listed, f"{key}.keys") if listed is not None else []):
            where = f"{key}.keys[{i}]"
            if name not in names:
                report(ConfigError(f"{where}: no client key is named {name!r}{did_you_mean(name, names)}; list the "
                                   "names of clients.keys"))
            elif name in member:
                report(ConfigError(f"{where}: {name!r} is in the team {member[name].name!r} already; a key belongs "
                                   "to one team at most, so remove it from one of them"))
            else:
                member[name] = team
    return member


def _team(name: str, raw: Any, key: str) -> Team:
    body = mapping(raw, key)
    reject_unknown(body, key, _TEAM_FIELDS)
    if not body.get("keys"):
        raise ConfigError(f"{key}.keys: list the names of the client keys the team shares its limits between, "
                          "e.g. [alice, bob]")
    team = Team(name, _budget(body.get("budget"), f"{key}.budget"), _optional_int(body, "rpm", key),
                _optional_int(body, "tpm", key))
    if team.budget is None and team.rpm is None and team.tpm is None:
        raise ConfigError(f"{key}: a team shares a budget, rpm or tpm; give it one of them, e.g. "
                          "budget: {usd: 100, per: month}")
    return team

