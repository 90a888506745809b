"""How options are declared and read: `option()` fields on frozen dataclasses become argparse flags
(`add_options`), YAML config sections (`parse_config`) and a rendered config file (`render_config`);
`options_from` builds a dataclass with precedence flag > config file > default.

The declarations themselves, and the list of sections, are `audiosetdl.config`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

def option(default: Any, help: str, *, metavar: str | None = None, choices: tuple | None = None,
           short: str | None = None) -> Any:
    """Declare an option: its default, help text and (optionally) argparse details."""
    return field(default=default, metadata={"help": help, "metavar": metavar, "choices": choices, "short": short})


class ConfigError(ValueError):
    """A bad config file or value; the message names the file and key."""


# ----------------------------------------------------------------------------- argparse --

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(element type, is_sequence) of an option's annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is tuple:
        return args[0], True
    if args and origin is not None:  # Optional[X] / X | None
        return _base_type(args[0])
    return annotation, False


def _fields(cls: type) -> list[tuple[dataclasses.Field, type, bool]]:
    hints = typing.get_type_hints(cls)
    return [(f, *_base_type(hints[f.name])) for f in dataclasses.fields(cls)]


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per field of `cls` to `parser` (as an argument group named after its section).

    Flags default to None, so that `options_from` can tell "not given" from "given".
    """
    group = parser.add_argument_group(f"{cls.SECTION} options", (cls.__doc__ or "").strip().splitlines()[0])
    for f, base, is_seq in _fields(cls):
        meta = f.metadata
        names = [_flag(f.name)] + ([meta["short"]] if meta.get("short") else [])
        shown = "none" if f.default in (None, ()) else f.default
        help_text = f"{meta['help']} (default: {shown})".replace("%", "%%")  # argparse formats help with %
        kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": help_text}
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = base
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
            if is_seq:  # one value per flag, repeatable: a greedy nargs="+" would swallow positionals
                kwargs["action"] = "append"
                kwargs["help"] = help_text.replace(" (default:", "; repeatable (default:", 1)
        group.add_argument(*names, **kwargs)


def _coerce(value: Any, base: type, is_seq: bool, where: str) -> Any:
    if is_seq:
        if value is None:
            return ()
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(v, base, False, where) for v in items)
    if value is None:
        return None
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, found {value!r}")
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, base) or isinstance(value, bool) and base is not bool:
        raise ConfigError(f"{where}: expected {base.__name__}, found {value!r}")
    return value


def options_from(cls: type, args: argparse.Namespace | None, config: dict[str, dict] | None = None):
    """Build `cls` from parsed flags, then the config file's section, then the defaults."""
    section = (config or {}).get(cls.SECTION, {})
    values = {}
    for f, base, is_seq in _fields(cls):
        given = getattr(args, f.name, None) if args is not None else None
        if given is not None:
            values[f.name] = tuple(given) if is_seq else given
        elif f.name in section:
            where = f"config {cls.SECTION}.{f.name}"
            values[f.name] = _coerce(section[f.name], base, is_seq, where)
            _check_choices(values[f.name] if is_seq else (values[f.name],), f.metadata.get("choices"), where)
    return cls(**values)


def _check_choices(values: tuple, choices: tuple | None, where: str) -> None:
    """A config file's value gets the check argparse gives a flag's."""
    for value in values:
        if choices and value is not None and value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")


# ---------------------------------------------------------------------------- YAML file --

def parse_config(path: str | Path | None, classes: list[type]) -> dict[str, dict]:
    """Read a YAML config: {section: {option: value}} for the sections of `classes`; unknown sections
    or keys are errors that name the file and suggest the closest name."""
    if path is None:
        return {}
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected sections such as 'plan:' at the top level")
    known = {cls.SECTION: cls for cls in classes}
    config: dict[str, dict] = {}
    for section, values in raw.items():
        if section not in known:
            hint = difflib.get_close_matches(str(section), known, n=1)
            raise ConfigError(f"{path}: unknown section {section!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; sections: {', '.join(known)}")
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: section {section!r} must map option names to values")
        fields = {f.name: (base, is_seq) for f, base, is_seq in _fields(known[section])}
        for key, value in values.items():
            key_name = str(key).replace("-", "_")
            if key_name not in fields:
                hint = difflib.get_close_matches(key_name, fields, n=1)
                raise ConfigError(f"{path}: unknown option {section}.{key}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            _coerce(value, *fields[key_name], where=f"{path}: {section}.{key}")
        config[section] = {str(k).replace("-", "_"): v for k, v in values.items()}
    return config


def render_config(classes: list[type]) -> str:
    """A config file's text: every option of `classes`, its default and its help."""
    out = [
        "# audiosetdl configuration: every option with its default.",
        "# Use with `audiosetdl <command> --config FILE`; command-line flags win over this file.",
        "# Regenerate with `audiosetdl config > configs/default.yaml` (a test keeps them in sync).",
    ]
    for cls in classes:
        out += ["", f"{cls.SECTION}:  # {(cls.__doc__ or '').strip().splitlines()[0]}"]
        for f, _base, _seq in _fields(cls):
            out.append(f"  # {f.metadata['help']}  [{_flag(f.name)}]")
            value = list(f.default) if isinstance(f.default, tuple) else f.default
            dumped = yaml.safe_dump({f.name: value}, default_flow_style=True, width=1000).strip()
            out.append(f"  {dumped[1:-1] if dumped.startswith('{') else dumped}")
    return "\n".join(out) + "\n"
