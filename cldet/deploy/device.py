"""What machine a benchmark ran on: CPU, runtimes, and on a Jetson its power mode, clocks and L4T release.

Latency numbers from a Jetson mean little without the nvpmodel mode and jetson_clocks state, so bench
records them. Every probe is guarded: a field is None where the tool or file is absent (any non-Jetson
host) or needs privileges we lack; nothing here raises. Torch-free.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["device_info", "jetson_info", "cpu_int8_features", "rss_mb", "gpu_memory_used_mb"]

_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
_DT_MODEL = Path("/proc/device-tree/model")


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a command, or None when missing, failing or slow."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (r.stdout or "").strip()
    return out if r.returncode == 0 and out else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ") or None
    except OSError:
        return None


def _cpu_model() -> str | None:
    text = _read(Path("/proc/cpuinfo")) or ""
    m = re.search(r"^(model name|Model|Hardware)\s*:\s*(.+)$", text, re.M)
    return m.group(2).strip() if m else (platform.processor() or None)


# CPU features that decide how ONNX Runtime's integer kernels run an INT8 artifact (x86, then aarch64)
_INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm", "sve")
# one instruction multiplies 8-bit pairs and adds them into 32-bit sums: VNNI (vpdpbusd), AMX, ARM's SDOT/UDOT
# (asimddp) and SMMLA (i8mm). Without one (x86 AVX2 only), the U8S8 kernels add pairs of products in 16 bits
# (vpmaddubsw) and widen them: half the multiply-adds per instruction, and pairs of large products saturate
_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def cpu_int8_features(cpuinfo: str | None = None) -> dict:
    """The INT8-relevant CPU flags of /proc/cpuinfo (`cpuinfo`: its text, for tests) and whether an 8-bit dot
    product instruction is present (None where the flags cannot be read). INT8 latency ratios, and by a little
    the INT8 outputs, differ between hosts with and without one, so benchmarks record it."""
    text = cpuinfo if cpuinfo is not None else (_read(Path("/proc/cpuinfo")) or "")
    flags: set[str] = set()
    for m in re.finditer(r"^(flags|Features)\s*:\s*(.*)$", text, re.M):
        flags.update(m.group(2).split())
    return {"flags": [f for f in _INT8_FLAGS if f in flags],
            "int8_dot_product": any(f in flags for f in _INT8_DOT) if flags else None}


def jetson_info() -> dict:
    """L4T release, JetPack, nvpmodel power mode and jetson_clocks state (each None when not available)."""
    release = _read(_TEGRA_RELEASE)
    l4t = None
    if release:
        m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
        l4t = f"{m.group(1)}.{m.group(2)}" if m else release.splitlines()[0]
    jetpack = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    clocks = _run(["jetson_clocks", "--show"])
    return {
        "is_jetson": release is not None,
        "l4t": l4t,
        "nv_tegra_release": release.splitlines()[0] if release else None,
        "jetpack": jetpack,
        "nvpmodel": _run(["nvpmodel", "-q"]),
        "jetson_clocks": clocks,
    }


def device_info() -> dict:
    """Host, CPU, runtime versions and (on a Jetson) board state, as recorded by `cldet bench`."""
    import numpy as np
    import onnxruntime as ort

    from .trt_runner import tensorrt_version

    return {
        "machine": platform.machine(),
        "node": platform.node(),
        "model": _read(_DT_MODEL),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_int8": cpu_int8_features(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": list(ort.get_available_providers()),
        "tensorrt": tensorrt_version(),
        "jetson": jetson_info(),
    }


def rss_mb() -> float | None:
    """Current resident memory of this process in MB (Linux /proc)."""
    statm = _read(Path("/proc/self/statm"))
    if not statm:
        return None
    return int(statm.split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def gpu_memory_used_mb() -> float | None:
    """Device memory in use (total - free) in MB via libcudart; None without a CUDA device.

    On a Jetson, CPU and GPU share DRAM, so this counts the whole board: compare it with RSS, not add.
    """
    try:
        from .trt_runner import CudaRuntime

        free, total = CudaRuntime().mem_info()
    except Exception:  # noqa: BLE001 - no libcudart, no device, driver errors: all mean "not measurable"
        return None
    return (total - free) / 2**20
