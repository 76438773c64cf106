"""JSON Schema keywords one by one: each compiled grammar accepts exactly the texts jsonschema
finds valid (bar the spellings json_schema's doc says it leaves out), and what cannot be enforced
is refused by keyword."""
from __future__ import annotations

import json

import pytest

from gateway.structured.json_schema import UnsupportedSchema, compile_json_schema, json_object_grammar
from gateway.structured.matcher import Matcher
from tests.structured.test_json_schema import accepts, check_texts, compile_ok


def test_ref_recursion_tree_and_list():
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["value"], "additionalProperties": False}}, "$ref": "#/$defs/node"}
    check_texts(tree, ['{"value": 1}', '{"value": 1, "children": [{"value": 2, "children": []}, {"value": 3}]}',
                       '{"children": [], "value": 1}', '{"value": 1, "children": [{"children": []}]}',
                       '{"value": 1, "children": [{"value": "x"}]}', '{"value": 1, "other": 2}'])
    linked = {"type": ["object", "null"], "properties": {"head": {"type": "string"}, "tail": {"$ref": "#"}},
              "required": ["head", "tail"]}
    check_texts(linked, ['null', '{"head": "a", "tail": null}', '{"head": "a", "tail": {"head": "b", "tail": null}}',
                         '{"head": "a", "tail": {"head": 1, "tail": null}}', '{"head": "a"}'])
    deep = json.dumps({"head": "x", "tail": None})
    for _ in range(30):
        deep = f'{{"head": "x", "tail": {deep}}}'
    assert accepts(compile_ok(linked), deep)


def test_ref_pointers_with_escapes_and_drafts():
    schema = {"definitions": {"a/b": {"type": "integer"}, "m~n": {"type": "string"}, "sp ace": {"type": "null"}},
              "properties": {"x": {"$ref": "#/definitions/a~1b"}, "y": {"$ref": "#/definitions/m~0n"},
                             "z": {"$ref": "#/definitions/sp%20ace"}}}
    check_texts(schema, ['{"x": 1, "y": "s", "z": null}', '{"x": "1"}', '{"y": 2}', '{"z": 0}'])
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "properties": {
        "n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True, "maximum": 9, "exclusiveMaximum": False},
        "t": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}], "additionalItems": False},
        "r": {"$ref": "#/definitions/s", "maxLength": 1}}, "definitions": {"s": {"type": "string"}}}
    check_texts(draft4, ['{"n": 0}', '{"n": 1}', '{"n": 9}', '{"t": ["a", 1]}', '{"t": ["a", 1, 2]}', '{"t": [1]}',
                         '{"t": ["a"]}', '{"r": "long"}', '{"r": 1}'])


def test_any_of_different_types_and_one_of():
    check_texts({"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer", "minimum": 5}, {"type": "null"}]},
                ['"ab"', '"abc"', '5', '4', 'null', 'true', '5.5'])
    tagged = {"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
                         "required": ["kind"]},
                        {"type": "object", "properties": {"kind": {"enum": ["b", "c"]}, "x": {"type": "string"}},
                         "required": ["kind"]}]}
    check_texts(tagged, ['{"kind": "a", "x": 1}', '{"kind": "b", "x": "s"}', '{"kind": "a", "x": "s"}',
                         '{"kind": "d"}', '{"x": 1}'])


def test_enum_and_const_of_any_json():
    values = [{"a": [1, {"b": None}]}, [1, "x"], "é\n", 2.5, None, True]
    grammar = check_texts({"enum": values}, [json.dumps(v) for v in values] + [
        '{"a": [1, {"b": false}]}', '[1, "y"]', 'false', '{"b": null}'])
    for text in ['{"a":[1,{"b":null}]}', '{ "a" : [ 1 , { "b" : null } ] }', '"\\u00e9\\n"', '"é\\u000a"']:
        assert accepts(grammar, text), text
    assert not accepts(grammar, '{"a": [1, {"b": null}]   }')         # more whitespace than max_ws
    check_texts({"const": {"k": [True]}, "type": "object"}, ['{"k": [true]}', '{"k": [false]}', '[true]'])
    assert not accepts(grammar, '2.50')                  # json.dumps spellings only (a narrowing)
    check_texts({"enum": ["a", 1, "bc"], "type": "string", "maxLength": 1}, ['"a"', '1', '"bc"'])
    with pytest.raises(UnsupportedSchema):                 # no value fits
        compile_json_schema({"enum": ["abc", 1], "type": "string", "maxLength": 2})


@pytest.mark.parametrize("bounds", [{"minimum": -7, "maximum": 12}, {"exclusiveMinimum": -7, "exclusiveMaximum": 12},
                                    {"minimum": -100}, {"exclusiveMaximum": -99}, {"minimum": 3.5, "maximum": 40.2},
                                    {"minimum": 10, "maximum": 10}, {"multipleOf": 7, "minimum": -30, "maximum": 100}])
def test_integer_ranges(bounds):
    schema = {"type": "integer", **bounds}
    check_texts(schema, [str(i) for i in range(-130, 131)] + ["-0", "01", "-", ""], narrowed=["1.0", "1e1"])


@pytest.mark.parametrize("bounds", [{"minimum": 0}, {"exclusiveMinimum": 0}, {"minimum": -2.25, "maximum": 0.5},
                                    {"exclusiveMinimum": 0.1, "exclusiveMaximum": 1}, {"maximum": -90}])
def test_number_ranges(bounds):
    texts = ["0", "-0", "0.0", "-0.0", "0.1", "0.10", "0.10000000000001", "0.09999", "0.5", "0.50", "0.5000001",
             "-2.25", "-2.250", "-2.2500001", "-2.2499", "1", "1.0", "0.9999999", "-90", "-90.5", "-89.99", "-91",
             "3", "-1", "12.", ".5", "00.5"]
    check_texts({"type": "number", **bounds}, texts, narrowed=["0.100000000000001", "1e-3"])


def test_string_lengths_count_code_points():
    schema = {"type": "string", "minLength": 2, "maxLength": 3}
    texts = [json.dumps(v, ensure_ascii=a) for v in ["a", "ab", "abc", "abcd", "é", "éé", "东京都", "东京都庁",
                                                     "😀", "😀😀😀", "😀😀😀😀", '"\\', "\n\t\x00", "\n\t\x00\x01"]
             for a in (True, False)]
    check_texts(schema, texts + ['"\\u00e9\\u00E9"', '"\\/\\/"'], narrowed=['"\\ud83d\\ude00\\ud83d"', '"\\ud83dab"'])


def test_string_pattern_applies_to_decoded_text():
    check_texts({"type": "string", "pattern": "^[a-z/\"]+$"},
                ['"ab"', '"a\\/b"', '"a\\"b"', '"aB"', '"a\\\\b"', '""'], narrowed=['"a\\u0062"'])
    check_texts({"type": "string", "pattern": "^é+$"}, ['"é"', '"\\u00e9\\u00c9"', '"\\u00e9\\u00e9"', '"e"'])


@pytest.mark.parametrize("fmt, good, bad", [
    ("date-time", ["2024-02-29T23:59:60Z", "1999-01-01t00:00:00.123+05:30"], ["2024-01-01 00:00:00", "2024-13-01T00:00:00Z"]),
    ("date", ["2024-12-31"], ["2024-1-1", "24-01-01"]),
    ("time", ["12:00:00Z", "23:59:59.5-08:00"], ["24:00:00Z", "12:00"]),
    ("email", ["a.b+c@example.co.uk"], ["a@b", "@x.org", "a b@x.org"]),
    ("uuid", ["123e4567-e89b-12d3-a456-426614174000"], ["123e4567e89b12d3a456426614174000"]),
    ("uri", ["https://example.org/a?b=c#d", "urn:isbn:0451450523"], ["/relative", "ht tp://x"]),
    ("ipv4", ["192.168.0.1", "0.0.0.0"], ["256.1.1.1", "1.2.3"]),
    ("ipv6", ["::1", "2001:db8::8a2e:370:7334", "::ffff:192.0.2.1"], ["1:2:3:4:5:6:7:8:9", ":::"]),
    ("hostname", ["example.com", "a-b.c"], ["-a.com", "a..b"])])
def test_formats(fmt, good, bad):
    grammar = compile_ok({"type": "string", "format": fmt})
    assert all(accepts(grammar, json.dumps(v)) for v in good), good
    assert not any(accepts(grammar, json.dumps(v)) for v in bad), bad


def test_objects_keys_order_duplicates_escapes_and_extras():
    small = {"type": "object", "properties": {k: {"type": "integer"} for k in ["a", "b", "é"]}, "required": ["a"]}
    check_texts(small, ['{"é": 1, "a": 2, "b": 3}', '{"b": 1}', '{"a": 1, "z": "any"}', '{"a": 1, "\\u00e9": 1}',
                        '{"a": 1, "\\u00e9": "x"}', '{"a": 1, "\\u00c9": "x"}', '{"a": 1,}', '{}'],
                narrowed=['{"a": 1, "a": 2}', '{"\\u0061": 1}'])
    large = {"type": "object", "properties": {f"k{i}": {"type": "integer"} for i in range(10)},
             "additionalProperties": False}
    grammar = compile_ok(large)
    assert accepts(grammar, '{"k0": 0, "k3": 3, "k9": 9}')              # schema order: any subset
    assert not accepts(grammar, '{"k3": 3, "k0": 0}')                   # more than 8 keys: schema order only
    patterned = {"type": "object", "properties": {"xa": {"type": "string"}},
                 "patternProperties": {"^x": {"type": "integer"}, "y$": {"type": "boolean"}}, "additionalProperties": False}
    check_texts(patterned, ['{"x1": 1}', '{"x1": "s"}', '{"xy": 1}', '{"xy": true}', '{"ay": true}', '{"b": 1}',
                            '{"xa": "s"}', '{"xa": 1}', '{"\\u0078a": "s"}'])
    names = {"type": "object", "propertyNames": {"pattern": "^[a-z]+$", "maxLength": 3}}
    check_texts(names, ['{"abc": 1}', '{"abcd": 1}', '{"aB": 1}', '{}'])
    deps = {"type": "object", "properties": {"a": {}, "b": {}}, "dependentRequired": {"a": ["b"]},
            "minProperties": 1, "additionalProperties": False}
    check_texts(deps, ['{"a": 1}', '{"a": 1, "b": 2}', '{"b": 2}', '{}'])


def test_arrays():
    check_texts({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"},
                 "minItems": 2, "maxItems": 3},
                ['["a", 1]', '["a", 1, 2]', '["a", 1, 2, 3]', '["a"]', '[1, 1]', '[]', '["a", "b"]', '[ ]'])
    check_texts({"type": "array", "items": False}, ['[]', '[ ]', '[1]'])
    check_texts({"type": "array", "uniqueItems": True, "maxItems": 1}, ['[]', '[1]', '[1, 1]'])


def test_whitespace_is_bounded():
    grammar = compile_ok({"type": "object", "properties": {"a": {"type": "array"}}}, max_ws=2)
    assert accepts(grammar, '{ "a" : [ 1 ,\n\t2 ] }')
    assert not accepts(grammar, '{   "a": []}')
    assert not accepts(compile_ok({"type": "object"}, max_ws=0), '{"a": 1}')
    assert not accepts(grammar, ' {"a": []}') and not accepts(grammar, '{"a": []} ')


def test_json_object_grammar():
    grammar = json_object_grammar()
    grammar.check()
    for text in ['{}', '{"a": [1, 2.5e-3, "x", null, true, {"b": {}}]}', '{"é": "\\ud83d\\ude00"}']:
        assert accepts(grammar, text), text
    for text in ['[]', '"x"', '{"a": 01}', '{"a": 1,}', "{'a': 1}"]:
        assert not accepts(grammar, text), text


@pytest.mark.parametrize("schema, keyword", [
    ({"not": {"type": "string"}}, "not"),
    ({"if": {"type": "string"}, "then": {"minLength": 1}}, "if"),
    ({"type": "array", "contains": {"type": "integer"}}, "contains"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "number", "multipleOf": 0.01}, "multipleOf"),
    ({"type": "string", "format": "color"}, "format: color"),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf"),
    ({"oneOf": [{"maximum": 2}, {"maximum": 5}]}, "oneOf"),
    ({"$ref": "https://example.com/schema.json"}, "$ref"),
    ({"$ref": "#/$defs/missing"}, "$ref"),
    ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "$ref"),
    ({"type": "string", "pattern": "(?=a)b"}, "pattern"),
    ({"type": "object", "properties": {f"k{i}": {} for i in range(10)}, "maxProperties": 3}, "maxProperties"),
    ({"type": "object", "minProperties": 2}, "minProperties"),
    ({"type": "object", "dependentSchemas": {"a": {}}}, "dependentSchemas"),
    ({"type": "array", "unevaluatedItems": False}, "unevaluatedItems"),
    ({"allOf": [{"pattern": "a"}, {"pattern": "b"}]}, "allOf"),
    ({"type": "number", "minimum": 0.1234567890123456}, "minimum"),
    ({"type": "string", "minLength": 5000}, "minLength"),
    ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "integer", "exclusiveMinimum": True}, "exclusiveMinimum"),
    ({"items": [{"type": "string"}]}, "items"),
    ({"type": "strings"}, "type"),
    (False, "schema")])
def test_unsupported_keywords_are_named(schema, keyword):
    with pytest.raises(UnsupportedSchema) as err:
        compile_json_schema(schema)
    assert err.value.keyword == keyword


def test_moot_and_annotation_keywords_are_ignored():
    compile_ok({"type": "string", "title": "t", "description": "d", "default": "x", "examples": ["y"], "$comment": "c",
                "deprecated": True, "readOnly": True, "contentMediaType": "text/plain", "x-custom": {"not": {}},
                "uniqueItems": True, "minimum": 3, "properties": {"a": {"not": {}}}})


def test_strict_mode_follows_openai_rules():
    ok = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}},
                                                 "required": ["b"], "additionalProperties": False}},
          "required": ["a"], "additionalProperties": False}
    check_texts(ok, ['{"a":{"b":"x"}}', '{"a":{}}'], narrowed=['{"a": {"b": "x"}}'], strict=True)
    with pytest.raises(UnsupportedSchema) as err:
        compile_json_schema({**ok, "additionalProperties": True}, strict=True)
    assert err.value.keyword == "additionalProperties"
    with pytest.raises(UnsupportedSchema) as err:
        compile_json_schema({**ok, "required": []}, strict=True)
    assert err.value.keyword == "required"
    with pytest.raises(UnsupportedSchema):
        compile_json_schema({"type": "array"}, strict=True)


def test_strict_mode_writes_keys_in_schema_order_so_they_are_forced():
    """OpenAI documents that strict outputs keep the schema's key order; with no whitespace either,
    every key and separator is forced (jump-forward emits them without sampling)."""
    item = {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": ["number", "null"]}},
            "required": ["k", "v"], "additionalProperties": False}
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                               "tags": {"type": "array", "items": item}},
              "required": ["name", "age", "tags"], "additionalProperties": False}
    check_texts(schema, ['{"name":"Bo","age":3,"tags":[{"k":"x","v":null},{"k":"","v":1.5}]}'],
                narrowed=['{"age":3,"name":"Bo","tags":[]}', '{"name":"Bo","age":3,"tags":[{"v":1,"k":"x"}]}',
                          '{"name": "Bo", "age": 3, "tags": []}'], strict=True)
    check_texts(schema, ['{"age":3,"name":"Bo","tags":[]}', '{"name": "Bo", "age": 3, "tags": []}'])
    m = Matcher(compile_json_schema(schema, strict=True))
    forced = []
    for typed in (b"", b'Bo"', b"3", b",", b"{", b'x"', b"null", b"]"):
        assert m.advance(typed)
        forced.append(m.forced())
        assert m.advance(forced[-1])
    assert forced == [b'{"name":"', b',"age":', b"", b'"tags":[', b'"k":"', b',"v":', b"}", b"}"]
    assert m.accepting
