"""Header names the processor and the Envoy config it renders agree on."""

PROVIDER_HEADER = "x-extproc-provider"  # the provider the processor chose; Envoy routes on it
MODEL_HEADER = "x-extproc-model"  # the model that served the request
ROUTE_HEADER = "x-extproc-route"  # why: direct, alias, fallback:<strategy>
PROCESSOR_TOKEN_HEADER = "x-extproc-token"  # Envoy presents it on every ext_proc stream
ROLE_HEADER = "x-extproc-role"  # gRPC metadata: which ext_proc filter a stream comes from
ATTEMPT_ROLE = "attempt"  # the per-attempt filter in the provider cluster's chain
REAUTH_ROLE = "reauth"  # the filter that retries a login's refused attempt with a refreshed token
STREAM_HEADER = "x-extproc-stream"  # on an attempt whose answer streams: it goes through the stream relay
RELAY_HEADERS = ("x-extproc-relay-token",)  # Envoy → the relay: the processor token
LOGIN_HEADER = "x-extproc-login"  # on an attempt with a login's token: the credential id (a 401 is retried)
HANDLED_HEADER = "x-extproc-handled"  # the router-level answer made the first attempt: its processor skips it
API_HEADER = "x-extproc-api"  # the client's API family: Envoy's own replies behind the attempts use its envelope
ATTEMPTS_HEADER = "x-extproc-attempts"  # on the response: how many attempts the request took
RESPONSE_HEADERS = (PROVIDER_HEADER, MODEL_HEADER, ROUTE_HEADER)  # copied to the client's response by Envoy
ATTEMPT_HEADER = "x-extproc-attempt"  # who served an attempt (ids, never secrets): read back from access logs
# Envoy's request headers that change retries and timeouts: never the client's to set.
ENVOY_REQUEST_HEADERS = ("x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-retriable-status-codes",
                         "x-envoy-retriable-header-names", "x-envoy-upstream-rq-timeout-ms",
                         "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-hedge-on-per-try-timeout",
                         "x-envoy-max-retries", "x-envoy-upstream-alt-stat-name")
ATTEMPT_COUNT_HEADER = "x-envoy-attempt-count"  # Envoy's: which attempt of the request this is (1, 2, …)
ACCOUNT_HEADER = "x-extproc-account"  # router level → the relay: when the request came, its client key, its model
UPSTREAM_API_HEADER = "x-extproc-upstream-api"  # on a translated attempt: the API it leaves in (the relay reads it)
LEARN_HEADER = "x-extproc-learn"  # the access log reports this attempt even when it succeeds
FAILURE_HEADER = "x-extproc-failure"  # on Envoy's own reply to an attempt that got no answer: what happened
PLAN_HEADER = "x-extproc-plan"  # a fast route's plan for the attempts after its first (no router-level answer)
CLIENT_HEADER = "x-extproc-client"  # on a fast request: the name of the client key Envoy checked
ENDPOINTS_HEADER = "x-extproc-endpoints"  # a fast route's endpoint list for the override_host load balancer
INTERNAL_HEADERS = (PROVIDER_HEADER, MODEL_HEADER, ROUTE_HEADER, HANDLED_HEADER, ATTEMPT_HEADER, LEARN_HEADER,
                    PLAN_HEADER, ENDPOINTS_HEADER, CLIENT_HEADER)
# On a fast route that joins a login's values to a client's header (merge_headers.lua): the client's own value,
# kept under this prefix for the attempts after the first, which must send it as the client did.
CLIENT_VALUE_PREFIX = "x-extproc-client-value-"


def client_value_header(name: str) -> str:
    return CLIENT_VALUE_PREFIX + name


def header_values(value: str | None) -> list[str]:
    """The values of a comma-separated header (anthropic-beta's flags), trimmed, empty ones left out."""
    return [v for v in (x.strip() for x in (value or "").split(",")) if v]
