"""check and bench open no network connection (the board may have none; nothing is fetched at run time)."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from cldet.cli import app


@pytest.fixture()
def no_network(monkeypatch):
    def deny(*a, **k):
        raise AssertionError(f"network access attempted: {a[1:] or a}")

    for obj, name in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "getaddrinfo"),
                      (socket, "create_connection")):
        monkeypatch.setattr(obj, name, deny)


def test_check_and_bench_offline(no_network, assets, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["check", "--artifact", str(assets.int8), "--manifest", str(assets.manifest), "--data",
                            str(assets.eval_yaml), "--threads", "1", "--quiet", "--report", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["bench", "--artifact", str(assets.int8), "--iters", "2", "--warmup", "0", "--batch", "1",
                            "--threads", "1", "--quiet", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "bench.png").is_file()
