"""Pydantic configs as shareable URL parameters, and back.

A scenario is a pydantic config flattened to short string parameters, e.g.
``?lengths.kind=lognormal&lengths.sigma=1.2&alpha=0.5``: nested models use dotted keys, lists
are comma-joined, booleans are ``true``/``false`` and ``None`` is the empty string. `to_query`
writes them (optionally only the values that differ from the defaults) and `from_query` reads
them back through the model's own validation. `from_query` never raises on any input: every
unknown, malformed or out-of-range parameter falls back to its default and yields a notice a
person can read.

This module is engine-side: it never imports Streamlit.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Iterable, Mapping
from itertools import combinations
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from vlsim.config import get_path, set_path

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_PARAMS = 64
"""At most this many URL parameters are considered; the rest are ignored with a notice."""

MAX_VALUE_CHARS = 100_000
"""A parameter value longer than this is ignored (a URL is no place for a data set)."""

_NONE_WORDS = ("", "none", "null")


# ----------------------------------------------------------------------------- writing


def _to_text(value: Any) -> str:
    """One value as URL text: floats round-trip exactly (repr, '4' for 4.0), lists are
    comma-joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value).removesuffix(".0")
    if isinstance(value, (list, tuple)):
        return ",".join(_to_text(v) for v in value)
    return str(value)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {dotted key: leaf value}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def to_query(cfg: BaseModel, defaults: BaseModel | None = None) -> dict[str, str]:
    """Flatten a config to {dotted key: text}; with defaults, only what differs from them.

    A nested model whose ``kind`` differs from the default's is written whole (all its fields),
    since `from_query` starts such a model from its own family's defaults.
    """
    flat = {k: _to_text(v) for k, v in _flatten(cfg.model_dump(mode="python")).items()}
    if defaults is None:
        return flat
    base = {k: _to_text(v) for k, v in _flatten(defaults.model_dump(mode="python")).items()}
    changed_kinds = {
        key[: -len("kind")]
        for key, value in flat.items()
        if (key == "kind" or key.endswith(".kind")) and base.get(key) != value
    }
    return {
        key: value
        for key, value in flat.items()
        if base.get(key) != value or any(key.startswith(p) for p in changed_kinds if p)
    }


# ----------------------------------------------------------------------------- reading


def unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] wrappers."""
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_members(annotation: Any) -> list[Any]:
    return [unwrap(a) for a in get_args(annotation)] if _is_union(annotation) else [annotation]


def _kind_of(model_cls: type[BaseModel]) -> str | None:
    """The literal value of a model's ``kind`` tag, if it has one."""
    field = model_cls.model_fields.get("kind")
    if field is None:
        return None
    args = get_args(unwrap(field.annotation))
    return str(args[0]) if get_origin(unwrap(field.annotation)) is Literal and args else None


def models_by_kind(annotation: Any) -> dict[str, type[BaseModel]]:
    """The models a field's annotation allows, by their ``kind`` tag ('' for an untagged one)."""
    members = [m for m in _union_members(unwrap(annotation)) if _is_model(m)]
    return {(_kind_of(m) or ""): m for m in members}


def _model_for(annotation: Any, kind: str | None) -> type[BaseModel] | None:
    """The model class a (possibly union) annotation means for a given ``kind`` tag."""
    models = models_by_kind(annotation)
    if len(models) == 1:
        return next(iter(models.values()))
    return models.get(kind) if kind else None


def _kinds_of(annotation: Any) -> list[str]:
    """The ``kind`` tags of a (union of) tagged model(s)."""
    return [k for k in models_by_kind(annotation) if k]


def _field_annotation(model_cls: type[BaseModel], path: tuple[str, ...], base: dict) -> Any | None:
    """The annotation of the field at a path of nested models (defaults pick union members)."""
    cls: type[BaseModel] | None = model_cls
    annotation = None
    for depth, part in enumerate(path):
        if cls is None or part not in cls.model_fields:
            return None
        annotation = cls.model_fields[part].annotation
        if depth < len(path) - 1:
            kind = get_path(base, (*path[: depth + 1], "kind"))
            cls = _model_for(annotation, kind if isinstance(kind, str) else None)
    return annotation


def _leaf_kind(annotation: Any) -> str:
    """How to parse a leaf's text: 'list', 'optional' (empty text = None) or 'scalar'."""
    ann = unwrap(annotation)
    members = _union_members(ann)
    optional = any(m is type(None) for m in members)
    non_none = [m for m in members if m is not type(None)]
    if len(non_none) == 1 and get_origin(unwrap(non_none[0])) in (list, tuple, set, frozenset):
        return "list"
    return "optional" if optional else "scalar"


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _coerce(text: str, annotation: Any) -> Any:
    """Text -> int, float or bool where the annotation asks for one and the text is one.

    Anything else stays text, so pydantic's own validation reports what is wrong with it
    (some validators run before pydantic's conversions and accept no strings).
    """
    members = [m for m in _union_members(unwrap(annotation)) if m is not type(None)]
    stripped = text.strip()
    if bool in members:
        low = stripped.lower()
        return True if low in _TRUE else False if low in _FALSE else text
    if int in members:
        try:
            return int(stripped)
        except ValueError:
            try:
                number = float(stripped)
            except ValueError:
                return text
            return int(number) if number.is_integer() else text
    if float in members:
        try:
            return float(stripped)
        except ValueError:
            return text
    return text


def _parse_leaf(text: str, annotation: Any) -> Any:
    """URL text -> a value for pydantic to validate: lists split at commas, '' -> None."""
    how = _leaf_kind(annotation)
    if how == "list":
        stripped = text.strip()
        members = [m for m in _union_members(unwrap(annotation)) if m is not type(None)]
        item_args = get_args(unwrap(members[0]))
        item_ann = item_args[0] if item_args else str
        return [] if not stripped else [_coerce(i.strip(), item_ann) for i in stripped.split(",")]
    if how == "optional" and text.strip().lower() in _NONE_WORDS:
        return None
    return _coerce(text, annotation)


def _as_text(value: Any) -> str:
    """A query value as one string (repeated keys: the last one, as st.query_params does)."""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return value if isinstance(value, str) else str(value)


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Resolved:
    """One URL parameter resolved against the model: its path and how to parse its text."""

    def __init__(self, key: str, text: str, path: tuple[str, ...], annotation: Any):
        self.key, self.text, self.path, self.annotation = key, text, path, annotation
        self.is_kind = path[-1] == "kind"


def _resolve(
    model_cls: type[BaseModel], key: str, kinds: Mapping[tuple[str, ...], str], base: dict
) -> tuple[tuple[str, ...], Any] | str:
    """(path, annotation) of a dotted key, or an error message when the key means nothing.

    kinds: the ``kind`` tags the URL sets, by the path of their model; where the URL sets
    none, the default's tag decides which fields a nested model has.
    """
    parts = tuple(key.split("."))
    if not all(parts):
        return "not a setting name"
    cls: type[BaseModel] | None = model_cls
    for depth, part in enumerate(parts):
        assert cls is not None
        field = cls.model_fields.get(part)
        if field is None:
            return f"{cls.__name__} has no setting {part!r}"
        last = depth == len(parts) - 1
        annotation = field.annotation
        here = parts[: depth + 1]
        kind = kinds.get(here, get_path(base, (*here, "kind")))
        nested = _model_for(annotation, kind if isinstance(kind, str) else None)
        if last:
            if nested is not None or any(_is_model(m) for m in _union_members(unwrap(annotation))):
                return f"{key!r} is a group of settings; give one of its fields (e.g. {key}.kind)"
            return parts, annotation
        if nested is None:
            return f"{'.'.join(parts[: depth + 1])!r} has no sub-settings"
        cls = nested
    return "not a setting name"  # pragma: no cover (loop always returns)


def _build(defaults: dict, items: Iterable[_Resolved]) -> dict:
    """Defaults with the given parameters applied; a changed ``kind`` resets its model."""
    data = copy.deepcopy(defaults)
    items = list(items)
    for item in items:  # kinds first: they decide which fields exist
        if item.is_kind:
            parent = item.path[:-1]
            current = get_path(data, parent)
            if not isinstance(current, dict) or current.get("kind") != item.text:
                if parent:
                    set_path(data, parent, {"kind": item.text})
                else:
                    data = {"kind": item.text}
    for item in items:
        if not item.is_kind:
            set_path(data, item.path, _parse_leaf(item.text, item.annotation))
    return data


def _first_message(err: ValidationError) -> str:
    """The first error as 'where: message' (where omitted for errors about the whole model)."""
    e = err.errors()[0]
    msg = str(e["msg"]).removeprefix("Value error, ")
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {msg}" if where else msg


def _blame(err: ValidationError, items: list[_Resolved]) -> dict[str, str]:
    """Parameters that a validation error clearly points at: {key: message}."""
    blamed: dict[str, str] = {}
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        # The longest parameter path that is an ordered subsequence of the error location
        # ending at its last element (union tags such as 'pareto' sit between the parts).
        best: _Resolved | None = None
        for item in items:
            if (
                loc
                and item.path[-1] == _last_name(loc)
                and _subsequence(item.path, loc)
                and (best is None or len(item.path) > len(best.path))
            ):
                best = item
        if best is not None:
            blamed.setdefault(best.key, msg)
        elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            for item in items:
                if item.is_kind and item.path[:-1] == loc[: len(item.path) - 1]:
                    blamed.setdefault(item.key, msg)
    return blamed


def _last_name(loc: tuple[str, ...]) -> str:
    """The last non-index element of an error location ('aggregators', '2' -> 'aggregators')."""
    for part in reversed(loc):
        if not part.isdigit():
            return part
    return loc[-1]


def _subsequence(path: tuple[str, ...], loc: tuple[str, ...]) -> bool:
    it = iter(loc)
    return all(any(part == other for other in it) for part in path)


def from_query(
    model_cls: type[ModelT],
    params: Mapping[str, Any],
    *,
    defaults: ModelT | None = None,
    prefix: str = "",
) -> tuple[ModelT, list[str]]:
    """Parse URL parameters back into a config; bad parameters fall back to the defaults.

    params: {dotted key: text} as `to_query` writes (or st.query_params). With a prefix, only
    keys that start with it are read (prefix stripped) and all others are left alone; without
    one every key must belong to the model. defaults: the config to start from (by default
    ``model_cls()``). Returns the config and one notice per parameter that was not used.
    Never raises because of params.
    """
    if defaults is None:
        defaults = model_cls()
    try:
        return _from_query(model_cls, params, defaults, prefix)
    except Exception as err:  # noqa: BLE001 - the promise is: never raise on user input
        return defaults, [
            f"The URL's settings could not be read ({type(err).__name__}); using the defaults."
        ]


def _from_query(
    model_cls: type[ModelT], params: Mapping[str, Any], defaults: ModelT, prefix: str
) -> tuple[ModelT, list[str]]:
    notices: list[str] = []
    raw: dict[str, str] = {}
    for key, value in params.items():
        key = str(key)
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix) :]
        text = _as_text(value)
        if len(raw) >= MAX_PARAMS:
            notices.append(
                f"Too many URL parameters; {prefix}{_short(key)} and later ones ignored."
            )
            break
        if len(text) > MAX_VALUE_CHARS:
            notices.append(f"URL parameter {prefix}{_short(key)} is too long; ignored.")
            continue
        raw[key] = text

    base = defaults.model_dump(mode="python")
    kinds: dict[tuple[str, ...], str] = {}
    for key, text in list(raw.items()):
        if key.endswith(".kind"):
            path = tuple(key.split("."))[:-1]
            field = _field_annotation(model_cls, path, base)
            known = _kinds_of(field) if field is not None else []
            if known and text not in known:
                notices.append(
                    f"URL parameter {prefix}{key}={_short(text)!r} ignored: choose one of "
                    f"{', '.join(known)}; using the default {get_path(base, (*path, 'kind'))}."
                )
                del raw[key]
            else:
                kinds[path] = text
    items: list[_Resolved] = []
    for key, text in raw.items():
        resolved = _resolve(model_cls, key, kinds, base)
        if isinstance(resolved, str):
            notices.append(f"Unknown URL parameter {prefix}{_short(key)} ignored: {resolved}.")
            continue
        path, annotation = resolved
        items.append(_Resolved(key, text, path, annotation))
    # Deterministic order: kinds first, then by key.
    items.sort(key=lambda it: (not it.is_kind, it.key))

    def attempt(chosen: list[_Resolved]) -> ModelT | ValidationError:
        try:
            return model_cls.model_validate(_build(base, chosen))
        except ValidationError as err:
            return err

    def reject(item: _Resolved, why: str) -> None:
        default = get_path(base, item.path)
        shown = f"; using the default {_short(_to_text(default))}" if default is not None else ""
        notices.append(
            f"URL parameter {prefix}{item.key}={_short(item.text)!r} ignored: {why}{shown}."
        )

    # Phase 1: drop the parameters that the errors name, until the rest validates.
    current = list(items)
    while True:
        result = attempt(current)
        if not isinstance(result, ValidationError):
            return result, notices
        blamed = _blame(result, current)
        if not blamed:
            break
        for item in [it for it in current if it.key in blamed]:
            reject(item, blamed[item.key])
        current = [it for it in current if it.key not in blamed]

    # Phase 2: errors that name no single parameter (a rule between fields): keep the largest
    # set found greedily, adding parameters one at a time, then two at a time.
    accepted: list[_Resolved] = []
    remaining = list(current)
    progress = True
    while progress and remaining:
        progress = False
        for item in list(remaining):
            if not isinstance(attempt([*accepted, item]), ValidationError):
                accepted.append(item)
                remaining.remove(item)
                progress = True
        if not progress and len(remaining) >= 2:
            for a, b in combinations(list(remaining), 2):
                if not isinstance(attempt([*accepted, a, b]), ValidationError):
                    accepted += [a, b]
                    remaining = [it for it in remaining if it not in (a, b)]
                    progress = True
                    break
    for item in remaining:
        result = attempt([*accepted, item])
        why = (
            _first_message(result)
            if isinstance(result, ValidationError)
            else "conflicts with other settings"
        )
        reject(item, why)
    result = attempt(accepted)
    if isinstance(result, ValidationError):  # pragma: no cover (accepted always validates)
        return defaults, [*notices, "The URL's settings conflict; using the defaults."]
    return result, notices
