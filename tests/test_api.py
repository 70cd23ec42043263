"""One declaration per option: the CLI flags and the API keywords are generated from the same dataclass fields."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cldet import api
from cldet.cli import app
from cldet.core.errors import CldetError
from cldet.core.options import option, specs

runner = CliRunner()


def _help(command: str) -> str:
    r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"})
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("name", list(api.COMMANDS))
def test_every_option_is_a_flag_and_a_keyword_with_one_default(name):
    cmd = api.COMMANDS[name]
    text = _help(name)
    sig = inspect.signature(cmd.fn)
    assert list(api.COMMANDS) == ["train", "learn", "eval", "demo", "export", "check", "bench", "predict", "import"]
    for s in specs(*cmd.options):
        if s.meta.cli:
            shown = s.name.upper() if s.meta.argument else s.primary_flag
            assert shown in text, f"{name}: {shown} missing from --help"
            assert s.meta.help.split(";")[0][:40] in " ".join(text.split()), f"{name} {s.name}: help text not shown"
        if s.meta.api:
            p = sig.parameters[s.name]
            assert (p.default is inspect.Parameter.empty) == s.required
            if not s.required:
                assert p.default == s.default
        else:
            assert s.name not in sig.parameters


def test_api_functions_document_their_keywords():
    doc = api.learn.__doc__
    assert "pseudo_conf: teacher score above which an old-class box becomes a label" in doc
    assert "(default 0.5)" in doc and "epochs: training epochs (unit: epochs) (default 12)" in doc


def test_api_checks_values_like_the_cli(tmp_path):
    with pytest.raises(CldetError, match="unknown method 'magic' \\(--method\\)"):
        api.learn(from_run=tmp_path, data=tmp_path / "d.yaml", new_classes="a", out=tmp_path / "o", method="magic")
    with pytest.raises(CldetError, match="--batch '1,x'"):
        api.bench(artifact=tmp_path / "m.onnx", batch="1,x")
    with pytest.raises(CldetError, match="--iters 0: must be at least 1"):
        api.bench(artifact=tmp_path / "m.onnx", iters=0)
    with pytest.raises(TypeError, match="epoch"):
        api.train(data=tmp_path / "d.yaml", out=tmp_path / "o", epoch=3)  # misspelled keyword: not silently ignored
    with pytest.raises(TypeError, match="out"):
        api.train(data=tmp_path / "d.yaml")  # a required keyword


def test_every_field_of_an_option_class_is_declared():
    from cldet.deploy.options import BenchOptions, CheckOptions
    from cldet.detector.config import DistillConfig, TrainConfig
    from cldet.export.options import ExportOptions

    from cldet.deploy.options import PredictOptions

    for cls in (TrainConfig, DistillConfig, ExportOptions, CheckOptions, BenchOptions, PredictOptions):
        assert {s.name for s in specs(cls)} == {f.name for f in fields(cls)}

    @dataclass
    class Undeclared:
        knob: int = 3

    with pytest.raises(TypeError, match="Undeclared.knob has no option"):
        specs(Undeclared)


@dataclass
class Knobs:
    """Stands in for a config class that gains a field (e.g. a new distillation setting)."""

    path: Path = field(metadata=option("where"))
    weight: float = field(default=0.3, metadata=option("weight of a new term", unit="x"))
    on: bool = field(default=True, metadata=option("switch"))
    names: tuple[str, ...] = field(default=(), metadata=option("repeatable names"))
    sizes: tuple[int, ...] = field(default=(1, 2), metadata=option("comma list", sep=","))


def test_a_new_field_reaches_the_cli_and_the_api(monkeypatch, tmp_path):
    """What a new option needs: its field with option(...) metadata, nothing else."""
    from cldet import cli

    seen = []

    @api._command("knobs", Knobs)
    def knobs(k: Knobs):
        """A command built from one option class."""
        seen.append(k)
        return k

    try:
        assert list(inspect.signature(knobs).parameters) == ["path", "weight", "on", "names", "sizes"]
        assert knobs(tmp_path, weight=0.7).weight == 0.7 and seen[-1].sizes == (1, 2)
        monkeypatch.setitem(cli.SHOW, "knobs", lambda res, kw: typer.echo(f"got {res}"))
        local = typer.Typer()
        local.command("knobs")(cli._typer_command(api.COMMANDS["knobs"]))
        r = runner.invoke(local, ["--path", str(tmp_path), "--weight", "0.9", "--no-on", "--names", "a", "--names", "b",
                                  "--sizes", "4,8"])
        assert r.exit_code == 0, r.output
        assert seen[-1] == Knobs(path=tmp_path, weight=0.9, on=False, names=("a", "b"), sizes=(4, 8))
        r = runner.invoke(local, ["--path", str(tmp_path)])
        assert r.exit_code == 0 and seen[-1] == Knobs(path=tmp_path)  # defaults from the one declaration
        r = runner.invoke(local, ["--help"], env={"COLUMNS": "300"})
        assert "weight of a new term (unit: x)" in r.output and "[default: 0.3]" in r.output
    finally:
        del api.COMMANDS["knobs"]
    assert all(f.default is not MISSING or f.name == "path" for f in fields(Knobs))
