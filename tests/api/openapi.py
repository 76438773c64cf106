"""OpenAI's own OpenAPI description as the judge of every body and stream chunk the API sends.

The spec (shared/data/openai/openapi.yaml, beside the repository) declares OpenAPI 3.1 but marks
nullability the 3.0 way, `nullable: true`; each such node is rewritten as
`anyOf: [<node without nullable>, {type: null}]` so a JSON Schema validator accepts the nulls OpenAI
itself sends. Tests skip when the file is absent.

`check_response` judges one whole HTTP response by its route: JSON bodies against the route's
schema (ErrorResponse for every non-2xx), event streams chunk by chunk, ending in `data: [DONE]`.
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).parents[3] / "shared" / "data" / "openai" / "openapi.yaml"
SPEC_URI = "urn:openai:openapi.yaml"
# The completions stream has no schema of its own: OpenAI streams CreateCompletionResponse objects,
# but with finish_reason null until a choice's last chunk, and (with stream_options.include_usage)
# usage null on all chunks but the last, as the spec's stream_options says. This derived schema
# allows exactly those two nulls.
COMPLETION_CHUNK = "x-CreateCompletionStreamChunk"


def without_nullable(node: Any) -> Any:
    """A copy of the spec with every `nullable: true` node widened to also accept null."""
    if isinstance(node, list):
        return [without_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: without_nullable(v) for k, v in node.items() if not (k == "nullable" and isinstance(v, bool))}
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out


@functools.cache
def _registry() -> Registry:
    if not SPEC_PATH.is_file():
        pytest.skip(f"OpenAI's OpenAPI description is not at {SPEC_PATH}")
    import yaml
    with SPEC_PATH.open("rb") as f:
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    spec = without_nullable(spec)
    schemas = spec["components"]["schemas"]
    chunk = schemas[COMPLETION_CHUNK] = copy.deepcopy(schemas["CreateCompletionResponse"])
    for props, name in ((chunk["properties"]["choices"]["items"]["properties"], "finish_reason"),
                        (chunk["properties"], "usage")):
        props[name] = {"anyOf": [props[name], {"type": "null"}]}
    return Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))


@functools.cache
def validator(schema_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"},
                                           registry=_registry())


def validate(schema_name: str, instance: Any) -> None:
    """Raise AssertionError naming every violation of `#/components/schemas/<schema_name>`."""
    errors = sorted(validator(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10]]
        raise AssertionError(f"not a valid {schema_name}:\n" + "\n".join(lines) + f"\ninstance: {instance!r:.2000}")


def schemas_for(path: str) -> tuple[str, str] | None:
    """(body schema, stream chunk schema) of a route, None for routes outside OpenAI's API."""
    if path.endswith("/v1/chat/completions"):
        return "CreateChatCompletionResponse", "CreateChatCompletionStreamResponse"
    if path.endswith("/v1/completions"):
        return "CreateCompletionResponse", COMPLETION_CHUNK
    if path.endswith("/v1/models"):
        return "ListModelsResponse", ""
    if "/v1/models/" in path:
        return "Model", ""
    return None


def sse_data(text: str) -> list[str]:
    """The data of each event of a text/event-stream body, comments (keep-alive pings) dropped."""
    events = []
    for block in text.replace("\r\n", "\n").replace("\r", "\n").split("\n\n"):
        data = [line[5:].removeprefix(" ") for line in block.split("\n") if line.startswith("data:")]
        if data:
            events.append("\n".join(data))
    return events


def check_body(path: str, status: int, content_type: str, body: bytes) -> list[Any]:
    """Validate one response; return its JSON objects (the body, or each stream chunk before [DONE])."""
    schemas = schemas_for(path)
    if status >= 400:
        assert content_type.startswith("application/json"), f"{status} from {path} is {content_type}: {body[:300]!r}"
        obj = json.loads(body)
        validate("ErrorResponse", obj)
        return [obj]
    if schemas is None:
        return []
    assert 200 <= status < 300, f"{status} from {path}"
    if not content_type.startswith("text/event-stream"):
        assert content_type.startswith("application/json"), f"{path} answered {content_type}"
        obj = json.loads(body)
        validate(schemas[0], obj)
        return [obj]
    events = sse_data(body.decode("utf-8"))
    assert events and events[-1] == "[DONE]", f"stream from {path} does not end with [DONE]: {events[-3:]}"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "[DONE]" not in events[:-1], "[DONE] sent twice"
    for chunk in chunks:
        validate("ErrorResponse" if "error" in chunk else schemas[1], chunk)
    ok = [c for c in chunks if "error" not in c]
    for key in ("id", "created", "model", "object"):
        assert len({c[key] for c in ok}) <= 1, f"chunks of one stream differ in {key!r}: {sorted({c[key] for c in ok})}"
    return chunks


def check_response(response: httpx.Response) -> list[Any]:
    """check_body for an httpx response whose body has been read."""
    return check_body(response.request.url.path, response.status_code,
                      response.headers.get("content-type", ""), response.content)
