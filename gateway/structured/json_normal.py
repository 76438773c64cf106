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

from urllib.parse import unquote

from gateway.structured.json_content import Contents
from gateway.structured.json_keywords import (APPLICATORS, CONSTRAINING, TYPES, UnsupportedSchema, draft_of, json_equal,
                                              meet, types_overlap, value_type, walk)
from gateway.structured.json_merge import both, merge

MAX_ALTERNATIVES = 64


class Schemas:
    def __init__(self, root):
        self.root = root
        self.draft = draft_of(root)
        self.contents = Contents()                 # content keys (json_content), of nodes and rules
        self._interned: dict[object, dict] = {}
        self._alternatives: dict[int, list[dict]] = {}
        self._busy: set[int] = set()
        self._merged: dict[tuple[int, int], tuple[dict, dict, dict | None]] = {}
        self.empty = self.intern({})
        id_key = "$id" if self.draft >= 6 else "id"
        root_id = root.get(id_key) if isinstance(root, dict) else None
        self._root_id = root_id.split("#")[0] if isinstance(root_id, str) else None
        for path, node in walk(root):
            if path != "#" and isinstance(node, dict) and isinstance(node.get(id_key), str) and \
                    not node[id_key].startswith("#") and any(isinstance(n, dict) and "$ref" in n for _, n in walk(node)):
                raise UnsupportedSchema(id_key, f"references inside a nested {id_key} ({path}) are not supported")

    def intern(self, d: dict) -> dict:
        return self._interned.setdefault(self.contents.key(d), d)

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
            result = [m for a in result for b in options if (m := self._merge(a, b)) is not None]
            if len(result) > MAX_ALTERNATIVES:
                raise UnsupportedSchema("anyOf", f"more than {MAX_ALTERNATIVES} alternatives after expansion")
        return result

    def _merge(self, a: dict, b: dict) -> dict | None:
        """merge(a, b), once per pair (nodes that share definitions merge the same pairs again);
        the pair is held, so its ids stay theirs."""
        found = self._merged.get((id(a), id(b)))
        if found is None:
            found = self._merged[id(a), id(b)] = (a, b, merge(self, a, b))
        return found[2]

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

    def disjoint(self, a: dict, b: dict) -> bool:
        """No instance satisfies both alternatives (a sufficient test)."""
        shared = {meet(x, y) for x in self.type_set(a) for y in self.type_set(b) if types_overlap(x, y)}
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

    def both(self, x, y):
        """Both schemas (None: absent)."""
        return both(self, x, y)

    @staticmethod
    def property(alt: dict, key: str):
        """The schema a key's value must match in an object alternative (patternProperties aside)."""
        return alt.get("properties", {}).get(key, alt.get("additionalProperties", True))

    def type_set(self, alt: dict) -> set[str]:
        t = alt.get("type", TYPES)
        types = {t} if isinstance(t, str) else set(t)
        values = self.values(alt)
        if values is not None:
            types = {meet(x, y) for x in types for y in {value_type(v, self.draft) for v in values} if types_overlap(x, y)}
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


def _list(node: dict, key: str) -> list:
    value = node[key] if key in node else []
    if not isinstance(value, list) or (key != "allOf" and not value):
        raise UnsupportedSchema(key, "must be a non-empty array of schemas")
    return value
