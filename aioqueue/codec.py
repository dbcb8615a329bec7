"""A task's arguments and result as JSON: validated against the function's
signature and annotations with pydantic, never pickled."""

from __future__ import annotations

import inspect
import json
import math
import operator
import typing
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
import pydantic_core
from pydantic import TypeAdapter

from .context import JobContext
from .errors import ConfigurationError, PayloadNotSerializable


def result_adapter(annotation: Any) -> TypeAdapter[Any]:
    """Validates a task's return value. inf and NaN have no JSON form, so
    floats refuse them (models, dataclasses and TypedDicts keep their own
    config; ``encode_result`` catches those by reading the JSON back)."""
    return _result_adapter(annotation)[0]


def _result_adapter(annotation: Any) -> tuple[TypeAdapter[Any], bool]:
    """The adapter, and whether its floats refuse inf and NaN."""
    try:
        return TypeAdapter(annotation, config=pydantic.ConfigDict(allow_inf_nan=False)), True
    except pydantic.PydanticUserError:
        return TypeAdapter(annotation), False


# Readback-safe schemas: for these, the JSON ``dump_json`` writes always reads
# back, except that the JSON reader refuses integers of more than 4,300 digits
# and nesting deeper than about 200 levels. Neither fits in SHORT_JSON
# characters, so a result that short needs no readback. Keys are the schema's
# exact key set: anything else (constraints, custom serialisers) is not known safe.
SHORT_JSON = 256
_SCALARS = {"str", "bool", "none"}  # any length reads back (floats: if checked)
_SHORT_SAFE = {"int", "any"}


def readback_limit(schema: Any, floats_checked: bool) -> float:
    """The longest result JSON for ``schema`` that provably reads back (so
    ``encode_result`` may skip reading it back): unlimited for str, bool,
    None and checked floats; SHORT_JSON for int and Any; for lists, str-keyed
    dicts, optionals and unions, their parts' least; -1 (always read back)
    for anything else."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    keys = set(schema) if isinstance(schema, dict) else set()
    if keys == {"type"} and (kind in _SCALARS or (kind == "float" and floats_checked)):
        return math.inf
    if keys == {"type"} and kind in _SHORT_SAFE:
        return SHORT_JSON
    if kind == "list" and keys == {"type", "items_schema"}:
        parts = [schema["items_schema"]]
    elif kind == "dict" and keys == {"type", "keys_schema", "values_schema"} \
            and schema["keys_schema"] == {"type": "str"}:
        parts = [schema["values_schema"]]
    elif kind == "nullable" and keys == {"type", "schema"}:
        parts = [schema["schema"]]
    elif kind == "union" and keys == {"type", "choices"} \
            and all(isinstance(c, dict) for c in schema["choices"]):
        parts = list(schema["choices"])
    else:
        return -1
    # a container adds no risk of its own: only int and Any can hold a long
    # number or deep nesting
    return min(readback_limit(part, floats_checked) for part in parts)


class ArgumentCodec:
    """Validates a task's arguments against its signature and turns them into
    JSON and back. Built once per task."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot resolve the annotations of {fn.__qualname__}: {exc}") from exc
        fields: dict[str, Any] = {}
        self.names: list[str] = []
        self.positional_only: set[str] = set()
        params = list(self.signature.parameters.items())
        self.wants_context = bool(params) and hints.get(params[0][0]) is JobContext
        if self.wants_context:
            params = params[1:]
        for name, param in params:
            if hints.get(name) is JobContext:
                raise ConfigurationError(
                    f"task {fn.__qualname__}: the JobContext parameter must come first")
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigurationError(
                    f"task {fn.__qualname__}: *args/**kwargs parameters are not supported; "
                    "name every parameter so it can be validated")
            if param.kind is param.POSITIONAL_ONLY:
                self.positional_only.add(name)
            annotation = hints.get(name, Any)
            default = ... if param.default is param.empty else param.default
            fields[f"p{len(self.names)}"] = (annotation, pydantic.Field(default, alias=name))
            self.names.append(name)
        self.model: type[pydantic.BaseModel] = pydantic.create_model(
            f"{fn.__name__}_args",
            # inf and NaN have no JSON form: refuse them at enqueue
            __config__=pydantic.ConfigDict(extra="forbid", populate_by_name=False,
                                           arbitrary_types_allowed=False,
                                           allow_inf_nan=False),
            **fields,
        )
        # the worker calls these for every job: pydantic-core's own methods,
        # without the Python wrappers of BaseModel and TypeAdapter (same defaults)
        self._parse_args = self.model.__pydantic_validator__.validate_json
        self._values = _attribute_tuple([f"p{i}" for i in range(len(self.names))])
        self.returns, floats_checked = _result_adapter(hints.get("return", Any))
        self._check_result = self.returns.validator.validate_python
        self._dump_result = self.returns.serializer.to_json
        self.readback_above = readback_limit(self.returns.core_schema, floats_checked)
        """Result JSON longer than this is read back before it is stored."""

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.names):
            raise TypeError(f"takes {len(self.names)} positional arguments but "
                            f"{len(args)} were given")
        data = dict(zip(self.names, args, strict=False))
        for key, value in kwargs.items():
            if key in data:
                raise TypeError(f"got multiple values for argument {key!r}")
            if key in self.positional_only:
                raise TypeError(f"argument {key!r} is positional-only")
            data[key] = value
        return data

    def encode(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
        """Validate (raises ``pydantic.ValidationError``) and serialise."""
        data = self.bind(args, kwargs)
        model = self.model.model_validate(data)
        try:
            return model.model_dump_json(by_alias=True)
        except pydantic_core.PydanticSerializationError as exc:
            raise PayloadNotSerializable(str(exc)) from exc

    def encode_values(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]
                      ) -> tuple[str, dict[str, Any]]:
        """As :meth:`encode`, also answering the validated arguments by
        parameter name (what a concurrency key function is called with)."""
        data = self.bind(args, kwargs)
        model = self.model.model_validate(data)
        try:
            payload = model.model_dump_json(by_alias=True)
        except pydantic_core.PydanticSerializationError as exc:
            raise PayloadNotSerializable(str(exc)) from exc
        return payload, {name: getattr(model, f"p{i}") for i, name in enumerate(self.names)}

    def decode(self, payload: str) -> tuple[list[Any], dict[str, Any]]:
        """Parse stored JSON and validate it again; returns call arguments."""
        if payload[:1] == "{":
            # the usual form (a typed enqueue): parsed and validated in one pass
            model = self._parse_args(payload)
        else:
            raw = json.loads(payload)
            if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], list)
                    and isinstance(raw[1], dict)):
                raise ValueError("arguments must be a JSON object or [args, kwargs]")
            # enqueued by name by a producer without the task code
            model = self.model.model_validate(self.bind(tuple(raw[0]), raw[1]))
        values = dict(zip(self.names, self._values(model), strict=True))
        if not self.positional_only:
            return [], values
        return [values.pop(n) for n in self.names if n in self.positional_only], values

    def encode_result(self, value: Any) -> str:
        """Validate the return value against the annotation, then serialise.

        :raises pydantic.ValidationError: the value does not fit the annotation.
        """
        checked = self._check_result(value)
        try:
            raw = self._dump_result(checked).decode()
        except pydantic_core.PydanticSerializationError as exc:
            raise PayloadNotSerializable(f"result is not JSON-serialisable: {exc}") from exc
        # what Job.result() will parse: a value whose JSON does not read back
        # (inf/NaN inside a model are written as null) is refused here, on
        # the worker, instead of breaking the producer's result(); skipped
        # when the annotation and length prove it reads back (readback_limit)
        if len(raw) > self.readback_above:
            self.returns.validate_json(raw)
        return raw


def _attribute_tuple(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A function giving an object's attributes ``names`` as a tuple."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    if names:
        return lambda obj: (getattr(obj, names[0]),)
    return lambda obj: ()


def encode_untyped(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """Arguments for a task this process does not know: stored as [args, kwargs]."""
    try:
        return pydantic_core.to_json([list(args), dict(kwargs)]).decode()
    except pydantic_core.PydanticSerializationError as exc:
        raise PayloadNotSerializable(str(exc)) from exc
