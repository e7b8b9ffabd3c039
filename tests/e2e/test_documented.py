"""What the docs promise and no other test reads, through the real stack: the fast path's routes file is 0600,
the metrics of fallbacks, failed attempts, cooldowns and suspensions count their events, `log.bodies` logs what
it says (masked) and nothing without it, and a stored conversation's refusals reach the client in its envelope."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests import secrets_registry
from tests.conftest import Stack
from tests.fakes import FakeProvider
from tests.waits import eventually

CHAT = [{"role": "user", "content": "hi"}]


def _model(model_id: str, provider: str) -> dict[str, Any]:
    return {"id": model_id, "provider": provider, "context_window": 100000, "input_price": 1.0, "output_price": 4.0,
            "capabilities": ["tools", "streaming"]}


def _openai_like(fake: FakeProvider, key: str) -> dict[str, Any]:
    return {"base_url": fake.base_url, "apis": {"openai": "/v1"}, "api_key": key}


def metric(stack: Stack, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`, from the stack's /metrics."""
    found = 0.0
    for family in text_string_to_metric_families(httpx.get(stack.metrics_url).text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                found += sample.value
    return found


# ---------------------------------------------------------------- the fast path's routes file

def _watched_routes_file(stack: Stack) -> Path:
    """The routes file this Envoy watches, as its own admin reports it (the bootstrap's path_config_source)."""
    admin = yaml.safe_load(stack.config_path.read_text())["admin"]["port"]
    dump = httpx.get(f"http://127.0.0.1:{admin}/config_dump").json()

    def paths(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            source = node.get("path_config_source")
            if isinstance(source, dict) and "path" in source:
                yield str(source["path"])
            for value in node.values():
                yield from paths(value)
        elif isinstance(node, list):
            for value in node:
                yield from paths(value)

    found = sorted(set(paths(dump)))
    assert len(found) == 1, f"Envoy watches {len(found)} routes files"
    return Path(found[0])


def test_the_routes_file_envoy_watches_is_0600_in_a_0700_directory_after_every_rewrite(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    key = "k-routes-file-0123456789"
    stack = make_stack({"discovery": False, "strategy": "none",
                        "providers": {"fp": _openai_like(fakes["openai"], key)}, "models": [_model("fp-model", "fp")]})
    routes = _watched_routes_file(stack)
    assert stat.S_IMODE(routes.stat().st_mode) == 0o600  # as written at start, before any route
    assert stat.S_IMODE(routes.parent.stat().st_mode) == 0o700
    first = routes.stat().st_ino
    body = {"model": "fp-model", "messages": CHAT}
    assert httpx.post(stack.url + "/v1/chat/completions", json=body).status_code == 200
    eventually(lambda: routes.stat().st_ino != first and "fp-model" in routes.read_text(),
               "the routes file is rewritten with a route for fp-model")
    holds_key = key in routes.read_text()  # the file holds the key Envoy sends: why it must be 0600
    assert holds_key, "the rewritten routes file carries no credential"
    assert stat.S_IMODE(routes.stat().st_mode) == 0o600
    assert routes.stat().st_uid == os.getuid()
    assert not [p.name for p in routes.parent.iterdir() if p.name != routes.name]  # no partial file left readable


# ---------------------------------------------------------------- metrics of health and failover events

def test_fallback_failover_cooldown_and_suspension_metrics_count_their_events(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack({
        "discovery": False, "strategy": "none",
        "providers": {"mx-primary": _openai_like(fakes["openai"], "k-mx-primary"),
                      "mx-backup": _openai_like(fakes["groq"], "k-mx-backup"),
                      "mx-revoked": _openai_like(fakes["mistral"], "k-mx-revoked")},
        "models": [_model("mx-primary-model", "mx-primary"), _model("mx-backup-model", "mx-backup"),
                   _model("mx-revoked-model", "mx-revoked")],
        "fallbacks": {"mx-primary-model": ["mx-backup-model"]},
        "health": {"auth_suspension": 600}})
    names = ("extproc_fallbacks_total", "extproc_failover_attempts_total", "extproc_cooldowns_total",
             "extproc_suspensions_total")
    assert {n: metric(stack, n) for n in names} == dict.fromkeys(names, 0.0)  # nothing has happened yet

    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    fakes["openai"].script(429, {"retry-after": "60"})
    raw = client.chat.completions.with_raw_response.create(model="mx-primary-model", messages=CHAT)  # type: ignore[arg-type]
    assert (raw.headers["x-extproc-model"], raw.headers["x-extproc-attempts"]) == ("mx-backup-model", "2")
    eventually(lambda: metric(stack, "extproc_cooldowns_total", provider="mx-primary",
                              credential="mx-primary:key1") == 1, "the cooldown of mx-primary:key1 is counted")
    assert metric(stack, "extproc_failover_attempts_total", reason="429", provider="mx-primary") == 1
    assert metric(stack, "extproc_failover_attempts_total") == 1  # the backup's success is no failed attempt
    eventually(lambda: metric(stack, "extproc_fallbacks_total") == 1, "the request the fallback served is counted")

    raw = client.chat.completions.with_raw_response.create(model="mx-primary-model", messages=CHAT)  # type: ignore[arg-type]
    assert (raw.headers["x-extproc-route"], raw.headers["x-extproc-attempts"]) == ("fallback:chain", "1")
    eventually(lambda: metric(stack, "extproc_fallbacks_total", reason="fallback:chain") >= 1,
               "a request planned straight to the fallback is counted under its reason")
    eventually(lambda: metric(stack, "extproc_fallbacks_total") == 2, "each fallback request is counted once")
    assert len(fakes["openai"].requests) == 1  # the cooling credential was not tried again

    fakes["mistral"].script(401)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="mx-revoked-model", messages=CHAT)  # type: ignore[arg-type]
    eventually(lambda: metric(stack, "extproc_suspensions_total", provider="mx-revoked",
                              credential="mx-revoked:key1") == 1, "the suspension of mx-revoked:key1 is counted")
    assert metric(stack, "extproc_failover_attempts_total", reason="401", provider="mx-revoked") == 1
    assert metric(stack, "extproc_cooldowns_total") == 1 and metric(stack, "extproc_suspensions_total") == 1


# ---------------------------------------------------------------- log.bodies

PROMPT = "tell me about lighthouses of the northern coast 4e1d"
PASTED_KEY = "sk-proj-" + "Zq8" * 12  # a key a user pasted into a prompt: shown only as a stub
PASTED_TOKEN = "Bearer " + "tokPart" * 6
for _kind, _value in (("prompt key", PASTED_KEY), ("prompt bearer token", PASTED_TOKEN.split()[1])):
    secrets_registry.secret(_kind, _value)


def _bodies_config(fakes: dict[str, FakeProvider], **extra: Any) -> dict[str, Any]:
    return {"discovery": False, "strategy": "none", "providers": {"lb": _openai_like(fakes["openai"], "k-lb-key")},
            "models": [_model("lb-model", "lb")], **extra}


def _chat(stack: Stack, rid: str, content: str, **extra: Any) -> httpx.Response:
    return httpx.post(stack.url + "/v1/chat/completions", headers={"x-request-id": rid},
                      json={"model": "lb-model", "messages": [{"role": "user", "content": content}], **extra})


def test_log_bodies_puts_the_prompt_and_whole_answer_in_the_usage_record_with_secrets_masked(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(_bodies_config(fakes, log={"bodies": True}))
    assert _chat(stack, "lb-whole", f"{PROMPT}; my key is {PASTED_KEY}, auth {PASTED_TOKEN}").status_code == 200
    record = stack.usage_record("lb-whole")
    assert PROMPT in json.loads(record["request_body"])["messages"][0]["content"]
    assert "sk-proj-Z…" in record["request_body"] and "Bearer …" in record["request_body"]
    assert json.loads(record["response_body"])["choices"][0]["message"]["content"] == "hello from lb-model"

    streamed = _chat(stack, "lb-stream", PROMPT, stream=True)
    assert streamed.status_code == 200 and "hello" in streamed.text
    record = stack.usage_record("lb-stream")
    assert PROMPT in record["request_body"] and "response_body" not in record  # a stream's answer is not logged

    big = "x" * (100 * 1024)
    assert _chat(stack, "lb-big", big).status_code == 200
    logged = stack.usage_record("lb-big")["request_body"]
    assert logged.endswith("…") and len(logged.encode()) <= 64 * 1024 + len("…".encode())  # cut at 64 KiB

    logs = stack.logs()
    assert PASTED_KEY not in logs and PASTED_TOKEN.split()[1] not in logs and "k-lb-key" not in logs


def test_without_log_bodies_no_prompt_or_answer_is_logged_even_at_debug(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(_bodies_config(fakes))  # the stack logs at debug
    assert _chat(stack, "lb-quiet", PROMPT).status_code == 200
    record = stack.usage_record("lb-quiet")  # written after the answer: everything of the request is logged by now
    assert "request_body" not in record and "response_body" not in record
    logs = stack.logs()
    assert PROMPT not in logs and "hello from lb-model" not in logs


# ---------------------------------------------------------------- a stored conversation's refusals

def _conversation_config(fakes: dict[str, FakeProvider]) -> dict[str, Any]:
    return {"discovery": False, "strategy": "none",
            "providers": {"cv-oa": _openai_like(fakes["openai"], "k-cv-oa"),
                          "cv-an": {"base_url": fakes["anthropic"].base_url, "apis": {"anthropic": "/v1"},
                                    "auth": "x-api-key", "api_key": "k-cv-an",
                                    "headers": {"anthropic-version": "2023-06-01"}}},
            "models": [_model("cv-oa-model", "cv-oa"), _model("cv-an-model", "cv-an")]}


def _refused(answer: httpx.Response, status: int, code: str, type_: str) -> str:
    """The refusal in OpenAI's envelope (the Responses API's), with its status and code; its message."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["type"]) == (code, type_), answer.text
    return str(error["message"])


def test_continuing_a_translated_answer_is_refused_with_conversation_not_stored(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(_conversation_config(fakes))
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    first = client.responses.with_raw_response.create(model="cv-an-model", input="hi")
    assert "translated" in first.headers["x-extproc-route"]
    answer_id = first.parse().id
    sent = len(fakes["anthropic"].requests)
    for stream in (False, True):
        answer = httpx.post(stack.url + "/v1/responses", json={"model": "cv-an-model", "input": "more",
                                                               "previous_response_id": answer_id, "stream": stream})
        message = _refused(answer, 400, "conversation_not_stored", "invalid_request_error")
        assert answer_id in message and "whole conversation" in message
        assert answer.headers["x-should-retry"] == "false"  # retrying cannot help: the SDKs are told so
    assert len(fakes["anthropic"].requests) == sent  # refused before anything went upstream


def test_continuing_a_conversation_whose_account_cannot_serve_is_refused_with_conversation_unavailable(
        fakes: dict[str, FakeProvider], make_stack: Callable[[dict[str, Any]], Stack]) -> None:
    stack = make_stack(_conversation_config(fakes))
    held = {"id": "resp_cv_held", "object": "response", "created_at": 1, "model": "cv-oa-model",
            "status": "completed", "output": [], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}
    fakes["openai"].script(200, body=json.dumps(held).encode())
    client = openai.OpenAI(base_url=stack.url + "/v1", api_key="unused", max_retries=0)
    assert client.responses.create(model="cv-oa-model", input="hi").id == "resp_cv_held"
    continued = {"model": "cv-oa-model", "input": "more", "previous_response_id": "resp_cv_held"}
    assert httpx.post(stack.url + "/v1/responses", json=continued).status_code == 200  # while its account serves
    fakes["openai"].script(429, {"retry-after": "60"})  # the account that holds it runs out
    assert httpx.post(stack.url + "/v1/responses", json=continued).status_code == 429
    eventually(lambda: not httpx.get(stack.url + "/v1/models/cv-oa-model").json()["available"],
               "the gateway has learned the holder's cooldown")
    sent = len(fakes["openai"].requests)
    answer = httpx.post(stack.url + "/v1/responses", json=continued)
    message = _refused(answer, 503, "conversation_unavailable", "service_unavailable_error")
    assert "resp_cv_held" in message and "Retry later" in message and "k-cv-oa" not in message
    assert 1 <= int(answer.headers["retry-after"]) <= 60  # when the holder's cooldown ends
    assert len(fakes["openai"].requests) == sent and fakes["anthropic"].requests == []  # never another account
