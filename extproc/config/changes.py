"""What a reloaded configuration changes, and which of it the running gateway cannot take. Pure.

The processor takes anything it reads from the runtime snapshot: models, aliases, fallbacks, strategy,
health, failover, client keys, provider keys and every provider setting Envoy does not hold. What Envoy
holds (its listeners, clusters and routes: a new provider, a changed base URL) and what processes bind at
start (ports, the processor token, the stores) needs a restart; a reload that touches any of it is not
applied at all, so the gateway never runs half of one configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from extproc.bootstrap import build_bootstrap
from extproc.core.settings import Settings

# Settings fields bound when processes start → the config key a user changed.
_AT_START = {
    "listen": "listen", "processor": "processor", "relay": "processor.relay_port", "workers": "processor.workers",
    "processor_token": "processor.token", "admin": "admin", "state_redis_url": "state.redis.url",
    "state_prefix": "state.redis.prefix", "state_key": "state.redis.key", "auth_store": "auth.store",
    "admin_token": "auth.admin_token", "refresh_skew": "auth.refresh_skew", "flows": "oauth",
    "log_level": "log_level", "envoy_log_level": "envoy.log_level", "envoy_concurrency": "envoy.concurrency",
    "ca_file": "ca_file", "max_request_bytes": "max_request_bytes", "max_connections": "max_connections",
    "upstream_timeout": "upstream_timeout", "shutdown_grace": "shutdown.grace", "accounting": "accounting",
    "metrics": "metrics", "log_format": "log.format", "log_bodies": "log.bodies",
    "fast_routes": "fast_routes", "usage_store": "console.usage_store", "tracing": "tracing",
}
# Settings fields the snapshot carries → their config key.
_LIVE = {
    "providers": "providers", "credentials": "providers (API keys)", "models": "models", "aliases": "aliases",
    "fallbacks": "fallbacks", "strategy": "strategy", "health": "health", "failover": "failover",
    "clients": "clients", "rotate_at": "auth.rotate_at", "fast_path": "fast_path",
    "admission": "processor.max_wait, processor.max_requests",
}


@dataclass(frozen=True, slots=True)
class ConfigChange:
    changed: tuple[str, ...] = ()  # config keys whose values differ
    needs_restart: tuple[str, ...] = ()  # of what changed, what only a restart applies

    @property
    def applies(self) -> bool:
        return bool(self.changed) and not self.needs_restart


def compare(running: Settings, new: Settings) -> ConfigChange:
    bound = [key for name, key in _AT_START.items() if getattr(running, name) != getattr(new, name)]
    live = [key for name, key in _LIVE.items() if getattr(running, name) != getattr(new, name)]
    envoy = _envoy_changes(running, new) if "providers" in live else []
    return ConfigChange(tuple(dict.fromkeys(bound + live)), tuple(dict.fromkeys(bound + envoy)))


def _envoy_changes(running: Settings, new: Settings) -> list[str]:
    """The providers whose Envoy listeners, clusters or routes would differ (everything else held equal)."""
    held = replace(new, **{name: getattr(running, name) for name in (*_AT_START, "failover")})
    if build_bootstrap(held) == build_bootstrap(running):
        return []
    old, now = running.providers, new.providers
    names = sorted(n for n in old.keys() | now.keys() if old.get(n) != now.get(n))
    return [f"providers.{n} ({'added' if n not in old else 'removed' if n not in now else 'Envoy routes to it'})"
            for n in names] or ["providers (Envoy's routes)"]
