"""The Envoy bootstrap, built as plain data from Settings (pure functions), printed as YAML.

Envoy does what it can natively: one cluster per provider, routing on the provider header the processor
sets, response headers that tell the client what served it, the client's error envelope on Envoy's own
failures, and failing closed when the processor is down. One module per part: listeners (and the filter
chain), routes, clusters, local replies; the Lua scripts are package data.
"""

from __future__ import annotations

from typing import Any

import yaml

from extproc.bootstrap.clusters import processor_cluster, provider_cluster, relay_cluster
from extproc.bootstrap.failover import attempts_cluster, provider_listener
from extproc.bootstrap.listeners import listener
from extproc.bootstrap.local_replies import local_reply_config
from extproc.bootstrap.names import PROCESSOR_CLUSTER, T, provider_cluster_name, socket
from extproc.bootstrap.tracing import collector_cluster
from extproc.core.settings import Settings


def render_bootstrap(settings: Settings) -> str:
    return yaml.safe_dump(build_bootstrap(settings), sort_keys=False, width=120)


def build_bootstrap(settings: Settings) -> dict[str, Any]:
    inner_replies = local_reply_config(by_api_header=True)
    return {
        "node": {"id": "extproc", "cluster": "extproc"},  # a routes file (the fast path) is a config source
        "admin": {"address": socket(settings.admin.host, settings.admin.port)},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": T + "extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": settings.max_connections,
            },
        }]},
        "static_resources": {
            "listeners": [listener(settings)]
            + [provider_listener(p, settings, inner_replies) for p in settings.providers.values()],
            "clusters": [processor_cluster(settings), attempts_cluster(settings), relay_cluster(settings)]
            + [provider_cluster(p, settings) for p in settings.providers.values()] + collector_cluster(settings),
        },
        "bootstrap_extensions": [{"name": "envoy.bootstrap.internal_listener", "typed_config": {
            "@type": T + "extensions.bootstrap.internal_listener.v3.InternalListener"}}],
    }


__all__ = ["PROCESSOR_CLUSTER", "build_bootstrap", "provider_cluster_name", "render_bootstrap"]
