"""One source for every setting: a dataclass field declares its default, help, unit, range or choices and flag once.

    patch_size: int = setting(128, "training patch side", unit="px", low=1)

From that one declaration come the type and range checks (`check_settings`, run by every config's `__post_init__`),
the reading of nested plain values such as a YAML file's (`from_dict`), and the command-line flags with their help
texts (`add_flags`, `given_settings`). No list of fields is written anywhere else.

The library names a setting by its path (`data.patch_size`); a command-line tool maps that path to the flag the
user typed. A `SettingError` carries the paths it names and renders its message with any naming, so the CLI prints
"--patch-size 0 is not valid" where the library says "data.patch_size 0 is not valid".

No torch here: the NumPy twin's settings use it too.
"""

import argparse
import math
import reprlib
import types
import typing
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields, is_dataclass

import yaml

from unetlab.data.io import read_text
from unetlab.errors import UnetlabError

MAX_YAML_BYTES = 1 << 20  # a settings file is a few KB; a larger one is refused before it is parsed
MAX_YAML_ALIASES = 100  # YAML anchors are rare in settings; nested aliases can expand to billions of items


@dataclass(frozen=True)
class Spec:
    """What a setting is, besides its type and default: the metadata of its dataclass field."""

    help: str  # one line, without the default (the flag's help adds it)
    unit: str | None = None  # "px", "s", ...: said after ranges and in the help
    low: float | None = None  # smallest valid value (lists: of every item)
    high: float | None = None
    low_open: bool = False  # the bound itself is not valid: value > low
    high_open: bool = False
    choices: tuple | None = None  # the valid values; None for any value of the type
    flag: str | None = None  # the command-line flag; None: --name-with-dashes (--no-name for a True bool)
    metavar: str | None = None
    parse: Callable | None = None  # argparse type of the flag (of each item for lists); None: from the type hint
    resumable: bool = False  # may change when a run is resumed (`unetlab.training.resume`)
    cli: bool = True  # has a flag (False: a container of other settings, such as `data`)
    group: str | None = None  # the heading the flag is listed under in --help
    default_text: str | None = None  # how the help states the default, where the value alone would mislead

    def rule(self) -> str | None:
        """The valid values in words: "at least 1 px", "in [0, 1)", "one of adamw, adam, sgd"; None for any."""
        unit = f" {self.unit}" if self.unit else ""
        if self.choices is not None:
            return "one of " + ", ".join("none" if c is None else str(c) for c in self.choices)
        if self.low is not None and self.high is not None:
            if not (self.low_open or self.high_open):
                return f"from {_num(self.low)} to {_num(self.high)}{unit}"
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{_num(self.low)}, {_num(self.high)}{right}{unit}"
        if self.low is not None:
            return f"{'more than' if self.low_open else 'at least'} {_num(self.low)}{unit}"
        if self.high is not None:
            return f"{'less than' if self.high_open else 'at most'} {_num(self.high)}{unit}"
        return None

    def accepts(self, value) -> bool:
        """True when `value` (already of the field's type) is in range and among the choices."""
        if self.choices is not None:
            return value in self.choices
        if value is None or (self.low is None and self.high is None):
            return True
        items = value if isinstance(value, list) else [value]
        return all(self._in_range(v) for v in items)

    def _in_range(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        low_ok = self.low is None or (v > self.low if self.low_open else v >= self.low)
        return low_ok and (self.high is None or (v < self.high if self.high_open else v <= self.high))


def setting(default=MISSING, help: str = "", *, default_factory=MISSING, **spec):
    """A dataclass field with its `Spec`: `setting(128, "training patch side", unit="px", low=1)`."""
    metadata = {"setting": Spec(help=help, **spec)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def spec_of(f) -> Spec | None:
    return f.metadata.get("setting")


def _num(x) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class SettingError(UnetlabError):
    """A setting with a value that is not valid; the message names settings through a function of their paths.

    `message(name)` renders the message with `name(path)` for every setting it names: the library's `str()` uses the
    paths themselves ("data.patch_size"), the CLI the flags the user typed ("--patch-size").
    """

    def __init__(self, render: Callable[[Callable[[str], str]], str], settings: list[str]):
        self.render, self.settings = render, list(settings)
        super().__init__(render(str))

    def message(self, name: Callable[[str], str]) -> str:
        return self.render(name)

    def within(self, prefix: str) -> "SettingError":
        """The same error for settings nested under `prefix` (e.g. "data")."""
        return SettingError(
            lambda name: self.render(lambda s: name(f"{prefix}.{s}")), [f"{prefix}.{s}" for s in self.settings]
        )


@contextmanager
def settings_under(prefix: str):
    """Re-raise a `SettingError` from inside as one of the settings under `prefix` (e.g. a model's "depth" is the run's
    "model_kwargs.depth")."""
    try:
        yield
    except SettingError as exc:
        raise exc.within(prefix) from None


def invalid(path: str, value, rule: str) -> SettingError:
    """ "data.patch_size 0 is not valid: it must be at least 1 px" (the path rendered as the caller names it)."""
    shown = repr(value) if isinstance(value, str) else value
    return SettingError(lambda name: f"{name(path)} {shown} is not valid: it must be {rule}", [path])


def check_settings(config) -> None:
    """Raise a `SettingError` for the first field of the dataclass `config` of the wrong type, or out of its range
    or choices."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        spec, value = spec_of(f), getattr(config, f.name)
        if spec is None:
            continue
        if is_dataclass(hints[f.name]):  # a nested config, checked when it was made
            if not isinstance(value, hints[f.name]):
                raise invalid(f.name, value, f"a {hints[f.name].__name__}")
            continue
        try:
            typed(value, hints[f.name], f.name)
        except UnetlabError:
            raise invalid(f.name, value, describe(hints[f.name])) from None
        if not spec.accepts(value):
            raise invalid(f.name, value, spec.rule())


def check_choice(path: str, value, choices) -> None:
    """Raise a `SettingError` naming `path` when `value` is not one of `choices` (for a function's own argument)."""
    check_value(path, value, Spec(help="", choices=tuple(choices)))


def check_value(path: str, value, spec: Spec) -> None:
    """Raise a `SettingError` naming `path` when `value` is out of the range or choices of `spec`."""
    if not spec.accepts(value):
        raise invalid(path, value, spec.rule())


# ----------------------------------------------------------------------------------------------------------------------
# YAML files and nested plain values -> a config


class _SettingsLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping and more than `MAX_YAML_ALIASES` aliases."""

    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                mark = key_node.start_mark
                raise yaml.YAMLError(f"the key {key!r} at line {mark.line + 1} is given twice; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(path, what: str = "config file", example: str = "a YAML file such as configs/isbi.yaml") -> dict:
    """The mapping in a YAML settings file. Raises a `UnetlabError` naming the file when it cannot be used: missing,
    not UTF-8, larger than `MAX_YAML_BYTES`, not YAML, a key given twice, too many aliases, or not a mapping."""
    from pathlib import Path

    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
        raise UnetlabError(f"{what} {path} is {path.stat().st_size:,} bytes, more than a settings file holds "
                           f"({MAX_YAML_BYTES:,} at most); pass {example}")  # fmt: skip
    text = read_text(path, what, example)
    try:
        values = yaml.load(text, Loader=_SettingsLoader) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UnetlabError(f"{what} {path} is not valid YAML{line}: {problem}") from None
    except RecursionError:
        raise UnetlabError(f"{what} {path} nests too deeply; write the settings out flat") from None
    if not isinstance(values, dict):
        raise UnetlabError(f"{what} {path} must hold a mapping of settings (key: value lines)")
    return values


def from_dict(cls, values, source: str = "config"):
    """Build the dataclass `cls` from nested plain values, checking names and types; nested dataclasses recurse.

    Raises:
        UnetlabError: naming `source` and the setting, for an unknown name or a value of the wrong type.
        SettingError: for a value out of its range (from the config's own check), with its full path.
    """
    if not isinstance(values, dict):
        raise UnetlabError(f"{source}: expected a mapping of settings, got {values!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UnetlabError(f"{source}: unknown setting {', '.join(unknown)}; valid settings are {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if is_dataclass(hints[name]):
            try:
                kwargs[name] = from_dict(hints[name], value, f"{source}: {name}")
            except SettingError as exc:
                raise exc.within(name) from None
        else:
            kwargs[name] = typed(value, hints[name], f"{source}: {name}")
    return cls(**kwargs)


def typed(value, hint, where: str):
    """`value` checked against the type hint `hint` (ints accepted for floats, and PyYAML's "1e-3" strings)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        for option in (a for a in typing.get_args(hint) if a is not type(None)):
            try:
                return typed(value, option, where)
            except UnetlabError:
                pass
    elif hint is bool and isinstance(value, bool):
        return value
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            pass
    elif hint is str and isinstance(value, str):
        return value
    elif (hint is list or typing.get_origin(hint) is list) and isinstance(value, list):
        item = (typing.get_args(hint) or (typing.Any,))[0]
        return value if item is typing.Any else [typed(v, item, where) for v in value]
    elif hint is dict and isinstance(value, dict):
        return value
    elif hint is typing.Any:
        return value
    raise UnetlabError(f"{where} is {_short(value)}, which is not {describe(hint)}")


_REPR = reprlib.Repr()  # attributes, not keyword arguments: those came in Python 3.12
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 6, 6, 60, 60


def _short(value) -> str:
    """`repr(value)`, bounded: a value from a file may be huge (nested YAML aliases repeat a list millions of times)."""
    return _REPR.repr(value)


def describe(hint) -> str:
    """A type hint in words: "a whole number", "a list of numbers", "text or null"."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(hint))
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "a mapping",
             list: "a list", type(None): "null", typing.Any: "any value"}  # fmt: skip
    origin = typing.get_origin(hint)
    return names.get(hint) or (f"a list of {describe(typing.get_args(hint)[0])}s" if origin is list else str(hint))


# ----------------------------------------------------------------------------------------------------------------------
# Command-line flags


def add_flags(
    parser,
    cls,
    prefix: str = "",
    only=None,
    defaults=None,
    choices: dict | None = None,
    titles: dict | None = None,
    default=MISSING,
) -> list[str]:
    """Add a flag for each setting of the dataclass `cls` that has one; their dests are the settings' paths.

    Args:
        parser: an argparse parser or argument group; flags whose `Spec.group` is in `titles` go to an argument group
            of that title (made once per parser).
        prefix: the path of `cls` in a larger config ("data." for `TrainConfig.data`); dests become "data.patch_size".
        only: the field names to add (default: all with a flag).
        defaults: the defaults the help states (default: the dataclass's); a flag's argparse default is the parser's
            `argument_default` (train: absent unless given, so that a resumed run can tell what was typed).
        choices: narrower choices for some fields (the NumPy twin implements fewer norms).
        default: the argparse default of every flag added (e.g. None, so that an option not given is None); by
            default the setting's own default, unless the parser leaves flags not given out (`argument_default`).

    Returns:
        The dests added.
    """
    hints, added = typing.get_type_hints(cls), []
    groups = parser.__dict__.setdefault("_setting_groups", {})
    for f in fields(cls):
        spec = spec_of(f)
        if spec is None or not spec.cli or (only is not None and f.name not in only):
            continue
        shown = _default(f) if defaults is None else defaults.get(f.name, _default(f))
        dest = prefix + f.name
        kwargs = _argparse_kwargs(hints[f.name], spec, shown, (choices or {}).get(f.name))
        if "action" not in kwargs and "choices" not in kwargs:
            kwargs.setdefault("metavar", f.name.upper())  # not the dest's path, "DATA.PATCH_SIZE"
        if default is not MISSING:
            kwargs["default"] = default
        elif getattr(parser, "argument_default", None) is None:  # not a parser that leaves untyped flags out
            kwargs["default"] = shown
        title = (titles or {}).get(spec.group, (titles or {}).get("*"))  # "*": the title of every other group
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        target = groups[title] if title else parser
        target.add_argument(flag_of(f), dest=dest, help=help_text(spec, shown), **kwargs)
        added.append(dest)
    return added


def flag_of(f) -> str:
    """The flag of a setting field: its spec's, or --name-with-dashes (--no-name for a bool that defaults to True)."""
    spec = spec_of(f)
    if spec.flag:
        return spec.flag
    name = f.name.replace("_", "-")
    return f"--no-{name}" if f.type in (bool, "bool") and f.default is True else f"--{name}"


def help_text(spec: Spec, default) -> str:
    """The help of a flag: the setting's help, its unit, and its default once."""
    text = spec.help
    if spec.default_text is not None:
        return f"{text} (default: {spec.default_text})"
    if default is None or isinstance(default, bool) or default == []:
        return text
    unit = f" {spec.unit}" if spec.unit and not isinstance(default, str) else ""
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    return f"{text} (default: {shown}{unit})"


def _default(f):
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def _argparse_kwargs(hint, spec: Spec, default, narrower) -> dict:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint
    if base is bool:
        return {"action": "store_false" if default is True else "store_true"}
    kwargs = {"metavar": spec.metavar} if spec.metavar else {}
    if base is list or typing.get_origin(base) is list:
        item = (typing.get_args(base) or (str,))[0]
        return kwargs | {"nargs": "+", "type": spec.parse or (item if item in (int, float, str) else str)}
    choices = narrower or spec.choices
    if choices is not None:
        return kwargs | {"choices": ["none" if c is None else c for c in choices], "type": spec.parse or str}
    return kwargs | {"type": spec.parse or (base if base in (int, float, str) else str)}


def given_settings(args: argparse.Namespace, dests: list[str]) -> dict:
    """The settings among `dests` present in `args`, as a nested dict: {"data": {"patch_size": 64}, "lr": 0.1}."""
    nested: dict = {}
    for dest in dests:
        if dest in vars(args):
            *parents, name = dest.split(".")
            node = nested
            for parent in parents:
                node = node.setdefault(parent, {})
            node[name] = vars(args)[dest]
    return nested


def settings_of(cls, prefix: str = "") -> list[str]:
    """The paths of every setting of `cls` that has a flag, nested configs included ("data.patch_size", ...)."""
    hints, paths = typing.get_type_hints(cls), []
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            paths += settings_of(hints[f.name], f"{prefix}{f.name}.")
        elif spec_of(f) is not None and spec_of(f).cli:
            paths.append(prefix + f.name)
    return paths


def spec_at(cls, path: str) -> Spec | None:
    """The `Spec` of the setting at `path` ("data.patch_size") under the dataclass `cls`, or None."""
    head, _, rest = path.partition(".")
    f = next((f for f in fields(cls) if f.name == head), None)
    if f is None:
        return None
    hint = typing.get_type_hints(cls)[head]
    return spec_at(hint, rest) if rest and is_dataclass(hint) else spec_of(f)
