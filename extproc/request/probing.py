"""Probing: a credential that is suspended (a 401, a login whose token could not be had for now) or cooling
after server errors is asked, every `health.probe_interval`, for a call that costs no tokens (its provider's
`probe`: the model list by default). When the provider takes it, it is back in rotation at once instead of
when its block ends; a login's answer also re-reads its subscription windows. API keys and logins alike;
`providers.X.probe: false` turns it off for a provider. The network edge of health; httpx is injected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import httpx

from extproc.core.errors import CredentialUnavailable
from extproc.core.providers import ProviderSpec
from extproc.core.secrets import SecretSource, StaticSecrets
from extproc.core.settings import Credential
from extproc.core.windows import read_windows
from extproc.request.mutation import credential_headers, merge_header_values
from extproc.runtime import Runtime

log = logging.getLogger("extproc.health")


async def probe_once(runtime: Runtime, client: httpx.AsyncClient, secrets: SecretSource | None = None) -> list[str]:
    """Probe every credential a probe could bring back; returns the ids taken back."""
    secrets = secrets or StaticSecrets()
    registry, health = runtime.current.registry, runtime.health
    targets = health.probe_targets(runtime.clock())
    probes = [(c, registry.providers[c.route]) for creds in registry.credentials.values() for c in creds
              if c.id in targets and c.route in registry.providers and registry.providers[c.route].probe is not None]
    answers = await asyncio.gather(*(_answer(client, secrets, provider, cred) for cred, provider in probes))
    back = []
    for (cred, _), answer in zip(probes, answers, strict=True):
        if answer is not None and _learn(runtime, secrets, cred, *answer):
            back.append(cred.id)
            log.info("probe: credential %s is taken again by its provider; back in rotation", cred.id)
    return back


def _learn(runtime: Runtime, secrets: SecretSource, cred: Credential, status: int,
           headers: Mapping[str, str]) -> bool:
    """What a probe's answer says: True when the credential is back (a 2xx)."""
    health, now = runtime.health, runtime.clock()
    if cred.windows is not None:
        state = read_windows(cred.windows, headers)
        if state is not None:
            secrets.note_windows(cred, state)
            health.window(cred.id, state, now, runtime.current.settings.rotate_at)
    if status == 401 and cred.refreshable:
        secrets.invalidate(cred)  # the next probe (or request) refreshes the token first
    if not 200 <= status < 300:
        return False
    health.recovered(cred.id)
    secrets.confirm(cred)
    return True


async def _answer(client: httpx.AsyncClient, secrets: SecretSource, provider: ProviderSpec,
                  cred: Credential) -> tuple[int, Mapping[str, str]] | None:
    probe = provider.probe
    assert probe is not None
    try:
        secret = await secrets.secret(cred)
    except CredentialUnavailable:
        return None  # the login cannot serve yet: nothing to ask with
    headers = {**provider.headers, **cred.headers, **credential_headers(provider, probe.api, cred, secret)}
    for name, value in cred.merge_headers.items():
        headers[name] = merge_header_values(provider.headers.get(name), value)
    if probe.body is not None:
        headers["content-type"] = "application/json"
    url = provider.base_url.rstrip("/") + probe.path
    try:
        response = await client.request(probe.method, url, headers=headers, content=probe.body,
                                        timeout=probe.timeout)
    except httpx.HTTPError:
        return None
    return response.status_code, response.headers


async def run(runtime: Runtime, client: httpx.AsyncClient, secrets: SecretSource | None = None) -> None:
    interval = runtime.current.settings.health.probe_interval
    if not interval:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await probe_once(runtime, client, secrets)
        except Exception:
            log.exception("probing failed; trying again at the next interval")
