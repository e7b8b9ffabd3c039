"""Resolution: (request, registry, health, now) → which model, provider and credential serve it.

Order: exact id or provider/id → alias → the model's explicit fallback chain → the strategy.
A pure function: it reads health but never changes it.

A request is answered by the model it names, or by one the config puts in its place: an alias, the model's
`fallbacks` chain, or a `strategy` the config sets. The default strategy is `none` (config), because another
model is not the same answer: it differs in quality, behaviour, context and price, and a client that names a
model (pinned in code, under evaluation, billed per model) must not get a 200 from a neighbour it never chose.
The model itself is still served wherever it can be: on each of its credentials, and by a provider of another
API that serves it (translated). When nothing may serve, the client is told so (503, with retry-after when a
recovery is known).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from extproc.core.catalog import ModelSpec
from extproc.core.errors import ClientError
from extproc.core.flows import OwnClient
from extproc.core.health import Block, HealthView
from extproc.core.providers import Api, ProviderSpec
from extproc.core.registry import Registry
from extproc.core.settings import Credential
from extproc.core.view import RequestView


@dataclass(frozen=True, slots=True)
class Decision:
    requested: str
    model: ModelSpec
    provider: ProviderSpec
    credential: Credential
    reason: str  # direct | alias | fallback
    strategy: str | None = None  # for fallbacks: "chain" or the strategy's name
    endpoint: str = "chat"  # the client endpoint it was resolved for
    at: float = 0.0  # when it was made: responses to it are judged against cooldowns set since
    listed: bool = True  # a model the registry knows (not one passed through by name): its 404 means absence

    @property
    def route(self) -> str:
        """Why this candidate: direct, alias or fallback:<strategy> (the `x-extproc-route` header, the usage
        record's `route`)."""
        return f"{self.reason}:{self.strategy}" if self.strategy else self.reason


def resolve(req: RequestView, registry: Registry, health: HealthView, now: float, turn: int = 0) -> Decision:
    """The first of `candidates`: `turn` spreads load over several healthy credentials (round robin by request
    count)."""
    return candidates(req, registry, health, now, turn)[0]


def candidates(req: RequestView, registry: Registry, health: HealthView, now: float, turn: int = 0,
         limit: int = 1) -> list[Decision]:
    """Up to `limit` decisions, in the order a request's attempts try them: the first is what `resolve`
    answers; then the same model on its other healthy credentials; then the fallbacks, each on theirs."""
    suitable, reason = _suitable(req, registry)
    blocks: list[Block] = []
    found: list[Decision] = []

    def take(model: ModelSpec, why: str, strategy: str | None) -> bool:
        for cred in _usable(model, req, registry, health, now, turn, blocks):
            found.append(Decision(req.model, model, registry.providers[cred.route], cred, why, strategy,
                                  req.endpoint, now, bool(registry.lookup(model.qualified))))
            if len(found) == limit:
                return True
        return False

    for model in suitable:
        if take(model, reason, None):
            return found
    primary = suitable[0]
    tried = {m.qualified for m in suitable}
    for strategy, model in _fallbacks(req, primary, registry):
        if model.qualified in tried:
            continue
        tried.add(model.qualified)
        if take(model, "fallback", strategy):
            return found
    if not found:
        raise _unavailable(req, primary, registry, blocks, now)
    return found


def _suitable(req: RequestView, registry: Registry) -> tuple[list[ModelSpec], str]:
    """The models a request names that can take it as it is, or the ClientError that says why none can."""
    primaries, reason = _targets(req.model, registry, req.mode)
    if not primaries:
        owner = _prefix_owner(req, registry)
        if owner is not None:  # e.g. a dated Claude id the catalog lacks: its provider's naming says whose it is
            primaries = [ModelSpec(id=req.model, provider=owner, mode=req.mode)]
    if not primaries:
        raise ClientError(404, "model_not_found",
                          f"The model '{req.model}' does not exist on this gateway; GET /v1/models lists the models.",
                          param="model")
    compatible = [m for m in primaries if _reachable(m, req, registry)]
    if not compatible:
        owner = primaries[0].provider
        raise ClientError(400, "unsupported_api",
                          f"The model '{req.model}' is served by '{owner}', which does not accept "
                          f"{_describe_endpoint(req)} requests; send it through that provider's API.",
                          param="model")
    suitable = [m for m in compatible if m.mode == req.mode]
    if not suitable:
        raise ClientError(400, "unsupported_model",
                          f"The model '{req.model}' is a {compatible[0].mode} model and cannot serve "
                          f"{req.mode} requests.", param="model")
    return suitable, reason


def fallback_candidates(req: RequestView, primary: ModelSpec, registry: Registry) -> Iterator[tuple[str, ModelSpec]]:
    """Fallbacks in the order resolution tries them, availability aside."""
    return _fallbacks(req, primary, registry)


def _targets(name: str, registry: Registry, mode: str = "chat") -> tuple[list[ModelSpec], str]:
    direct = registry.lookup(name)
    if direct:
        return list(direct), "direct"
    if name in registry.aliases:
        return list(registry.lookup(registry.aliases[name])), "alias"
    provider, sep, model_id = name.partition("/")
    if sep and provider in registry.providers and model_id:
        # A model the catalog does not know, on a provider it does: pass it through as asked.
        return [ModelSpec(id=model_id, provider=provider, mode=mode)], "direct"
    return [], "direct"


def _describe_endpoint(req: RequestView) -> str:
    return req.api.value if req.endpoint in (req.api.value, "") else f"{req.api.value} {req.endpoint}"


def _prefix_owner(req: RequestView, registry: Registry) -> str | None:
    """The one provider whose model-id prefixes (data) claim this unknown name and that takes the request."""
    owners = [p.name for p in registry.providers.values()
              if p.model_prefixes and req.model.startswith(p.model_prefixes) and p.speaks(req.api, req.endpoint)]
    # A name of another API's family (the Anthropic SDK asking for gpt-6-luna) goes there, translated.
    if not owners:
        owners = [p.name for p in registry.providers.values()
                  if p.model_prefixes and req.model.startswith(p.model_prefixes) and p.target(req.api, req.endpoint)]
    return owners[0] if len(owners) == 1 else None


def _chain(req: RequestView, primary: ModelSpec, registry: Registry) -> tuple[str, ...]:
    """The model's explicit fallbacks, keyed by the name asked for, its id or provider/id."""
    return registry.fallbacks.get(req.model) or registry.fallbacks.get(primary.id) \
        or registry.fallbacks.get(primary.qualified) or ()


def _fallbacks(req: RequestView, primary: ModelSpec, registry: Registry) -> Iterator[tuple[str, ModelSpec]]:
    for name in _chain(req, primary, registry):
        for model in _targets(name, registry, req.mode)[0]:
            if _can_serve(model, req, registry) and (model.provider == primary.provider or not req.same_provider):
                yield "chain", model
    strategy = registry.strategy
    if strategy == "none":
        return
    same_provider = strategy == "same-provider" or req.same_provider
    # Ranked once per registry for its own models; a name a client made up is ranked afresh (never kept).
    ranked = registry.memo(("ranked", primary.qualified), lambda: _ranked(primary, registry)) \
        if registry.lookup(primary.qualified) else _ranked(primary, registry)
    # Models reached in the request's own API first; another API's (translated) only after them.
    translated = []
    for model in ranked:
        if (not same_provider or model.provider == primary.provider) and _can_serve(model, req, registry):
            if _native(model, req, registry):
                yield strategy, model
            else:
                translated.append(model)
    for model in translated:
        yield strategy, model


def _native(model: ModelSpec, req: RequestView, registry: Registry) -> bool:
    listed = model.endpoints
    return registry.providers[model.provider].speaks(req.api, req.endpoint, listed) or any(
        registry.providers[c.route].speaks(req.api, req.endpoint, listed) for c in registry.credentials_for(model))


def _ranked(primary: ModelSpec, registry: Registry) -> tuple[ModelSpec, ...]:
    """Every model the strategy may fall back to from `primary`, best first (what a request can use aside)."""
    pool = [m for m in registry.models
            if m.status != "deprecated" and not m.discovered and m.qualified != primary.qualified]
    if registry.strategy == "cost-optimized":
        pool.sort(key=lambda m: (m.blended_price, -m.created_ts))
    else:
        pool.sort(key=lambda m: (m.provider != primary.provider, _price_distance(m, primary), -m.created_ts))
    return tuple(pool)


def _can_serve(model: ModelSpec, req: RequestView, registry: Registry) -> bool:
    if model.mode != req.mode or not _reachable(model, req, registry):
        return False
    if not req.needs <= model.capabilities:
        return False
    if model.context_window:
        wanted = req.input_tokens + (req.max_output_tokens or 0)
        if wanted > model.context_window:
            return False
    return not (req.max_output_tokens and model.max_output_tokens
                and req.max_output_tokens > model.max_output_tokens)


def takes(provider: ProviderSpec, model: ModelSpec, req: RequestView) -> bool:
    """Whether a request can go to this provider for this model: in its own API, or translated (chat only:
    Gemini's embedContent shares the `gemini` endpoint name with generateContent, but is never translated);
    either way only to an endpoint the model is served on, when its provider's list names them (Copilot)."""
    if provider.speaks(req.api, req.endpoint, model.endpoints):
        return True
    return model.translation and not req.same_provider and req.mode == "chat" \
        and provider.target(req.api, req.endpoint, model.endpoints) is not None


def serves_api(model: ModelSpec, registry: Registry, api: Api, endpoint: str, translated: bool = True) -> bool:
    """Whether a client of this API endpoint can be served this model: in its own API, or (`translated`) in
    another's, as resolution would."""
    req = RequestView(api, model.qualified, model.mode, endpoint=endpoint)
    return _reachable(model, req, registry) if translated else _native(model, req, registry)


def _reachable(model: ModelSpec, req: RequestView, registry: Registry) -> bool:
    """Whether the model's provider, or an upstream one of its credentials goes to, takes this request."""
    if takes(registry.providers[model.provider], model, req):
        return True
    return any(takes(registry.providers[c.route], model, req) for c in registry.credentials_for(model))


def _not_for_client(own: OwnClient) -> str:
    return (f"the subscription login that serves it takes {own.name}'s own requests only; send it from {own.name}, "
            f"add an API key, or set `{own.setting}: send` to send other clients' requests on the login as they "
            "are (the vendor may bill them as extra usage)")


def _price_distance(model: ModelSpec, primary: ModelSpec) -> float:
    """How far apart two models sit in price tier (log scale), a proxy for comparable quality."""
    return abs(math.log1p(model.blended_price) - math.log1p(primary.blended_price))


def _usable(model: ModelSpec, req: RequestView, registry: Registry, health: HealthView, now: float, turn: int,
            blocks: list[Block]) -> list[Credential]:
    """The model's healthy credentials that take this request, in the order its provider's rotation says:
    starting at the `turn`-th (round-robin), or always from the first (fill-first: spill over only when
    the first cannot serve)."""
    usable: list[Credential] = []
    for cred in registry.credentials_for(model):
        if not takes(registry.providers[cred.route], model, req):
            continue  # e.g. a Codex login serves OpenAI models through the Responses API only (untranslated)
        own = cred.only_client
        if own is not None and not req.counts_tokens and not req.system_head.startswith(own.system_starts):
            blocks.append(Block("client", math.inf, _not_for_client(own)))
            continue  # a Claude Pro/Max login, asked by another client (the operator did not allow it)
        block = health.blocked(cred.id, model.id, now, req.endpoint)
        if block is None:
            usable.append(cred)
        else:
            blocks.append(block)
    round_robin = registry.providers[model.provider].rotation == "round-robin"
    start = turn % len(usable) if usable and round_robin else 0
    rotated = usable[start:] + usable[:start]
    # A login whose subscription window is nearly full goes last: traffic moves before its 429. One that takes
    # the request in its own API goes before one it must be translated for.
    return sorted(rotated, key=lambda c: (health.strained(c.id, now),
                                          not registry.providers[c.route].speaks(req.api, req.endpoint,
                                                                                 model.endpoints)))


def _unavailable(req: RequestView, primary: ModelSpec, registry: Registry, blocks: Iterable[Block],
                 now: float) -> ClientError:
    blocks = list(blocks)
    refused = [b for b in blocks if b.kind == "client"]
    blocks = [b for b in blocks if b.kind != "client"]
    if refused and not blocks:
        return ClientError(403, "login_not_for_client", f"The model '{req.model}' cannot serve this request: "
                           f"{refused[0].reason}.", retryable=False)
    # Say which: a fallback the config names that cannot take this request, or none named at all.
    stand_in = "no fallback can take the request" if registry.strategy != "none" or _chain(req, primary, registry) \
        else "the config names no fallback for it"
    recoveries = [b.until for b in blocks if math.isfinite(b.until)]
    if blocks:
        soonest = min(blocks, key=lambda b: b.until)
        reason = soonest.reason if soonest.kind == "cooldown" else f"suspended: {soonest.reason}"
        if recoveries:
            retry_after = max(1, math.ceil(min(recoveries) - now))
            return ClientError(503, "model_unavailable",
                               f"The model '{req.model}' is unavailable ({reason}) and {stand_in}; retry in "
                               f"{retry_after}s.", retry_after=retry_after)
        return ClientError(503, "model_unavailable",
                           f"The model '{req.model}' is unavailable ({reason}) and {stand_in}.",
                           retryable=False)
    provider = registry.providers[primary.provider]
    hint = f" (the default config reads it from {provider.api_key_env})" if provider.api_key_env else ""
    return ClientError(503, "no_credentials",
                       f"No credential can serve '{req.model}': add providers.{primary.provider}.api_key to the "
                       f"config{hint} or log in to the provider, and {stand_in}.",
                       retryable=False)
