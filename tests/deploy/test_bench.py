"""`cldet bench`: percentiles per batch size, alternated A/B ratio, fixed-batch models, JSON + PNG."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cldet.cli import app
from cldet.deploy.bench import latency_stats

runner = CliRunner()


def test_latency_stats():
    s = latency_stats([1.0, 2.0, 3.0, 4.0, 100.0], batch=4)
    assert s["p50"] == 3.0 and s["min"] == 1.0 and s["n"] == 5
    assert s["p90"] > s["p50"] and s["p99"] <= 100.0
    assert abs(s["throughput_ips"] - 4 * 1000 / 22.0) < 1e-9


def test_bench_vs_alternates_and_reports(assets, tmp_path):
    out = tmp_path / "bench"
    r = runner.invoke(app, ["bench", "--artifact", str(assets.int8), "--vs", str(assets.fp32), "--iters", "4",
                            "--warmup", "1", "--batch", "1,2", "--threads", "1", "--data", str(assets.eval_yaml),
                            "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "bench.json").read_text())
    assert (out / "bench.png").stat().st_size > 1000
    assert res["settings"]["alternated"] and len(res["artifacts"]) == 2
    for a in res["artifacts"]:
        for b in ("1", "2"):
            for kind in ("infer", "e2e"):
                s = a["results"][b][kind]
                assert s["n"] == 4 and s["p50"] > 0 and s["p99"] >= s["p50"] and s["throughput_ips"] > 0
            assert a["results"][b]["e2e"]["p50"] >= a["results"][b]["infer"]["min"]
    assert set(res["ratio"]) == {"1", "2"} and res["ratio"]["1"]["infer_p50"] > 0
    assert res["memory"]["peak_rss_mb"] > 0
    jet = res["device"]["jetson"]
    assert set(jet) >= {"l4t", "jetpack", "nvpmodel", "jetson_clocks"}
    assert "tensorrt" in res["device"] and "ratio artifact/vs" in r.output
    assert res["device"]["cpu_int8"]["int8_dot_product"] in (True, False, None)
    if res["device"]["cpu_int8"]["int8_dot_product"] is not None:  # said on the terminal where it is known
        assert "CPU INT8 features:" in r.output


def test_fixed_batch_model_reports_what_it_can(assets, tmp_path):
    r = runner.invoke(app, ["bench", "--artifact", str(assets.fp32_b1), "--iters", "2", "--warmup", "0",
                            "--batch", "1,4", "--threads", "1", "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "bench.json").read_text())["artifacts"][0]
    assert res["batch"] == 1 and "infer" in res["results"]["1"]
    assert "fixed batch of 1" in res["results"]["4"]["skipped"]
    assert "skipped" in r.output


def test_bad_batch_list(assets, tmp_path):
    r = runner.invoke(app, ["bench", "--artifact", str(assets.int8), "--batch", "1,x", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--batch" in r.output
