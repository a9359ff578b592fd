"""One pydantic model bound to widgets and to the URL: the round trip every page shares.

A `Page` reads its URL once on entry (a shared link: bad values fall back with a notice), gives
the widgets of each bound model their values, and writes the settings back to the URL on every
run, only where they differ from the defaults. A `Binder` draws one model's fields as widgets
chosen from their annotations (a number box or slider for numbers, a select for a Literal, a
toggle for a bool, a multiselect for a list, a family select for a tagged union, text for the
rest), with the field's description as help and its bounds as the allowed range, and validates
the widgets back into the model: on a bad value it shows what is wrong in the widgets' own
words, and the URL keeps the last good settings. UI only: the codec is vlsim.url_codec.
"""

from __future__ import annotations

import copy
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, NoReturn, TypeVar, Union, get_args, get_origin

import annotated_types
import streamlit as st
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pages.common import new_url_params, seed_widgets, show_notices, write_url
from vlsim.config import get_path, set_path
from vlsim.numfmt import format_number
from vlsim.url_codec import from_query, models_by_kind, to_query, unwrap

M = TypeVar("M", bound=BaseModel)

MAX_WIDGET_INT = 2**53 - 1  # the largest integer a browser number widget holds exactly


@dataclass(frozen=True)
class View:
    """A field shown through widgets of the page's own: its value -> widget values, and back."""

    to_widgets: Callable[[Any], Mapping[str, Any]]
    from_widgets: Callable[[], Any]


# ----------------------------------------------------------------------------- fields


def _plain(annotation: Any) -> Any:
    """An annotation without Annotated[...] and Optional[...] (Optional[X] is drawn as X)."""
    ann = unwrap(annotation)
    if get_origin(ann) in (Union, types.UnionType):
        members = [unwrap(m) for m in get_args(ann) if m is not type(None)]
        ann = members[0] if len(members) == 1 else ann
    return ann


def _kind(annotation: Any) -> str:
    """Which widget a field gets: family, bool, choice, list, number or text."""
    ann = _plain(annotation)
    if len(models_by_kind(ann)) > 1:
        return "family"
    if ann is bool:
        return "bool"
    if get_origin(ann) is Literal:
        return "choice"
    if get_origin(ann) in (list, tuple, set):
        return "list"
    if ann in (int, float):
        return "number"
    return "text"


_CONSTRAINTS = {
    annotated_types.Ge: ("ge", "low", "at least"),
    annotated_types.Gt: ("gt", "low", "more than"),
    annotated_types.Le: ("le", "high", "at most"),
    annotated_types.Lt: ("lt", "high", "less than"),
}


def _bounds(field: FieldInfo) -> dict[str, tuple[str, float]]:
    """A field's bounds: {'low'/'high': (constraint in words, value)}."""
    out: dict[str, tuple[str, float]] = {}
    for meta in field.metadata:
        for cls, (attr, side, words) in _CONSTRAINTS.items():
            if isinstance(meta, cls):
                out[side] = (words, getattr(meta, attr))
    return out


def allowed_range(field: FieldInfo) -> str:
    """A field's allowed values in words: '2 to 1024', 'at least 0 and less than 1', or ''."""
    b = _bounds(field)
    if b.get("low", ("",))[0] == "at least" and b.get("high", ("",))[0] == "at most":
        return f"{format_number(b['low'][1])} to {format_number(b['high'][1])}"
    return " and ".join(f"{w} {format_number(v)}" for w, v in filter(None, b.values()))


def field_default(field: FieldInfo) -> Any:
    """A field's default value (None when it is required)."""
    return None if field.is_required() else field.get_default(call_default_factory=True)


def number_input(field: FieldInfo, key: str, label: str, help: str | None, *,
                 bounded: bool = False, **kwargs: Any) -> Any:  # fmt: skip
    """A number box for a field: its type, its description and its allowed range.

    bounded=False leaves the range to validation: a browser widget with bounds silently keeps
    its old value when an out-of-range number is typed, whereas without them the value reaches
    the page, which says what is allowed (the help names the range).
    """
    is_int = _plain(field.annotation) is int
    default = field_default(field)
    seed_widgets({key: default})
    cast = int if is_int else float
    big = abs(default or 0) >= 10
    kwargs.setdefault("step", (10 if big else 1) if is_int else (10.0 if big else 0.05))
    if not is_int:
        kwargs.setdefault("format", "%g")
    b = _bounds(field)
    if bounded:
        low = b["low"][1] if b.get("low", ("",))[0] == "at least" else None
        high = b["high"][1] if b.get("high", ("",))[0] == "at most" else None
    else:
        low, high = (-MAX_WIDGET_INT if is_int else None), None
        if allowed := allowed_range(field):
            help = f"{help or ''} Allowed: {allowed}.".strip()
    if low is not None:
        kwargs.setdefault("min_value", cast(low))
    if high is not None or is_int:
        kwargs.setdefault("max_value", cast(high) if high is not None else MAX_WIDGET_INT)
    return st.number_input(label, key=key, help=help, **kwargs)


def family_fields(model_cls: type[BaseModel]) -> list[str]:
    """The fields of one family of a tagged union that get a number box."""
    return [n for n, f in model_cls.model_fields.items() if _kind(f.annotation) == "number"]


# ----------------------------------------------------------------------------- one model


class Binder(Generic[M]):
    """One pydantic model's fields as widgets (keys `key` + dotted field path) and URL parameters
    (`url` + dotted path). Made by `Page.bind`."""

    def __init__(self, page: str, model_cls: type[M], key: str, fields: Sequence[str], *,
                 url: str = "", defaults: M | Callable[[], M] | None = None,
                 views: Mapping[str, View] | None = None, keys: Mapping[str, str] | None = None,
                 not_in_url: Sequence[str] = (),
                 check: Callable[[M], tuple[M, list[str]]] | None = None) -> None:  # fmt: skip
        """fields: the dotted paths with widgets (the others come from the defaults or the
        link); views: fields drawn by the page's own widgets; keys: widget keys other than
        key + path; not_in_url: fields the page sets itself; check: called with a link's config,
        returns the config to use and notices."""
        self.page, self.model_cls, self.key, self.url = page, model_cls, key, url
        self.fields, self.views, self.keys = tuple(fields), dict(views or {}), dict(keys or {})
        self.not_in_url, self.check = tuple(not_in_url), check
        self._defaults = defaults
        self.labels: dict[str, str] = {}
        self._state = f"_{page}.{key}{model_cls.__name__}."

    @property
    def defaults(self) -> M:
        d = self._defaults
        return self.model_cls() if d is None else d() if callable(d) else d

    @property
    def good(self) -> M:
        """The last settings that validated (the defaults before any)."""
        return st.session_state.get(f"{self._state}good") or self.defaults

    def key_of(self, path: str) -> str:
        return self.keys.get(path, f"{self.key}{path}")

    def field(self, path: str) -> FieldInfo:
        cls: type[BaseModel] = self.model_cls
        *parents, name = path.split(".")
        for part in parents:
            cls = next(iter(models_by_kind(cls.model_fields[part].annotation).values()))
        return cls.model_fields[name]

    # -- values

    def widget_values(self, cfg: M) -> dict[str, Any]:
        """Widget key -> value for a config (the inverse of `data`)."""
        data = cfg.model_dump(mode="python")
        values: dict[str, Any] = {}
        for path in self.fields:
            value, key = get_path(data, path.split(".")), self.key_of(path)
            if path in self.views:
                values.update(self.views[path].to_widgets(value))
            elif _kind(self.field(path).annotation) == "family":
                values[f"{key}.kind"] = value["kind"]
                family = models_by_kind(self.field(path).annotation)[value["kind"]]
                values.update(
                    {f"{key}.{value['kind']}.{f}": value[f] for f in family_fields(family)}
                )
            else:
                values[key] = value
        return values

    def load(self, cfg: M) -> list[str]:
        """Set the widgets to a config (also the base of fields without widgets); returns
        notices for numbers too large for a browser widget, which keep their defaults."""
        values = self.widget_values(cfg)
        fallback = self.widget_values(self.defaults)
        notices = []
        for key, value in list(values.items()):
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and abs(value) > MAX_WIDGET_INT
            ):
                notices.append(
                    f"{key.split('.')[-1]} = {format_number(value)} is too large for this page"
                )
                values.pop(key)
                if key in fallback:
                    values[key] = fallback[key]
                else:
                    st.session_state.pop(key, None)
        seed_widgets(values, force=True)
        st.session_state[f"{self._state}base"] = cfg.model_dump(mode="python")
        st.session_state[f"{self._state}good"] = cfg
        return notices

    def data(self, **overrides: Any) -> dict[str, Any]:
        """The settings the widgets describe, as a dict on top of the base (link or defaults);
        overrides (dotted paths allowed as keys) win."""
        ss = st.session_state
        data = copy.deepcopy(
            ss.get(f"{self._state}base") or self.defaults.model_dump(mode="python")
        )
        for path in self.fields:
            key = self.key_of(path)
            if path in self.views:
                value = self.views[path].from_widgets()
            elif _kind(self.field(path).annotation) == "family":
                kind = ss[f"{key}.kind"]
                family = models_by_kind(self.field(path).annotation).get(kind)
                names = family_fields(family) if family else []
                value = {"kind": kind, **{f: ss[f"{key}.{kind}.{f}"] for f in names
                                          if f"{key}.{kind}.{f}" in ss}}  # fmt: skip
            elif key in ss:
                value = ss[key]
            else:
                continue
            set_path(data, path.split("."), value)
        for path, value in overrides.items():
            set_path(data, path.split("."), value)
        return data

    def read(self, **overrides: Any) -> M:
        """The model the widgets describe (ValidationError when they do not make one)."""
        cfg = self.model_cls.model_validate(self.data(**overrides))
        st.session_state[f"{self._state}good"] = cfg
        return cfg

    def value(self, why: str | None = None, **overrides: Any) -> M | None:
        """The model the widgets describe, or None after an error box (why, then what is wrong
        in the widgets' labels); the URL keeps the last good settings."""
        try:
            return self.read(**overrides)
        except ValidationError as err:
            if why is not None:
                st.error(f"{why}\n\n{self.errors(err)}", icon=":material/error:")
            return None

    def errors(self, err: ValidationError) -> str:
        """Validation errors as lines naming the widget a student typed into."""
        tags = {k for p in self.fields for k in models_by_kind(self._annotation(p))}
        lines = []
        for e in err.errors():
            loc = [str(p) for p in e["loc"] if str(p) not in tags and not str(p).isdigit()]
            where = next((self.labels[".".join(loc[:n])] for n in range(len(loc), 0, -1)
                          if ".".join(loc[:n]) in self.labels), None)  # fmt: skip
            where = where or (loc[-1].replace("_", " ") if loc else "settings")
            lines.append(f"- **{where}**: {str(e['msg']).removeprefix('Value error, ')}")
        return "\n".join(lines)

    def _annotation(self, path: str) -> Any:
        try:
            return self.field(path).annotation
        except (KeyError, StopIteration):
            return None

    def _page_sets(self, key: str) -> bool:
        """Whether a URL parameter (url prefix included) names a field the page sets itself."""
        return key[len(self.url) :].split(".")[0] in self.not_in_url

    def url_params(self) -> dict[str, str]:
        """The last good settings as URL parameters, only where they differ from the defaults."""
        params = {self.url + k: v for k, v in to_query(self.good, self.defaults).items()}
        return {k: v for k, v in params.items() if not self._page_sets(k)}

    def claims(self, key: str) -> bool:
        """Whether a URL parameter is this binder's (a prefixed binder takes its whole prefix)."""
        if self.url:
            return key.startswith(self.url)
        return key.split(".")[0] in self.model_cls.model_fields

    def from_url(self, params: Mapping[str, str]) -> tuple[M, list[str]]:
        """A link's parameters -> (config, notices)."""
        notices = [f"URL parameter {k} ignored: this page sets it itself." for k in params
                   if self._page_sets(k)]  # fmt: skip
        mine = {k: v for k, v in params.items() if not self._page_sets(k)}
        cfg, found = from_query(self.model_cls, mine, defaults=self.defaults, prefix=self.url)
        notices += found
        if self.check is not None:
            cfg, more = self.check(cfg)
            notices += more
        return cfg, notices

    # -- widgets

    def widget(self, path: str, label: str | None = None, *, help: str | None = None,
               more_help: str = "", slider: bool = False, radio: bool = False,
               options: Sequence[Any] | None = None, fallback: Any = None,
               **kwargs: Any) -> Any:  # fmt: skip
        """Draw one field's widget, chosen from its annotation, and return its value.

        label defaults to the field's name, help to its description (more_help is appended).
        Numbers get a number box (a slider with slider=True; bounded=True puts the field's
        bounds on the box); a Literal or given options a select (a radio with radio=True, a
        select slider with slider=True; a value no longer among the options, such as a run
        deleted since, becomes `fallback`, else the first option); a list a multiselect; a
        bool a toggle; a tagged union a family select with a number box per parameter (see
        `family`); anything else a text box (a text area with area=True).
        """
        field = self.field(path)
        label = label or path.rsplit(".", 1)[-1].replace("_", " ")
        self.labels[path] = label
        help = (field.description or "") if help is None else help
        help = f"{help} {more_help}".strip() if more_help else help
        key, kind = self.key_of(path), _kind(field.annotation)
        if kind == "family":
            return self.family(path, label, help=help, **kwargs)
        if kind == "list":
            item = get_args(_plain(field.annotation))
            choices = options if options is not None else get_args(unwrap(item[0])) if item else ()
            return st.multiselect(label, list(choices), key=key, help=help, **kwargs)
        if kind == "choice" or options is not None:
            choices = list(options if options is not None else get_args(_plain(field.annotation)))
            if choices and st.session_state.get(key) not in choices:
                st.session_state[key] = fallback if fallback in choices else choices[0]
            draw = st.radio if radio else st.select_slider if slider else st.selectbox
            return draw(label, choices, key=key, help=help, **kwargs)
        if kind == "bool":
            return st.toggle(label, key=key, help=help, **kwargs)
        if kind == "number" and slider:
            cast, b = _plain(field.annotation), _bounds(field)
            for name, side in (("min_value", "low"), ("max_value", "high")):
                if name not in kwargs and side in b:
                    kwargs[name] = cast(b[side][1])
            return st.slider(label, key=key, help=help, **kwargs)
        if kind == "number":
            return number_input(field, key, label, help, **kwargs)
        draw = st.text_area if kwargs.pop("area", False) else st.text_input
        return draw(label, key=key, help=help, **kwargs)

    def family(self, path: str, label: str, *, help: str | None = None,
               kinds: Sequence[str] | None = None, columns: int = 2, bounded: bool = True,
               format_func: Callable[[str], str] = str) -> str:  # fmt: skip
        """A tagged union: a select of its families, then a number box per parameter of the
        chosen one (keys key.kind and key.<kind>.<parameter>). Returns the family."""
        models = models_by_kind(self.field(path).annotation)
        kinds = list(kinds or models)
        key, ss = self.key_of(path), st.session_state
        if ss.get(f"{key}.kind") not in kinds:
            default = get_path(self.defaults.model_dump(), [*path.split("."), "kind"])
            ss[f"{key}.kind"] = default if default in kinds else kinds[0]
        kind = st.selectbox(label, kinds, key=f"{key}.kind", help=help, format_func=format_func)
        st.caption((models[kind].__doc__ or "").strip().splitlines()[0])
        cols = st.columns(columns) if columns > 1 else [st.container()]
        for i, name in enumerate(family_fields(models[kind])):
            self.labels[f"{path}.{name}"] = name.replace("_", " ")
            field = models[kind].model_fields[name]
            with cols[i % len(cols)]:
                number_input(field, f"{key}.{kind}.{name}", name.replace("_", " "),
                             field.description, bounded=bounded)  # fmt: skip
        return kind


# ----------------------------------------------------------------------------- one page


class Page:
    """A page's bound models: read from a link once, written to the URL every run."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.binders: list[Binder] = []
        self.linked = False

    def bind(self, model_cls: type[M], key: str, fields: Sequence[str], **kwargs: Any) -> Binder[M]:
        """Bind a model (see Binder); models bound earlier read the link first."""
        if not model_cls.__pydantic_complete__:
            # A page's own model: Streamlit runs a page in a module pydantic cannot find by name,
            # so its annotations (text, with `from __future__ import annotations`) resolve here.
            model_cls.model_rebuild(_types_namespace=sys._getframe(1).f_globals)
        binder = Binder(self.name, model_cls, key, fields, **kwargs)
        self.binders.append(binder)
        return binder

    def open(self) -> bool:
        """Apply a link's parameters once (True when a link was applied), else put back the
        widgets of this page's last visit; then give every widget without a value its default.
        Unused parameters are listed in one warning."""
        url = new_url_params(self.name)
        self.linked = url is not None
        if url is not None:
            notices: list[str] = []
            left = dict(url)
            for binder in self.binders:
                mine = {k: v for k, v in left.items() if binder.claims(k)}
                left = {k: v for k, v in left.items() if k not in mine}
                cfg, found = binder.from_url(mine)
                notices += found + binder.load(cfg)
            notices += [f"Unknown URL parameter {k[:40]} ignored: not a setting of this page."
                        for k in left]  # fmt: skip
            show_notices(notices)
        else:
            seed_widgets(st.session_state.get(f"_{self.name}_memory", {}))
        for binder in self.binders:
            seed_widgets(binder.widget_values(binder.defaults))
        return self.linked

    def write(self, omit: Sequence[str] = ()) -> None:
        """Make the URL hold every model's last good settings that differ from the defaults
        (but parameters starting with one of omit), and remember the bound fields' widgets, so
        they survive a visit to another page."""
        params: dict[str, str] = {}
        for binder in self.binders:
            params.update(binder.url_params())
        params = {k: v for k, v in params.items() if not k.startswith(tuple(omit))}
        write_url(self.name, params)
        if self.linked:  # a link to this same page may not have reached the address bar
            st.query_params.from_dict(params)
        # Only the bound fields' own widgets: a button, download, upload or data editor under
        # the same prefix refuses a value set through Session State, so putting one back on
        # the next visit would stop the page with an exception.
        ss = st.session_state
        keys = {k for b in self.binders for k in b.widget_values(b.good)}
        ss[f"_{self.name}_memory"] = {k: ss[k] for k in keys if k in ss}

    def stop(self) -> NoReturn:
        """Write the URL, then end this run (the page shows no results)."""
        self.write()
        st.stop()
        raise AssertionError("unreachable")  # pragma: no cover
