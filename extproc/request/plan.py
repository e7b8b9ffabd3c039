"""What a request's router stream hands to the streams of its later attempts, and how an attempt is named.

Envoy carries the plan as dynamic metadata from the router-level answer to the per-attempt processor in
the cluster's filter chain, and walks the endpoint list itself (the `override_host` load balancer), so any
processor process can build any attempt: nothing is shared between streams. Pure data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from extproc.core.catalog import ModelSpec
from extproc.core.registry import Registry
from extproc.core.resolve import Decision
from extproc.core.settings import Credential

PLAN_NAMESPACE = "extproc"  # dynamic metadata: the router answer sets it, the per-attempt processor receives it
LB_NAMESPACE = "envoy.lb"  # dynamic metadata the override_host load balancer reads
ENDPOINTS_KEY = "x-extproc-endpoints"
REFUSED_ROUTE = "-refused-"  # a provider header no provider has: the internal listener answers 503 itself
PLAN_KEY = "plan"  # the plan's key in PLAN_NAMESPACE
LOGIN_KEY = "login"  # a provider listener's stream: the login its attempt carries (for a retry after a 401)
PROVIDER_KEY = "provider"  # an attempts endpoint's metadata key (in PLAN_NAMESPACE): the provider it sends to
HOST_METADATA = "xds.upstream_host_metadata"  # the ext_proc attribute with the endpoint Envoy picked


def listener_name(route: str) -> str:
    """The internal listener that sends to a provider entry (its TLS, SNI and Host)."""
    return f"provider_{route}"


def endpoint_address(route: str) -> str:
    """How the override_host load balancer names that listener's endpoint."""
    return f"envoy://{listener_name(route)}/0"


@dataclass(frozen=True, slots=True)
class Candidate:
    route: str  # the provider entry the attempt goes to
    owner: str  # the provider whose model it is
    model: str  # the model id as that provider knows it
    credential: str  # the credential's id
    reason: str
    strategy: str | None = None

    @classmethod
    def of(cls, decision: Decision) -> Candidate:
        return cls(decision.provider.name, decision.model.provider, decision.model.id, decision.credential.id,
                   decision.reason, decision.strategy)


@dataclass(frozen=True, slots=True)
class Plan:
    path: str  # the client's path: each attempt builds its own from it
    requested: str  # the model the client asked for
    mode: str  # chat | embedding
    at: float  # when the request was routed
    candidates: tuple[Candidate, ...]
    restore: Mapping[str, str | None] = field(default_factory=dict)  # headers the first attempt set → the
    # client's value (None: the client sent none); a later attempt undoes them before setting its own

    def to_metadata(self) -> dict[str, dict[str, str]]:
        """The router answer's dynamic metadata: the plan for the attempts, the endpoint list for Envoy."""
        doc = {"path": self.path, "requested": self.requested, "mode": self.mode, "at": self.at,
               "candidates": [[c.route, c.owner, c.model, c.credential, c.reason, c.strategy]
                              for c in self.candidates],
               "restore": dict(self.restore)}
        return {PLAN_NAMESPACE: {PLAN_KEY: orjson.dumps(doc).decode()},
                LB_NAMESPACE: {ENDPOINTS_KEY: ",".join(endpoint_address(c.route) for c in self.candidates)}}

    @classmethod
    def from_metadata(cls, text: str) -> Plan:
        doc = orjson.loads(text)
        return cls(doc["path"], doc["requested"], doc["mode"], float(doc["at"]),
                   tuple(Candidate(*c) for c in doc["candidates"]), doc.get("restore") or {})


def served_by(registry: Registry, owner: str, model_id: str, credential_id: str,
              mode: str = "chat") -> tuple[ModelSpec, Credential | None, bool]:
    """The model and credential ids name in this process's registry, and whether the model is a listed one
    (a name passed through is rebuilt); the credential is None when this registry no longer has it."""
    known = registry.lookup(f"{owner}/{model_id}")
    model = known[0] if known else ModelSpec(id=model_id, provider=owner, mode=mode)
    cred = next((c for c in registry.credentials_for(model) if c.id == credential_id), None)
    return model, cred, bool(known)


def decision_for(candidate: Candidate, plan: Plan, registry: Registry, endpoint: str) -> Decision | None:
    """The decision a candidate stands for, in this process's registry; None if it no longer has its credential."""
    model, cred, listed = served_by(registry, candidate.owner, candidate.model, candidate.credential, plan.mode)
    provider = registry.providers.get(candidate.route)
    if cred is None or provider is None or cred.route != candidate.route:
        return None
    return Decision(plan.requested, model, provider, cred, candidate.reason, candidate.strategy, endpoint, plan.at,
                    listed)


@dataclass(frozen=True, slots=True)
class Attempted:
    """One attempt as its header names it: all that learning from the attempt's access-log entry needs,
    whichever processor process reads it. The attempt number tells an entry of this attempt from one of a later
    attempt refused before it could set its own."""

    attempt: int
    credential: str
    owner: str
    model: str
    endpoint: str
    at: float  # when the request was routed (`Decision.at`)
    listed: bool

    @classmethod
    def of(cls, decision: Decision, attempt: int) -> Attempted:
        return cls(attempt, decision.credential.id, decision.model.provider, decision.model.id, decision.endpoint,
                   decision.at, decision.listed)

    def header(self) -> str:
        """`<attempt> <credential> <owner>/<model> <endpoint> <routed at> <listed 1|0>`."""
        return (f"{self.attempt} {self.credential} {self.owner}/{self.model} {self.endpoint} {self.at!r} "
                f"{int(self.listed)}")


def attempt_header(decision: Decision, attempt: int) -> str:
    return Attempted.of(decision, attempt).header()


def parse_attempt_header(value: str) -> Attempted | None:
    parts = value.split(" ")
    if len(parts) != 6 or "/" not in parts[2] or parts[5] not in ("0", "1"):
        return None
    owner, _, model = parts[2].partition("/")
    try:
        attempt, at = int(parts[0]), float(parts[4])
    except ValueError:
        return None
    return Attempted(attempt, parts[1], owner, model, parts[3], at, parts[5] == "1")
