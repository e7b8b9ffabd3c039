"""Provider facts as types: where a provider lives, how it authenticates, which client APIs it speaks.

The facts themselves are data (extproc/data/providers.yaml), loaded and validated by `extproc.config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from urllib.parse import quote, urlsplit


class Api(StrEnum):
    """Client API families; a request may only go to a provider that speaks its family."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"

    @classmethod
    def named(cls, value: str) -> Api:
        """The family an `x-extproc-api` header names; OpenAI's (the catch-all envelope) for anything else."""
        try:
            return cls(value)
        except ValueError:
            return cls.OPENAI


class AuthStyle(StrEnum):
    BEARER = "bearer"
    X_API_KEY = "x-api-key"
    X_GOOG_API_KEY = "x-goog-api-key"
    API_KEY = "api-key"  # Azure OpenAI's


# Headers a client may carry its own credential in; always removed before a request goes upstream.
CLIENT_CREDENTIAL_HEADERS: tuple[str, ...] = ("authorization", "x-api-key", "x-goog-api-key", "api-key",
                                              # tied to the client's own account, meaningless with ours:
                                              "openai-organization", "openai-project", "chatgpt-account-id")


# Chat endpoints translation reads and writes, by API (embeddings and legacy completions are never translated).
TRANSLATED_ENDPOINTS_OF: dict[Api, tuple[str, ...]] = {
    Api.OPENAI: ("chat", "responses"), Api.ANTHROPIC: ("messages",), Api.GEMINI: ("gemini",)}
TRANSLATED_ENDPOINTS = frozenset(e for endpoints in TRANSLATED_ENDPOINTS_OF.values() for e in endpoints)


DEPLOYMENT = "{deployment}"  # in a path prefix: the model's served name (`ProviderSpec.served_name`)
_GEMINI_MODEL = re.compile(r"/[^/?]+/models/[^:/?]*")  # a Gemini call's /{version}/models/{model}, before :{method}


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """How one client API family reaches this provider."""

    path_prefix: str
    auth: AuthStyle
    endpoints: frozenset[str] | None = None  # None: every endpoint of the family

    def serves(self, endpoint: str) -> bool:
        return self.endpoints is None or endpoint in self.endpoints


@dataclass(frozen=True, slots=True)
class DiscoverySpec:
    """Where and how to ask a provider for its model list."""

    path: str  # below base_url
    style: str  # openai | anthropic | gemini: the shape of the answer
    api: Api  # whose auth style the request uses
    enabled: bool = True
    ttl: float = 300.0
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A call that costs no tokens and says whether a provider takes a cooled or suspended credential again."""

    path: str  # below base_url
    api: Api  # whose auth style the call uses
    method: str = "GET"
    body: bytes | None = None  # JSON, for a POST
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class InvokeSpec:
    """A cloud that serves Anthropic's Messages API as a call on the model's own path (Bedrock's InvokeModel,
    Vertex AI's rawPredict): the body goes without `model` (and `stream`, on Bedrock), with the cloud's
    `anthropic_version`."""

    anthropic_version: str
    whole: str  # the call after the model's path, for a whole answer (/invoke, :rawPredict)
    stream: str  # … for a streamed one (/invoke-with-response-stream, :streamRawPredict)
    betas: str | None = None  # the body field the anthropic-beta header's flags go in (None: the header goes)
    # The beta flags the cloud takes (None: any); a client's others are dropped, since the cloud refuses a whole
    # request for one flag it does not know ("invalid beta flag"). Renamed first: Anthropic's name → the cloud's.
    accepted_betas: frozenset[str] | None = None
    renamed_betas: Mapping[str, str] = field(default_factory=dict)
    keeps_stream: bool = False  # `stream` stays in the body (Vertex AI's), besides choosing the call
    # The call that counts a request's tokens, in place of the model's segment and call (Vertex AI's
    # count-tokens:rawPredict, the model named in the body); None: the cloud counts none (Bedrock's InvokeModel).
    count: str | None = None
    count_betas: frozenset[str] | None = None  # the flags its count call takes (None: as `accepted_betas`)
    # The status an error of the cloud reaches an Anthropic client with, when not its own (503 → 529 overloaded).
    statuses: Mapping[int, int] = field(default_factory=dict)
    # An exception a stream ends with (Bedrock's event stream) → the status whose error event it becomes.
    stream_errors: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ConverseSpec:
    """A cloud whose other models take one API of its own, Bedrock's Converse: an OpenAI chat request is written
    in it, and its answer read back (Llama, Mistral, Nova, gpt-oss, DeepSeek, Qwen on Bedrock)."""

    whole: str  # the call after the model's path, for a whole answer (/converse)
    stream: str  # … for a streamed one (/converse-stream, in AWS's event-stream framing)
    # Converse's stopReason → the finish_reason an OpenAI answer gives (one not named: stop).
    stop_reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Upstream:
    scheme: str
    host: str
    port: int
    base_path: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def authority(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    base_url: str
    auth: AuthStyle
    apis: Mapping[Api, ApiRoute]
    headers: Mapping[str, str] = field(default_factory=dict)
    api_key_env: str | None = None
    discovery: DiscoverySpec | None = None
    probe: ProbeSpec | None = None  # None: never probed
    transform: str | None = None  # a request shape the upstream needs (codeassist)
    prefer: str = "api_key"  # api_key | login: which credentials go first when a provider has both
    model_prefixes: tuple[str, ...] = ()  # ids the catalog lacks but that are this provider's (claude-…)
    rotation: str = "round-robin"  # round-robin | fill-first: how requests spread over its healthy credentials
    stream_usage: bool = True  # takes stream_options.include_usage on OpenAI-style streams (asked for, for accounting)
    stream_only: bool = False  # answers streamed requests only: a whole answer is asked for streamed, and collected
    translation: bool = True  # a client of another API may be served here, translated (translation: false)
    drop_fields: tuple[str, ...] = ()  # body fields it refuses ("Unsupported parameter"): taken off every request
    lite_header: str | None = None  # a client header whose `true` marks a body in the upstream's own compact shape
    # Model id → the name it is served under here (Azure's deployments); a model not named: its own id.
    deployments: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None  # sent as `api-version` on every request (Azure's deployment paths need it)
    invoke: InvokeSpec | None = None  # Anthropic's Messages API as a call on the model's path (Bedrock, Vertex AI)
    converse: ConverseSpec | None = None  # OpenAI's chat API written as the cloud's own (Bedrock's Converse)
    # A deployment served on some of the provider's endpoints only (Vertex AI: Claude on messages, Gemini on gemini).
    deployment_endpoints: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def upstream(self) -> Upstream:
        return parse_base_url(self.base_url)

    def speaks(self, api: Api, endpoint: str, listed: frozenset[str] | None = None) -> bool:
        """Whether a request to this client endpoint can go to this provider without translation (for a model
        served on the `listed` endpoints only, when its provider's list says so)."""
        route = self.apis.get(api)
        return route is not None and route.serves(endpoint) and (listed is None or endpoint in listed)

    def target(self, api: Api, endpoint: str, listed: frozenset[str] | None = None) -> tuple[Api, str] | None:
        """The API and endpoint a request of this client endpoint goes out in: its own when this provider speaks
        it, else (translated) the first of this provider's that translation writes (and the model is `listed`
        on); None: it cannot come here."""
        if self.speaks(api, endpoint, listed):
            return api, endpoint
        if endpoint not in TRANSLATED_ENDPOINTS or not self.translation:
            return None
        for target_api, route in self.apis.items():
            for target_endpoint in TRANSLATED_ENDPOINTS_OF[target_api]:
                if route.serves(target_endpoint) and (listed is None or target_endpoint in listed):
                    return target_api, target_endpoint
        return None

    def served_name(self, model: str) -> str:
        """The name this provider knows `model` by (its deployment's, on Azure)."""
        return self.deployments.get(model, model)

    def body_model(self, api: Api, model: str) -> str:
        """The model a request body names: its served name, unless the path names the deployment already."""
        return model if DEPLOYMENT in self.apis[api].path_prefix else self.served_name(model)

    def upstream_path(self, api: Api, rest: str, model: str = "", segment: str | None = None) -> str:
        """The upstream path for a request of `model` whose client path, minus its API prefix, is `rest`: a prefix
        with `{deployment}` takes the model's served name, or `segment` in its place (for Gemini's API, in place of
        the call's own `/{version}/models/{model}`: Vertex's), and `api_version` goes as a query."""
        prefix = self.apis[api].path_prefix
        if DEPLOYMENT in prefix:
            prefix = prefix.replace(DEPLOYMENT, quote(self.served_name(model) if segment is None else segment, safe=""))
            named = _GEMINI_MODEL.match(rest) if api is Api.GEMINI else None
            rest = rest[named.end():] if named else rest
        path = self.upstream.base_path + prefix + rest
        if self.api_version is not None:
            path += ("&" if "?" in path else "?") + "api-version=" + quote(self.api_version, safe="")
        return path

    def auth_headers(self, api: Api, secret: str) -> dict[str, str]:
        """The header that carries `secret` to this provider for requests of the `api` family."""
        style = self.apis[api].auth
        if style is AuthStyle.BEARER:
            return {"authorization": f"Bearer {secret}"}
        return {style.value: secret}


@lru_cache(maxsize=256)  # asked per request (the upstream path): the answer never changes
def parse_base_url(base_url: str) -> Upstream:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{base_url!r} is not an http(s) URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Upstream(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))
