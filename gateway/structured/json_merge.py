"""allOf as one schema: `merge(schemas, a, b)` is a dict meaning a and b, where that is exact.

Numbers and lengths keep the tighter bound; types and enum values intersect; properties merge key by
key (a key one side does not declare is held to that side's additionalProperties), required and
dependentRequired unite; prefixItems merge with the other side's items. Two different values of
any other keyword (two patterns, two formats, ...) are refused, naming allOf.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gateway.structured.json_keywords import (CONSTRAINING, OBJECT_KEYWORDS, UnsupportedSchema, json_equal, meet,
                                              types_overlap)

if TYPE_CHECKING:
    from gateway.structured.json_normal import Schemas

SPECIAL_OBJECT = {"properties", "additionalProperties", "required", "dependentRequired", "dependencies"}
SPECIAL = OBJECT_KEYWORDS | {"items", "prefixItems", "type", "enum", "const"}
LOWER = {"minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum"}
UPPER = {"maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum"}


def merge(schemas: Schemas, a: dict, b: dict) -> dict | None:
    """One dict meaning a and b (None: nothing satisfies both); refuses what it cannot merge."""
    whole_a, whole_b = a, b
    a = {k: v for k, v in a.items() if k in CONSTRAINING}
    b = {k: v for k, v in b.items() if k in CONSTRAINING}
    if not a or not b:                  # one side as it is: interned as given when nothing was left out
        given, kept = (whole_a, a) if a else (whole_b, b)
        return schemas.intern(given if len(given) == len(kept) else kept)
    out = {}
    for k in [*a, *(k for k in b if k not in a)]:
        if k in SPECIAL:
            continue
        if k in a and k in b and not json_equal(a[k], b[k]):
            out[k] = _tighter(k, a[k], b[k])
        else:
            out[k] = a[k] if k in a else b[k]
    if not _merge_values(a, b, out):
        return None
    _merge_arrays(schemas, a, b, out)
    _merge_objects(schemas, a, b, out)
    return schemas.intern(out)


def _merge_values(a: dict, b: dict, out: dict) -> bool:
    types = None
    for side in (a, b):
        if "type" in side:
            mine = {side["type"]} if isinstance(side["type"], str) else set(side["type"])
            types = mine if types is None else {meet(x, y) for x in types for y in mine if types_overlap(x, y)}
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


def _merge_arrays(schemas: Schemas, a: dict, b: dict, out: dict) -> None:
    if "prefixItems" in a and "prefixItems" in b:
        raise UnsupportedSchema("allOf", "cannot merge two prefixItems")
    tuple_side, other = (a, b) if "prefixItems" in a else (b, a)
    if "prefixItems" in tuple_side:
        out["prefixItems"] = [both(schemas, p, other.get("items")) for p in tuple_side["prefixItems"]]
    items = both(schemas, a.get("items"), b.get("items"))
    if items is not None:
        out["items"] = items


def _merge_objects(schemas: Schemas, a: dict, b: dict, out: dict) -> None:
    if ("patternProperties" in a or "patternProperties" in b) and \
            ("additionalProperties" in a or "additionalProperties" in b):
        raise UnsupportedSchema("allOf", "cannot merge patternProperties with additionalProperties")
    pa, pb = a.get("properties", {}), b.get("properties", {})
    if pa or pb:
        out["properties"] = {k: both(schemas, pa.get(k, a.get("additionalProperties")),
                                           pb.get(k, b.get("additionalProperties")))
                             for k in [*pa, *(k for k in pb if k not in pa)]}
    extra = both(schemas, a.get("additionalProperties"), b.get("additionalProperties"))
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


def both(schemas: Schemas, x, y):
    """Both schemas (None: absent, no constraint)."""
    if x is None or x is True:
        return y
    if y is None or y is True or json_equal(x, y):
        return x
    if x is False or y is False:
        return False
    return schemas.intern({"allOf": [x, y]})


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
