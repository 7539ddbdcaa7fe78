"""Input models: pydantic checks the types and bounds, this module turns its errors into one readable line.

Run specs and sweep files are pydantic models (strict: ``"3"`` is no integer and ``true`` no number, as in the
YAML a user wrote). A ``ValidationError`` lists every problem in pydantic's own words; flowsteer shows the
first one as a sentence that names the field by its dotted path (``algorithms.fql.grid.alpha``), what it
accepts, the value it got and, for a misspelt name, the closest valid ones.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo


class InputModel(BaseModel):
    """A strict, frozen input model that refuses unknown fields; ``label`` names its fields in messages."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    label: ClassVar[str] = "field"  # "unknown {label} 'x'"


def did_you_mean(name: Any, valid: Iterable[str]) -> str:
    """' Did you mean a or b?' for the valid names closest to ``name``, or ''."""
    close = difflib.get_close_matches(str(name), list(valid), n=2)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def first_error(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """The first error of ``exc`` (raised validating ``model``) as one sentence; ``prefix`` is the path of the
    model inside a larger input (``run``), so the message names the field as the user wrote it."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])
    path = _dotted((*prefix.split("."), *loc) if prefix else loc)
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    field = _field_at(model, loc)
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        valid = list(parent.model_fields) if parent else []
        label = parent.label if parent and issubclass(parent, InputModel) else "field"
        where = _dotted((*prefix.split("."), *loc[:-1]) if prefix else loc[:-1])
        text = f"unknown {label} {loc[-1]!r}.{did_you_mean(loc[-1], valid)} Valid: {', '.join(valid)}."
        return f"{where}: {text}" if where else text
    if kind in ("value_error", "assertion_error"):
        # A validator's message may name its own field ("gpu must be ..."), continue the path (".loguniform
        # needs ..."), or neither; each gets the full path the user wrote.
        text = str(ctx.get("error", error["msg"]))
        last = path.rsplit(".", 1)[-1]
        if not path:
            return text
        if text.startswith("."):
            return f"{path}{text}"
        if text.startswith(last) and text[len(last) : len(last) + 1] in (" ", ":", ".", "["):
            return f"{path}{text[len(last) :]}"
        return f"{path}: {text}"
    if kind == "literal_error":
        choices = _literal_choices(field)
        return f"{path} must be one of {', '.join(map(str, choices))}, got {value!r}."
    lower, upper = _bounds(field)
    integer = _accepts(field, int)
    noun = "an integer" if integer else "a number"
    if kind in ("less_than_equal", "less_than") and upper is not None:
        return f"{path} must be at most {upper:,}, got {value:,}."
    if kind in ("int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "finite_number",
                "greater_than_equal", "greater_than", "bool_type"):  # fmt: skip
        if kind == "bool_type":
            return f"{path} must be true or false, got {value!r}."
        if lower is not None:
            op = ">=" if _inclusive_lower(field) else ">"
            return f"{path} must be {noun} {op} {lower}, got {value!r}."
        return f"{path} must be {noun}, got {value!r}."
    if kind == "string_type":
        return f"{path} must be text, got {value!r}."
    if kind == "too_short" and _accepts(field, str):
        return f"{path} must be non-empty text, got {value!r}."
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{path} must be a mapping, got {value!r}."
    if kind in ("list_type", "tuple_type", "too_short"):
        return f"{path} must be a non-empty list, got {value!r}."
    return f"{path}: {error['msg'][0].lower()}{error['msg'][1:]}, got {value!r}."


# ------------------------------------------------------------------------------------------------ internals


def _dotted(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if part == "":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class found by following ``loc`` through nested model fields (None past a plain mapping)."""
    key_next = False  # after a field holding a mapping or list of models comes a key or an index
    for part in loc:
        if key_next:
            key_next = False
            continue
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = _model_of(annotation)
        key_next = typing.get_origin(annotation) in (dict, list, tuple)
    return model


def _field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    if not loc:
        return None
    parent = _model_at(model, loc[:-1])
    name = loc[-1]
    return parent.model_fields.get(name) if parent and isinstance(name, str) else None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _bounds(field: FieldInfo | None) -> tuple[Any, Any]:
    lower = upper = None
    for item in field.metadata if field else ():
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            lower = getattr(item, "ge", getattr(item, "gt", None))
        if isinstance(item, annotated_types.Le | annotated_types.Lt):
            upper = getattr(item, "le", getattr(item, "lt", None))
    return lower, upper


def _inclusive_lower(field: FieldInfo | None) -> bool:
    return not any(isinstance(item, annotated_types.Gt) for item in (field.metadata if field else ()))


def _accepts(field: FieldInfo | None, kind: type) -> bool:
    """Whether the field is `kind` or an optional `kind` (int | None)."""
    if field is None:
        return False
    union = typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
    return field.annotation is kind or (union and kind in typing.get_args(field.annotation))


def _literal_choices(field: FieldInfo | None) -> tuple[Any, ...]:
    annotation = field.annotation if field else None
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return ()
