"""Pieces every `python -m vlsim` command uses: errors, options from pydantic models, tables."""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from vlsim.config import format_errors, load_config
from vlsim.lengths import parse_length_spec


class CliError(Exception):
    """A user mistake: printed as one clear line, exit status 2."""


# ---------------------------------------------------------------- options from pydantic


def _scalar_type(annotation: Any) -> type | None:
    """The argparse type of a simple pydantic field (None for nested or list fields)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    if typing.get_origin(annotation) is typing.Literal:
        return str
    return annotation if annotation in (int, float, str, bool) else None


FREE_TEXT = ("name", "device")
"""Text fields that never take a list of values (a comma may be part of them)."""


def add_model_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    model: type[BaseModel],
    skip: Sequence[str] = (),
    prefix: str = "",
    lists: set[str] | None = None,
) -> list[str]:
    """Add one --option per scalar field of a config model; return the dests added.

    With a prefix (e.g. 'task'), options are --task-FIELD and dests 'task.FIELD', which
    `build_config` turns into nested overrides. Given a set `lists`, every option but FREE_TEXT
    take comma-separated values (one run per value) and their dests are added to it; pydantic
    then checks each value.
    """
    added = []
    for name, field in model.model_fields.items():
        kind = _scalar_type(field.annotation)
        if name in skip or kind is None:
            continue
        dest = f"{prefix}.{name}" if prefix else name
        flag = "--" + dest.replace(".", "-").replace("_", "-")
        default = field.get_default(call_default_factory=True)
        help_text = field.description or ""
        if "(default:" not in help_text:  # a description may say its default in words
            help_text += f" (default: {default})"
        choices = None
        if typing.get_origin(field.annotation) is typing.Literal:
            choices = list(typing.get_args(field.annotation))
        if kind is bool:
            parser.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif lists is not None and name not in FREE_TEXT:
            if choices:
                help_text += f"; one of {', '.join(map(str, choices))}"
            parser.add_argument(
                flag, dest=dest, type=str, default=None, metavar="V[,V...]",
                help=help_text + "; several values, comma-separated, train one run each",
            )  # fmt: skip
            lists.add(dest)
        else:
            parser.add_argument(
                flag, dest=dest, type=kind, default=None, choices=choices, help=help_text
            )
        added.append(dest)
    return added


def overrides_from_args(args: argparse.Namespace, dests: list[str]) -> dict[str, Any]:
    """The options given on the command line as a (nested) dict of config fields."""
    out: dict[str, Any] = {}
    for dest in dests:
        value = getattr(args, dest)
        if value is None:
            continue
        *parents, leaf = dest.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def build_config(
    model: type[BaseModel], args: argparse.Namespace, fields: list[str], extra: dict | None = None
) -> Any:
    """Config from an optional --config file, then the options given on the command line."""
    base: dict[str, Any] = {}
    if getattr(args, "config", None):
        base = load_config(args.config, model).model_dump()
    overrides = overrides_from_args(args, fields)
    try:
        return model.model_validate({**base, **overrides, **(extra or {})})
    except ValidationError as err:
        raise CliError(f"invalid settings:\n{format_errors(err)}") from err


def parse_lengths(text: str) -> dict:
    """A length spec from JSON or the short form 'kind:key=value,key=value'."""
    text = text.strip()
    if text.startswith("{"):
        data = json.loads(text)
    else:
        kind, _, rest = text.partition(":")
        data = {"kind": kind.strip()}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise CliError(f"length parameter {item!r} must look like key=value")
            data[key.strip()] = json.loads(value) if value.strip()[:1] in "[{" else _number(value)
    try:
        return parse_length_spec(data).model_dump()
    except ValidationError as err:
        raise CliError(f"invalid --lengths {text!r}:\n{format_errors(err)}") from err


def _number(value: str) -> float | int | str:
    """'3' -> 3, '0.5' -> 0.5, anything else stays a string."""
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return value.strip()


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Plain-text table: columns are (key, header, format spec)."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([_cell(row[key], fmt) for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for n, r in enumerate(cells):
        padded = (
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        lines.append("  ".join(padded))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any, fmt: str) -> str:
    """One table cell: '-' for a missing value (e.g. efficiency of GRPO), else formatted."""
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)
