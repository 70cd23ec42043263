"""One declaration per option: a dataclass field gives its name, type and default, `option(...)` its help.

The `cldet` command line (cldet.cli) and the Python API (cldet.api) are both generated from these
declarations, so an option has one name, one default and one help text everywhere. A field added with
`option(...)` metadata to a declared dataclass (TrainConfig, DistillConfig, ExportOptions, ...) becomes a
CLI flag and an API keyword with no other edit:

    @dataclass
    class DistillConfig:
        pseudo_conf: float = field(default=0.5, metadata=option("teacher score above which ...", unit="probability"))

Values are checked here, for the CLI and the API alike: paths become Path, comma strings become tuples, and
`choices` / `min` violations are CldetErrors that name the flag.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import CldetError

__all__ = ["Option", "Spec", "option", "specs", "api_signature", "api_doc", "build", "bind", "given",
           "ProgressOption"]

_KEY = "cldet.option"


@dataclass(frozen=True)
class Option:
    """How an option is presented; the field itself holds its type and default."""

    help: str
    unit: str | None = None  # shown after the help as "(unit: px)"; e.g. "px", "epochs", "mAP50-95 points"
    flag: str | None = None  # CLI spelling; default --name (booleans: --name, or --name/--no-name when on by default)
    choices: tuple[str, ...] | None = None
    min: float | None = None
    sep: str | None = None  # tuple options: the CLI takes one string split at `sep` (else the flag repeats)
    cli: bool = True  # False: Python API only
    api: bool = True  # False: CLI only (how the terminal shows or stores a result)
    aliases: tuple[str, ...] = ()  # more CLI spellings of the same flag (e.g. --force for --exist-ok)
    argument: bool = False  # the CLI takes it as a positional argument (`cldet import WEIGHTS`), not a flag


def option(help: str, **kw: Any) -> dict:
    """Field metadata declaring a user-facing option: `field(default=..., metadata=option("what it does"))`."""
    return {_KEY: Option(help, **kw)}


@dataclass(kw_only=True)
class ProgressOption:
    """The progress-bar switch of every command that scores or times many images (export, check, bench)."""

    progress: bool = field(default=True, metadata=option("progress bars", flag="--progress/--quiet"))


@dataclass(frozen=True)
class Spec:
    """One option of one dataclass: everything the CLI and the API generators need."""

    name: str
    type: Any  # the resolved annotation, e.g. int, Path | None, tuple[int, ...]
    default: Any  # MISSING when required
    meta: Option
    owner: type

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def flag(self) -> str:
        if self.meta.flag:
            return self.meta.flag
        dashed = self.name.replace("_", "-")
        return f"--{dashed}/--no-{dashed}" if self.base is bool and self.default is True else f"--{dashed}"

    @property
    def primary_flag(self) -> str:
        return self.flag.split("/")[0]

    @property
    def optional(self) -> bool:
        """The value may be None."""
        return type(None) in typing.get_args(self.type)

    @property
    def base(self) -> Any:
        """The type without None: Path for `Path | None`, tuple[int, ...] stays itself."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        if self.optional and len(args) == 1:
            return args[0]
        return self.type

    @property
    def item(self) -> type | None:
        """Element type of a tuple option, else None."""
        base = self.base
        if typing.get_origin(base) is tuple:
            return typing.get_args(base)[0]
        return None

    def describe(self) -> str:
        """Help text with the choices and the unit (the default is shown by whoever lists the option)."""
        text = self.meta.help
        if self.meta.choices:
            text += f"; one of: {', '.join(self.meta.choices)}"
        if self.meta.unit:
            text += f" (unit: {self.meta.unit})"
        return text


def _depth(cls: type, name: str) -> int:
    """0 for a field the class declares itself, 1 for one inherited from its base, ..."""
    owners = [k for k in cls.__mro__ if name in getattr(k, "__dataclass_fields__", {})]
    return cls.__mro__.index(owners[-1])


def specs(*classes: type) -> list[Spec]:
    """The options of dataclasses: required ones first, then each class's own fields before inherited ones, in
    declaration order. An option declared twice is an error."""
    out: list[Spec] = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in sorted(fields(cls), key=lambda f: _depth(cls, f.name)):
            if not f.init:
                continue
            meta = f.metadata.get(_KEY)
            if meta is None:
                raise TypeError(f"{cls.__name__}.{f.name} has no option(...) metadata; every option says what it does.")
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else MISSING)  # type: ignore[misc]
            out.append(Spec(f.name, hints[f.name], default, meta, cls))
    seen: dict[str, type] = {}
    for s in out:
        if s.name in seen:
            raise TypeError(f"option {s.name!r} is declared by both {seen[s.name].__name__} and {s.owner.__name__}.")
        seen[s.name] = s.owner
    return sorted(out, key=lambda s: not s.required)


def _coerce(spec: Spec, value: Any) -> Any:
    """A value as the dataclass holds it; CldetError naming the flag when it cannot be."""
    if value is None:
        return None
    base, item = spec.base, spec.item
    if base is Path and not isinstance(value, Path):
        return Path(value)
    if item is not None:
        if isinstance(value, str):
            parts = value.split(spec.meta.sep) if spec.meta.sep else [value]
        else:
            parts = list(value)
        try:
            out = tuple(item(p.strip()) if isinstance(p, str) and item is not str else item(p) for p in parts
                        if not (isinstance(p, str) and not p.strip()))
        except (TypeError, ValueError):
            out = None
        if not out and value:
            example = spec.meta.sep.join(map(str, spec.default or ())) if spec.meta.sep else ""
            raise CldetError(f"{spec.primary_flag} {value!r}: expected a{' comma' if spec.meta.sep == ',' else ''} "
                             f"list of {item.__name__} values" + (f" such as {example}." if example else "."))
        return out
    return value


def _check(spec: Spec, value: Any) -> None:
    m = spec.meta
    if value is None:
        return
    values = value if isinstance(value, tuple) else (value,)
    if m.choices and any(v not in m.choices for v in values):
        bad = next(v for v in values if v not in m.choices)
        raise CldetError(f"unknown {spec.name.replace('_', ' ')} {bad!r} ({spec.primary_flag}); "
                         f"choose one of: {', '.join(m.choices)}.")
    if m.min is not None and any(isinstance(v, (int, float)) and v < m.min for v in values):
        raise CldetError(f"{spec.primary_flag} {value}: must be at least {m.min:g}.")


def build(classes: tuple[type, ...], values: dict[str, Any]) -> list[Any]:
    """One instance per dataclass from keyword values (missing ones take their defaults), checked."""
    out = []
    for cls in classes:
        kw = {}
        for s in specs(cls):
            if s.name not in values:
                if s.required and s.meta.api:
                    raise CldetError(f"{s.primary_flag} is required: {s.meta.help}.")
                continue
            value = _coerce(s, values[s.name])
            _check(s, value)
            kw[s.name] = value
        inst = cls(**kw)
        inst.__dict__["_given"] = frozenset(kw)  # what the caller set; the rest are defaults (see `given`)
        out.append(inst)
    return out


def given(inst: object) -> frozenset[str] | None:
    """The option names a `build` caller set explicitly (None for an instance not made by `build`): e.g. `learn`
    keeps the parent run's input size unless --imgsz was given."""
    return inst.__dict__.get("_given") if hasattr(inst, "__dict__") else None


def api_signature(classes: tuple[type, ...]) -> inspect.Signature:
    """Keyword parameters of an API function built from `classes` (required ones may also be positional)."""
    params = []
    for s in specs(*classes):
        if not s.meta.api:
            continue
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if s.required else inspect.Parameter.KEYWORD_ONLY
        default = inspect.Parameter.empty if s.required else s.default
        params.append(inspect.Parameter(s.name, kind, default=default, annotation=s.type))
    return inspect.Signature(params)


def api_doc(summary: str, classes: tuple[type, ...]) -> str:
    """A docstring listing every API keyword with its help and default."""
    lines = [summary.strip(), "", "Keyword arguments:"]
    for s in specs(*classes):
        if s.meta.api:
            lines.append(f"    {s.name}: {s.describe()}" + ("" if s.required else f" (default {s.default!r})"))
    return "\n".join(lines)


def bind(classes: tuple[type, ...], args: tuple, kwargs: dict) -> list[Any]:
    """Bind a call of a generated API function to its option instances (TypeError for unknown keywords)."""
    bound = api_signature(classes).bind(*args, **kwargs)
    return build(classes, dict(bound.arguments))

