"""Every option of every command says what it does, its default (or what happens when it is left out), and its
unit where it has one: checked on the help the user sees (typer's rendering of each option) and on the declarations
it is generated from (cldet.core.options), so an option added with an empty or unitless help fails here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer

from cldet.api import COMMANDS
from cldet.cli import app
from cldet.core.options import option, specs

# what a numeric option may be counted in ("(unit: X)" after its help)
UNITS = {"px", "epochs", "images", "iterations", "frames", "detections", "layers", "processes", "threads", "seconds",
         "probability", "fraction", "IoU", "%", "mAP50-95 points", "GiB", "MB"}
# numeric options with no unit, and why
UNITLESS = {
    "seed": "an identifier of a random stream",
    "lr0": "a step size multiplier of the loss gradient",
    "feature_weight": "a loss weight, relative to the task loss",
    "response_weight": "a loss weight, relative to the task's cls gain",
    "box_weight": "a loss weight, relative to the task's dfl gain",
    "new_teacher_weight": "a loss weight, relative to the task's cls and dfl gains",
}
_MIN_HELP = 10  # characters: a help text is a phrase, not a word

ROOT = typer.main.get_command(app)
CASES = [(name, s) for name, cmd in COMMANDS.items() for s in specs(*cmd.options) if s.meta.cli]


def _rendered(command: str, name: str) -> str:
    """The help text of one option as `cldet COMMAND --help` shows it (typer adds '[default: ...]')."""
    cmd = ROOT.commands[command]
    param = next(p for p in cmd.params if p.name == name)
    record = param.get_help_record(typer.Context(cmd, info_name=command))
    return " ".join(record[1].split()) if record else ""


def _is_flag(command: str, name: str) -> bool:
    param = next(p for p in ROOT.commands[command].params if p.name == name)
    return bool(getattr(param, "is_flag", False))


def test_every_command_has_options_checked():
    assert {c for c, _ in CASES} == set(COMMANDS) and len(CASES) > 80


def _problems(spec, text: str, is_flag: bool) -> list[str]:
    """What is wrong with one option's help (`text`: as rendered, with typer's '[default: ...]')."""
    out = []
    if len(spec.meta.help.strip()) < _MIN_HELP:
        out.append(f"help {spec.meta.help!r} does not say what the option does")
    if not spec.required and not is_flag and "[default:" not in text and not re.search(r"\bdefault\b", spec.meta.help,
                                                                                        re.I):
        out.append("the help neither shows a default nor says what happens when the option is left out (write "
                   "'(default: ...)')")
    if (spec.item or spec.base) in (int, float):
        if spec.name in UNITLESS:
            if spec.meta.unit is not None:
                out.append(f"unit {spec.meta.unit!r} given, yet listed in UNITLESS")
        elif spec.meta.unit not in UNITS:
            out.append(f"numeric option with unit {spec.meta.unit!r}: give option(..., unit=...) one of "
                       f"{sorted(UNITS)}, or add it to UNITLESS with the reason")
        elif f"(unit: {spec.meta.unit})" not in text:
            out.append(f"the help does not show '(unit: {spec.meta.unit})'")
    return out


@pytest.mark.parametrize("command,spec", CASES, ids=[f"{c}-{s.name}" for c, s in CASES])
def test_option_help_says_what_default_and_unit(command, spec):
    text = _rendered(command, spec.name)
    problems = _problems(spec, text, _is_flag(command, spec.name))
    assert not problems, f"cldet {command} {spec.primary_flag}: {'; '.join(problems)} (help shown: {text!r})"


def test_the_unitless_list_names_only_existing_options():
    names = {s.name for _, s in CASES}
    assert set(UNITLESS) <= names


@dataclass
class _Bad:
    steps: int = field(default=3, metadata=option(""))
    where: Path | None = field(default=None, metadata=option("a folder to read things from"))
    size: int = field(default=64, metadata=option("input size of the thing", unit="px"))


def test_bad_declarations_are_caught():
    """The check is not vacuous: an empty help, an unexplained None default and a unitless number each fail it."""
    steps, where, size = specs(_Bad)
    assert len(_problems(steps, "[default: 3]", False)) == 2  # empty help, no unit
    assert _problems(where, "a folder to read things from", False)  # None default not explained
    assert _problems(size, "input size of the thing (unit: px) [default: 64]", False) == []
