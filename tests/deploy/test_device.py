"""Device record: Jetson fields parsed where the files/tools exist, None elsewhere, never an exception."""

from __future__ import annotations

from cldet.deploy import device


def test_jetson_fields_from_release_file_and_tools(tmp_path, monkeypatch):
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n")
    monkeypatch.setattr(device, "_TEGRA_RELEASE", rel)
    answers = {"nvpmodel": "NV Power Mode: MAXN\n0", "dpkg-query": "6.2+b77", "jetson_clocks": None}
    monkeypatch.setattr(device, "_run", lambda cmd, timeout=5.0: answers[cmd[0]])
    info = device.jetson_info()
    assert info == {"is_jetson": True, "l4t": "36.4.3", "nv_tegra_release": rel.read_text().splitlines()[0],
                    "jetpack": "6.2+b77", "nvpmodel": "NV Power Mode: MAXN\n0", "jetson_clocks": None}


def test_not_a_jetson(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "_TEGRA_RELEASE", tmp_path / "absent")
    monkeypatch.setattr(device, "_run", lambda cmd, timeout=5.0: None)
    assert device.jetson_info() == {"is_jetson": False, "l4t": None, "nv_tegra_release": None, "jetpack": None,
                                    "nvpmodel": None, "jetson_clocks": None}
    info = device.device_info()
    assert info["cpu_count"] and info["onnxruntime"] and "tensorrt" in info
    assert device.rss_mb() > 0


def test_missing_tool_is_none():
    assert device._run(["cldet-no-such-tool-xyz"]) is None


X86_AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"
X86_VNNI = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"
ORIN = ("processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
        "asimdhp cpuid asimdrdm lrcpc dcpop asimddp uscat ilrcpc flagm paca pacg\nCPU implementer\t: 0x41\n")


def test_cpu_int8_features_tell_hosts_with_a_dot_product_instruction_apart():
    assert device.cpu_int8_features(X86_AVX2) == {"flags": ["avx2"], "int8_dot_product": False}
    assert device.cpu_int8_features(X86_VNNI) == {"flags": ["avx2", "avx512f", "avx512_vnni"],
                                                  "int8_dot_product": True}
    assert device.cpu_int8_features(ORIN) == {"flags": ["asimd", "asimddp"], "int8_dot_product": True}
    assert device.cpu_int8_features("") == {"flags": [], "int8_dot_product": None}  # unreadable: unknown, not False


def test_device_record_has_this_hosts_int8_features():
    rec = device.device_info()["cpu_int8"]
    assert rec == device.cpu_int8_features()
    assert set(rec["flags"]) <= set(device._INT8_FLAGS)
