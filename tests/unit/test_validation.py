from timedb.validation import compile_schema, first_error, to_json_schema


def test_nullable_becomes_any_of_null():
    schema = {"type": "object", "properties": {"v": {"type": "number", "nullable": True}}}
    converted = to_json_schema(schema)
    assert converted["properties"]["v"] == {"anyOf": [{"type": "null"}, {"type": "number"}]}
    validator = compile_schema(schema)
    assert first_error(validator, {"v": None}) is None
    assert first_error(validator, {"v": 1.5}) is None
    assert "v" in (first_error(validator, {"v": "x"}) or "")


def test_error_names_the_path():
    validator = compile_schema({"type": "array", "items": {"type": "object", "required": ["a"]}})
    message = first_error(validator, [{"a": 1}, {}])
    assert message is not None and "/1" in message
