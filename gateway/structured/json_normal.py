"""JSON Schema nodes in a normal form the compiler can read keyword by keyword.

`Schemas(root).alternatives(node)` is the node as a list of alternatives (a disjunction), each a
dict of constraining keywords with no `$ref`, `allOf`, `anyOf` or `oneOf` left: references are
resolved, `allOf` parts are merged into one dict where that is exact (`merge`), `anyOf` branches
become alternatives with the node's other keywords merged into each, and `oneOf` is read as `anyOf`
only when its branches are provably disjoint (no instance can match two of them). Subschemas under
properties, items etc. stay as they are: they are normalised when the compiler reaches them.

Draft differences are settled here, by the root's $schema (none: 2020-12, as jsonschema does):
draft 4's boolean exclusiveMinimum/Maximum become numbers; before 2020-12 an `items` array is
prefixItems and additionalItems the items after it; drafts 4-7 ignore the siblings of `$ref`.

Every dict built here is interned (one object per content), so the compiler can cache rules by
object identity and recursion through merged nodes ends.
"""
from __future__ import annotations

import json
import math
from urllib.parse import unquote

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
MAX_ALTERNATIVES = 64
SPECIAL_OBJECT = {"properties", "additionalProperties", "required", "dependentRequired", "dependencies"}
SPECIAL = OBJECT_KEYWORDS | {"items", "prefixItems", "type", "enum", "const"}
LOWER = {"minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum"}
UPPER = {"maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum"}


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


class Schemas:
    def __init__(self, root):
        self.root = root
        self.draft = draft_of(root)
        self._interned: dict[str, dict] = {}
        self._alternatives: dict[int, list[dict]] = {}
        self._busy: set[int] = set()
        self.empty = self.intern({})
        id_key = "$id" if self.draft >= 6 else "id"
        root_id = root.get(id_key) if isinstance(root, dict) else None
        self._root_id = root_id.split("#")[0] if isinstance(root_id, str) else None
        for path, node in walk(root):
            if path != "#" and isinstance(node, dict) and isinstance(node.get(id_key), str) and \
                    not node[id_key].startswith("#") and any(isinstance(n, dict) and "$ref" in n for _, n in walk(node)):
                raise UnsupportedSchema(id_key, f"references inside a nested {id_key} ({path}) are not supported")

    def intern(self, d: dict) -> dict:
        return self._interned.setdefault(json.dumps(d, sort_keys=True), d)

    def alternatives(self, node) -> list[dict]:
        if node is True:
            return [self.empty]
        if node is False:
            return []
        if not isinstance(node, dict):
            raise UnsupportedSchema("schema", f"a schema must be an object or a boolean, not {node!r}")
        key = id(node)
        if key in self._alternatives:
            return self._alternatives[key]
        if key in self._busy:
            raise UnsupportedSchema("$ref", "a reference cycle that no object or array breaks")
        self._busy.add(key)
        try:
            result = self._expand(node)
        finally:
            self._busy.discard(key)
        self._alternatives[key] = result
        return result

    def _expand(self, node: dict) -> list[dict]:
        node = self._draft_normal(node)
        if not APPLICATORS & node.keys():
            return [node]
        conjuncts = [[self.intern({k: v for k, v in node.items() if k in CONSTRAINING - APPLICATORS})]]
        if "$ref" in node:
            conjuncts.append(self.alternatives(self.resolve(node["$ref"])))
        for part in _list(node, "allOf"):
            conjuncts.append(self.alternatives(part))
        if "anyOf" in node:
            conjuncts.append([a for branch in _list(node, "anyOf") for a in self.alternatives(branch)])
        if "oneOf" in node:
            branches = [self.alternatives(b) for b in _list(node, "oneOf")]
            for i, left in enumerate(branches):
                for right in branches[i + 1:]:
                    if not all(self.disjoint(a, b) for a in left for b in right):
                        raise UnsupportedSchema("oneOf", "its branches may overlap (only provably "
                                                         "disjoint oneOf branches are supported)")
            conjuncts.append([a for branch in branches for a in branch])
        result = [self.empty]
        for options in conjuncts:
            result = [m for a in result for b in options if (m := self.merge(a, b)) is not None]
            if len(result) > MAX_ALTERNATIVES:
                raise UnsupportedSchema("anyOf", f"more than {MAX_ALTERNATIVES} alternatives after expansion")
        return result

    def _draft_normal(self, node: dict) -> dict:
        if "$ref" in node and self.draft <= 7:
            return self.intern({"$ref": node["$ref"]}) if len(node) > 1 else node
        out = dict(node)
        if self.draft == 4:
            for ex, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
                if out.pop(ex, False) is True and bound in out:
                    out[ex] = out.pop(bound)
        else:
            for ex in ("exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(out.get(ex), bool):
                    raise UnsupportedSchema(ex, f"a boolean {ex} is draft 4 syntax; this schema is draft {self.draft}")
        if self.draft <= 2019:
            extra = out.pop("additionalItems", True)
            if isinstance(out.get("items"), list):
                out["prefixItems"] = out.pop("items")
                out["items"] = extra
        else:
            out.pop("additionalItems", None)        # not a 2020-12 keyword: jsonschema ignores it
            if isinstance(out.get("items"), list):
                raise UnsupportedSchema("items", "an array of schemas (use prefixItems in draft 2020-12)")
        return node if out == node else self.intern(out)

    def resolve(self, ref):
        if not isinstance(ref, str):
            raise UnsupportedSchema("$ref", f"{ref!r} is not a string")
        if self._root_id and ref.startswith(self._root_id + "#"):
            ref = ref[len(self._root_id):]
        if ref == "#" or ref == "":
            return self.root
        if not ref.startswith("#/"):
            raise UnsupportedSchema("$ref", f"{ref!r}: only local JSON pointers (#/...) are supported")
        node = self.root
        for part in ref[2:].split("/"):
            part = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise UnsupportedSchema("$ref", f"{ref!r} does not resolve")
        return node

    def merge(self, a: dict, b: dict) -> dict | None:
        """One dict meaning a and b (None: nothing satisfies both); refuses what it cannot merge."""
        a = {k: v for k, v in a.items() if k in CONSTRAINING}
        b = {k: v for k, v in b.items() if k in CONSTRAINING}
        if not a or not b:
            return self.intern(a or b)
        out = {}
        for k in [*a, *(k for k in b if k not in a)]:
            if k in SPECIAL:
                continue
            if k in a and k in b and not json_equal(a[k], b[k]):
                out[k] = _tighter(k, a[k], b[k])
            else:
                out[k] = a[k] if k in a else b[k]
        if not self._merge_values(a, b, out):
            return None
        self._merge_arrays(a, b, out)
        self._merge_objects(a, b, out)
        return self.intern(out)

    def _merge_values(self, a: dict, b: dict, out: dict) -> bool:
        types = None
        for side in (a, b):
            if "type" in side:
                mine = {side["type"]} if isinstance(side["type"], str) else set(side["type"])
                types = mine if types is None else {_meet(x, y) for x in types for y in mine if types_overlap(x, y)}
        if types is not None:
            if not types:
                return False
            out["type"] = sorted(types)
        values = None
        for side in (a, b):
            for k in ("enum", "const"):
                if k in side:
                    mine = [side[k]] if k == "const" else list(side[k])
                    values = mine if values is None else [v for v in values if any(json_equal(v, w) for w in mine)]
        if values is not None:
            if not values:
                return False
            out["enum"] = values
        return True

    def _merge_arrays(self, a: dict, b: dict, out: dict) -> None:
        if "prefixItems" in a and "prefixItems" in b:
            raise UnsupportedSchema("allOf", "cannot merge two prefixItems")
        tuple_side, other = (a, b) if "prefixItems" in a else (b, a)
        if "prefixItems" in tuple_side:
            out["prefixItems"] = [self.both(p, other.get("items")) for p in tuple_side["prefixItems"]]
        items = self.both(a.get("items"), b.get("items"))
        if items is not None:
            out["items"] = items

    def _merge_objects(self, a: dict, b: dict, out: dict) -> None:
        if ("patternProperties" in a or "patternProperties" in b) and \
                ("additionalProperties" in a or "additionalProperties" in b):
            raise UnsupportedSchema("allOf", "cannot merge patternProperties with additionalProperties")
        pa, pb = a.get("properties", {}), b.get("properties", {})
        if pa or pb:
            out["properties"] = {k: self.both(pa.get(k, a.get("additionalProperties")),
                                               pb.get(k, b.get("additionalProperties")))
                                 for k in [*pa, *(k for k in pb if k not in pa)]}
        extra = self.both(a.get("additionalProperties"), b.get("additionalProperties"))
        if extra is not None:
            out["additionalProperties"] = extra
        required = [*a.get("required", []), *(r for r in b.get("required", []) if r not in a.get("required", []))]
        if required:
            out["required"] = required
        for k in ("dependentRequired", "dependencies"):
            if k in a or k in b:
                da, db = a.get(k, {}), b.get(k, {})
                if any(not isinstance(v, list) for v in [*da.values(), *db.values()]):
                    raise UnsupportedSchema(k, "schema dependencies are not supported")
                out[k] = {key: sorted(set(da.get(key, [])) | set(db.get(key, []))) for key in {*da, *db}}
        for k in OBJECT_KEYWORDS - SPECIAL_OBJECT:
            if k in a and k in b and not json_equal(a[k], b[k]):
                out[k] = _tighter(k, a[k], b[k])
            elif k in a or k in b:
                out[k] = a[k] if k in a else b[k]

    def both(self, x, y):
        """Both schemas (None: absent, no constraint)."""
        if x is None or x is True:
            return y
        if y is None or y is True or json_equal(x, y):
            return x
        if x is False or y is False:
            return False
        return self.intern({"allOf": [x, y]})

    def disjoint(self, a: dict, b: dict) -> bool:
        """No instance satisfies both alternatives (a sufficient test)."""
        shared = {_meet(x, y) for x in self.type_set(a) for y in self.type_set(b) if types_overlap(x, y)}
        if not shared:
            return True
        va, vb = self.values(a), self.values(b)
        if va is not None and vb is not None and not any(json_equal(x, y) for x in va for y in vb):
            return True
        if shared != {"object"} or "patternProperties" in a or "patternProperties" in b:
            return False
        for one, two in ((a, b), (b, a)):
            for key in one.get("required", []):
                if not self.alternatives(self.property(two, key)):
                    return True
                if key in two.get("required", []):
                    ka, kb = self._key_values(one, key), self._key_values(two, key)
                    if ka is not None and kb is not None and not any(json_equal(x, y) for x in ka for y in kb):
                        return True
        return False

    @staticmethod
    def property(alt: dict, key: str):
        """The schema a key's value must match in an object alternative (patternProperties aside)."""
        return alt.get("properties", {}).get(key, alt.get("additionalProperties", True))

    def type_set(self, alt: dict) -> set[str]:
        t = alt.get("type", TYPES)
        types = {t} if isinstance(t, str) else set(t)
        values = self.values(alt)
        if values is not None:
            types = {_meet(x, y) for x in types for y in {value_type(v, self.draft) for v in values} if types_overlap(x, y)}
        return types

    @staticmethod
    def values(alt: dict):
        return [alt["const"]] if "const" in alt else list(alt["enum"]) if "enum" in alt else None

    def _key_values(self, alt: dict, key: str):
        found = []
        for option in self.alternatives(self.property(alt, key)):
            values = self.values(option)
            if values is None:
                return None
            found += values
        return found


def _tighter(keyword: str, x, y):
    """Both values of a keyword that two merged schemas give differently."""
    if keyword in LOWER:
        return max(x, y)
    if keyword in UPPER:
        return min(x, y)
    if keyword == "uniqueItems":
        return x or y
    if keyword == "multipleOf" and isinstance(x, int) and isinstance(y, int) and x > 0 and y > 0:
        return math.lcm(x, y)
    raise UnsupportedSchema("allOf", f"cannot merge two different {keyword!r}")


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _meet(x: str, y: str) -> str:
    return "integer" if "integer" in (x, y) else x


def _list(node: dict, key: str) -> list:
    value = node[key] if key in node else []
    if not isinstance(value, list) or (key != "allOf" and not value):
        raise UnsupportedSchema(key, "must be a non-empty array of schemas")
    return value
