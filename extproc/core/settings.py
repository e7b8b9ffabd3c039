"""The validated configuration as plain immutable types (loading and validation live in `extproc.config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from extproc.core.admission import AdmissionPolicy
from extproc.core.catalog import ModelSpec
from extproc.core.clients import ClientPolicy
from extproc.core.flows import Flow, OwnClient, Windows
from extproc.core.providers import AuthStyle, ProviderSpec
from extproc.core.tracing import TracingPolicy

DEFAULT_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
STRATEGIES = ("capability-match", "same-provider", "cost-optimized", "none")


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class GoogleAuth:
    """Google Cloud credentials (Vertex AI), whose short-lived access token is fetched and refreshed at request
    time: a service-account (or ADC) file, or None for application default credentials."""

    file: str | None = None


@dataclass(frozen=True, slots=True)
class EntraAuth:
    """Microsoft Entra ID credentials (Azure OpenAI), whose short-lived token for `scope` is fetched and refreshed at
    request time: an application's client secret or certificate in a tenant, or, with neither, azure-identity's
    default chain (environment, workload identity, managed identity — `client_id` picks a user-assigned one — the
    Azure CLI). `authority`: the sign-in host (another cloud's), None for azure-identity's default."""

    scope: str
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(repr=False, default=None)
    client_certificate: str | None = None  # a PEM file holding the certificate and its private key
    authority: str | None = None


@dataclass(frozen=True, slots=True)
class AwsAuth:
    """AWS credentials (Bedrock) that sign each request with SigV4: botocore's standard chain (environment, shared
    profile, web identity, container and instance metadata), or the named shared `profile`."""

    region: str
    profile: str | None = None
    service: str = "bedrock"  # the signing name


@dataclass(frozen=True, slots=True)
class Credential:
    """One way to serve a provider's models: an API key, or a login whose token is fetched per request.

    The secret never appears in a repr or a log; ids do (`openai:key1`, `claude-3f9a1c`).
    """

    id: str
    provider: str  # whose models it serves
    secret: str = field(repr=False, default="")  # an API key; empty for logins
    upstream: str = ""  # the provider entry requests go to, when not `provider` (e.g. chatgpt for Codex)
    account: str | None = None  # a login's account id: its token comes from the account manager
    auth: AuthStyle | None = None  # overrides the upstream's auth style
    headers: Mapping[str, str] = field(default_factory=dict)  # set when the client did not send them
    merge_headers: Mapping[str, str] = field(default_factory=dict)  # comma-joined with the client's values
    only_client: OwnClient | None = None  # a login that serves this client's requests only
    project: str | None = None  # Code Assist project of a Gemini login
    windows: Windows | None = None  # a subscription's usage windows, reported on its answers
    google: GoogleAuth | None = None  # a Vertex AI credential: its secret is a token from google-auth, not a key
    entra: EntraAuth | None = None  # an Azure OpenAI credential: its secret is an Entra ID token from azure-identity
    aws: AwsAuth | None = None  # a Bedrock credential: its secret is AWS keys that sign the request (SigV4)

    @property
    def route(self) -> str:
        return self.upstream or self.provider

    @property
    def refreshable(self) -> bool:
        """Its secret is a token fetched for it (a login's, or Google's), which a 401 refreshes once."""
        return self.account is not None or self.google is not None


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How long upstream failures keep a credential out of rotation, in seconds."""

    backoff_base: float = 1.0
    backoff_max: float = 300.0
    server_error_cooldown: float = 5.0
    auth_suspension: float = 1800.0
    not_found_suspension: float = 3600.0
    probe_interval: float = 60.0  # a suspended or failing credential is probed this often (0: never)


MAX_FAILOVER_ATTEMPTS = 10  # failover.attempts at most: each attempt costs the client time


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    """Same-request failover: how many attempts one client request may make, and which answers retry it."""

    attempts: int = 3  # 1: no failover
    statuses: tuple[int, ...] = (429, 500, 502, 503, 504, 529)  # besides connect failures, resets and stalls
    first_byte_timeout: float = 300.0  # no response headers by then: the attempt stalled (non-streamed answers
    # arrive whole, so this bounds the longest answer too)


# console.usage_store: where the web console's usage figures are kept (else a SQLite file's path).
USAGE_STORE_AUTO, USAGE_STORE_OFF, USAGE_STORE_REDIS, USAGE_STORE_SQLITE = "auto", "off", "redis", "sqlite"


@dataclass(frozen=True, slots=True)
class Settings:
    listen: Address
    processor: Address
    admin: Address
    providers: Mapping[str, ProviderSpec]
    credentials: tuple[Credential, ...]
    models: tuple[ModelSpec, ...]
    aliases: Mapping[str, str]
    fallbacks: Mapping[str, tuple[str, ...]]
    strategy: str
    health: HealthPolicy
    failover: FailoverPolicy = FailoverPolicy()
    upstream_timeout: float = 600.0
    state_redis_url: str | None = field(default=None, repr=False)  # state.redis.url (may hold a password)
    state_prefix: str = "extproc:"  # state.redis.prefix: every key and channel starts with it
    state_key: str | None = field(default=None, repr=False)  # state.redis.key: encrypts logins at rest
    clients: ClientPolicy = ClientPolicy()  # clients.keys: who may use the gateway
    shutdown_grace: float = 30.0  # on SIGTERM, how long open requests and streams may take to finish (s)
    relay: Address = Address("127.0.0.1", 50052)  # the processor's stream relay (processor.relay_port)
    workers: int = 1  # processor.workers: processes serving Envoy; worker i listens on port + i, relay + i
    admission: AdmissionPolicy = AdmissionPolicy()  # processor.max_wait, max_requests: refuse at once when busy
    accounting: bool = True  # read usage from answers: usage records, cost, budgets, token metrics
    metrics: Address | None = Address("127.0.0.1", 9464)  # where /metrics is served; None: nowhere
    log_format: str = "json"  # log.format: json lines, or text
    log_bodies: bool = False  # log.bodies: prompts and answers in the log (secrets still masked)
    fast_path: bool = True  # fast_path: Envoy routes requests that need nothing from Python by itself
    tracing: TracingPolicy | None = None  # tracing: OpenTelemetry spans to an OTLP collector; None: no tracer at all
    fast_routes: str | None = None  # fast_routes: the directory of the routes file Envoy watches (`extproc up`
    # makes one when unset; an Envoy config rendered ahead names the one its processor writes)

    def worker(self, index: int) -> Settings:
        """The settings worker `index` runs with: its own processor and relay ports."""
        return replace(self, processor=Address(self.processor.host, self.processor.port + index),
                       relay=Address(self.relay.host, self.relay.port + index), workers=1)

    @property
    def processor_addresses(self) -> tuple[Address, ...]:
        return tuple(Address(self.processor.host, self.processor.port + i) for i in range(self.workers))

    @property
    def relay_addresses(self) -> tuple[Address, ...]:
        return tuple(Address(self.relay.host, self.relay.port + i) for i in range(self.workers))
    max_request_bytes: int = 32 * 1024 * 1024
    max_connections: int = 10000
    log_level: str = "info"
    envoy_log_level: str = "warning"
    envoy_concurrency: int | None = None
    ca_file: str = DEFAULT_CA_FILE
    flows: Mapping[str, Flow] = field(default_factory=dict)  # OAuth logins
    auth_store: str | None = None  # the accounts file; None: the user's config directory
    admin_token: str | None = field(default=None, repr=False)  # guards the /auth API
    refresh_skew: float = 300.0  # refresh a login's token this long before it expires
    rotate_at: float = 0.95  # a subscription window this full: use that login only when nothing else can serve
    processor_token: str | None = field(default=None, repr=False)  # Envoy presents it on every ext_proc stream
    source: str | None = None  # the config file; None: the embedded default config
    usage_store: str = USAGE_STORE_AUTO  # console.usage_store: auto, off, redis, sqlite, or a SQLite file's path
    named_providers: frozenset[str] = frozenset()  # those the config's `providers` names (start-up speaks of each)

