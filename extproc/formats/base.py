"""What every format shares: body decoding, model ids, the token/image walk."""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import unquote_plus

import orjson

from extproc.core.errors import ClientError

JsonObject = dict[str, Any]


def set_body_model(doc: JsonObject, model_id: str) -> bool:
    """Point the body's `model` at model_id; True when that changed the body."""
    if doc.get("model") == model_id:
        return False
    doc["model"] = model_id
    return True


_CREDENTIAL_PARAMS = frozenset({"key", "api_key", "access_token"})


def without_credentials(query: str) -> str:
    """The query minus a client's own key (Gemini clients may send ?key=); other parameters as they came."""
    if not query:
        return query
    kept = [p for p in query.split("&") if unquote_plus(p.partition("=")[0]).lower() not in _CREDENTIAL_PARAMS]
    return "&".join(kept)


def decode_object(body: bytes, unique: str | None = None) -> JsonObject:
    """The body's JSON object; `unique` names a key the gateway routes by, refused when an object repeats it."""
    if not body:
        raise ClientError(400, "invalid_request", "The request body is empty (or is not in the content-encoding "
                          "it names); send a JSON object.")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ClientError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ClientError(400, "invalid_request", "The request body must be a JSON object.")
    if unique is not None and _may_repeat(body, unique) and _repeats(body, unique):
        # orjson keeps the last; a provider may read the first: the gateway would route one model, serve another.
        raise ClientError(400, "duplicate_key", f"The request body names '{unique}' more than once; send it once.",
                          param=unique)
    return doc


@functools.cache
def _needles(key: str) -> tuple[bytes, tuple[bytes, ...]]:
    """The quoted key, and how its (ASCII) letters begin when written as escapes (`m` is `\\u006d`)."""
    return f'"{key}"'.encode(), tuple({f"\\u{ord(c):04x}"[:5].encode() for c in key})


def _may_repeat(body: bytes, key: str) -> bool:
    """Cheap (a byte scan, and a memchr), and never wrong when False: a repeated key needs its quoted name twice,
    or one of its letters written as an escape (`"mod\\u0065l"`), which no encoder does by itself."""
    token, escapes = _needles(key)
    return body.count(token) > 1 or (b"\\" in body and any(escape in body for escape in escapes))


class _Repeated(Exception):
    pass


def _repeats(body: bytes, key: str) -> bool:
    """Whether any object in the body has `key` more than once (the rare, slow path: the standard library's
    parser, which shows every pair)."""
    def pairs(items: list[tuple[str, Any]]) -> None:
        if sum(1 for name, _ in items if name == key) > 1:
            raise _Repeated
    try:
        json.loads(body, object_pairs_hook=pairs)
    except _Repeated:
        return True
    except RecursionError:  # within orjson's depth limit, past the standard library's
        raise ClientError(400, "invalid_json", "The request body is nested too deeply.") from None
    return False


_SLICE = 200  # levels written at once when a document is deeper than orjson writes


def dumps(doc: Any) -> bytes:
    """orjson.dumps for any document orjson.loads returns: orjson reads 1024 levels but writes 254, so a deeper
    one is written from the bottom up, every container at each 200th level replaced (in place) by its bytes."""
    try:
        return orjson.dumps(doc)
    except TypeError:  # "Recursion limit reached"
        pass
    sliced: list[tuple[Any, Any, int]] = []  # (parent, key, level) of the containers at a slice level
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        item, level = stack.pop()
        for key, child in item.items() if isinstance(item, dict) else enumerate(item):
            if isinstance(child, dict | list):
                if (level + 1) % _SLICE == 0:
                    sliced.append((item, key, level + 1))
                stack.append((child, level + 1))
    for parent, key, _ in sorted(sliced, key=lambda s: -s[2]):  # the deepest first: each then has 200 levels
        parent[key] = orjson.Fragment(orjson.dumps(parent[key]))
    return orjson.dumps(doc)


def body_model(doc: JsonObject) -> str:
    model = doc.get("model")
    if model is None:
        raise ClientError(400, "missing_model", "The request has no 'model' field; name the model to use.",
                          param="model")
    if not isinstance(model, str) or not model.strip():
        raise ClientError(400, "invalid_model", "The 'model' field must be a non-empty string.", param="model")
    return checked_model_id(model)


_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*(/[A-Za-z0-9][A-Za-z0-9._:@+-]*)*")


def checked_model_id(model: str) -> str:
    """Model ids go into paths and logs: only the characters ids are made of, no '..' segments."""
    if len(model) > 256 or not _MODEL_ID.fullmatch(model) or ".." in model:
        raise ClientError(400, "invalid_model", "The model name has characters no model id uses.", param="model")
    return model


_IMAGE_TYPES = frozenset({"image_url", "input_image", "image", "document", "input_file"})
_IMAGE_BLOB_KEYS = ("inline_data", "inlineData", "file_data", "fileData")
_ARGUMENT_KEYS = frozenset({"input", "args", "arguments"})
_IMAGE_TOKENS = 1000  # what one image costs in context, roughly, whatever its bytes


def measure(value: Any) -> tuple[int, int]:
    """(estimated tokens, image count) of a request's content; base64 payloads count as images."""
    chars = images = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            kind = item.get("type")
            if (isinstance(kind, str) and kind in _IMAGE_TYPES) or any(k in item for k in _IMAGE_BLOB_KEYS):
                images += 1
                continue
            # Tool-call arguments are the model's own output, data rather than content: count their size only.
            for key, value in item.items():
                if key in _ARGUMENT_KEYS and not isinstance(value, str):
                    try:
                        chars += len(orjson.dumps(value))
                    except TypeError:  # nested deeper than orjson writes: walk it as content
                        stack.append(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return chars // 4 + images * _IMAGE_TOKENS, images


def positive_int(doc: JsonObject, *keys: str) -> int | None:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


