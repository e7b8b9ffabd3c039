"""Probing: an API key suspended after a 401 is asked for its provider's model list (a call that costs no
tokens) every `health.probe_interval`; when the provider takes it again, it is back in rotation at once
instead of after `health.auth_suspension`. The network edge of health; httpx is injected."""

from __future__ import annotations

import asyncio
import logging

import httpx

from extproc.core.providers import ProviderSpec
from extproc.core.settings import Credential
from extproc.discovery.refresh import list_request
from extproc.runtime import Runtime

log = logging.getLogger("extproc.health")


async def probe_once(runtime: Runtime, client: httpx.AsyncClient) -> list[str]:
    """Probe every suspended API key whose provider lists its models; returns the ids taken back."""
    registry, health = runtime.current.registry, runtime.health
    suspended = health.suspended_ids(runtime.clock())
    keys = [c for creds in registry.credentials.values() for c in creds if c.id in suspended and c.account is None]
    probes = [(c, registry.providers[c.route]) for c in keys if registry.providers[c.route].discovery is not None]
    answers = await asyncio.gather(*(_answers(client, provider, cred) for cred, provider in probes))
    back = [cred.id for (cred, _), ok in zip(probes, answers, strict=True) if ok]
    for cred_id in back:
        health.reinstate(cred_id)
        log.info("probe: credential %s is taken again by its provider; back in rotation", cred_id)
    return back


async def _answers(client: httpx.AsyncClient, provider: ProviderSpec, cred: Credential) -> bool:
    assert provider.discovery is not None
    url, headers = list_request(provider, cred)
    try:
        response = await client.get(url, headers=headers, timeout=provider.discovery.timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def run(runtime: Runtime, client: httpx.AsyncClient) -> None:
    interval = runtime.current.settings.health.probe_interval
    if not interval:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await probe_once(runtime, client)
        except Exception:
            log.exception("probing failed; trying again at the next interval")
