"""JSON Schema vocabulary: the keywords that constrain instances (by the type they apply to), the
error for what we cannot enforce, jsonschema's equality and types, drafts, and walks over the
schemas inside a schema (OpenAI's strict-mode rules use one)."""
from __future__ import annotations

STRING_KEYWORDS = {"maxLength", "minLength", "pattern", "format"}
NUMBER_KEYWORDS = {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}
ARRAY_KEYWORDS = {"items", "additionalItems", "prefixItems", "maxItems", "minItems", "uniqueItems", "contains",
                  "maxContains", "minContains", "unevaluatedItems"}
OBJECT_KEYWORDS = {"maxProperties", "minProperties", "required", "properties", "patternProperties",
                   "additionalProperties", "dependencies", "dependentRequired", "dependentSchemas",
                   "propertyNames", "unevaluatedProperties"}
APPLICATORS = {"$ref", "allOf", "anyOf", "oneOf"}
GENERAL_KEYWORDS = {"type", "enum", "const", "if", "not", "$dynamicRef", "$recursiveRef", "disallow", "extends"}
CONSTRAINING = STRING_KEYWORDS | NUMBER_KEYWORDS | ARRAY_KEYWORDS | OBJECT_KEYWORDS | APPLICATORS | GENERAL_KEYWORDS
TYPES = ("null", "boolean", "object", "array", "string", "number", "integer")


class UnsupportedSchema(ValueError):
    """A schema keyword we cannot enforce exactly; `keyword` names it (the API's 400 names it too)."""

    def __init__(self, keyword: str, detail: str = ""):
        super().__init__(f"{keyword}: {detail}" if detail else f"{keyword} is not supported")
        self.keyword = keyword


def subschemas(node, path: str = "#"):
    """(JSON pointer, schema) of the schemas directly inside a schema node."""
    if not isinstance(node, dict):
        return
    for k in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"):
        if isinstance(node.get(k), dict):
            for name, sub in node[k].items():
                if isinstance(sub, (dict, bool)):
                    yield f"{path}/{k}/{_escape(name)}", sub
    for k in ("additionalProperties", "items", "additionalItems", "contains", "propertyNames", "not", "if", "then",
              "else", "unevaluatedItems", "unevaluatedProperties"):
        if isinstance(node.get(k), (dict, bool)):
            yield f"{path}/{k}", node[k]
    for k in ("allOf", "anyOf", "oneOf", "prefixItems", "items"):
        if isinstance(node.get(k), list):
            for i, sub in enumerate(node[k]):
                yield f"{path}/{k}/{i}", sub


def walk(node, path: str = "#"):
    """(JSON pointer, schema) of the node and every schema inside it."""
    yield path, node
    for sub_path, sub in subschemas(node, path):
        yield from walk(sub, sub_path)


def check_strict(schema) -> None:
    """OpenAI's structured-output rules: an object root; every object closed and fully required."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise UnsupportedSchema("type", "strict mode: the root schema must be {\"type\": \"object\", ...}")
    for path, node in walk(schema):
        if isinstance(node, dict) and (node.get("type") == "object" or "properties" in node):
            if node.get("additionalProperties") is not False:
                raise UnsupportedSchema("additionalProperties",
                                        f"strict mode: every object needs additionalProperties: false ({path})")
            missing = [k for k in node.get("properties", {}) if k not in node.get("required", [])]
            if missing:
                raise UnsupportedSchema("required", f"strict mode: every property must be required; {path} "
                                                    f"leaves out {missing}")


def draft_of(root) -> int:
    uri = root.get("$schema", "") if isinstance(root, dict) else ""
    for name, draft in (("draft-03", 3), ("draft-04", 4), ("draft-06", 6), ("draft-07", 7), ("2019-09", 2019)):
        if name in str(uri):
            if draft == 3:
                raise UnsupportedSchema("$schema", "draft 3 is not supported")
            return draft
    return 2020


def json_equal(a, b) -> bool:
    """jsonschema's equality: booleans are not numbers, 1 == 1.0, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(json_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def value_type(v, draft: int) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int) or (isinstance(v, float) and draft >= 6 and v.is_integer()):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}[type(v)]


def types_overlap(a: str, b: str) -> bool:
    return a == b or {a, b} == {"integer", "number"}


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def meet(x: str, y: str) -> str:
    return "integer" if "integer" in (x, y) else x


