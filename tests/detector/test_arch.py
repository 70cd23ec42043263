"""The architecture allow-list: every model yaml Ultralytics ships passes (but the one that downloads weights and the
ones that need a text model), and nothing the builder would evaluate into code does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cldet.core.assets import DEMO_BASE
from cldet.detector.arch import ALLOWED_MODULES, ArchError, check_arch, resolve_arch

GOOD = {"nc": 2, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "SPPF", [16, 5]]],
        "head": [[-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[1], 1, "Detect", ["nc"]]]}


def _shipped() -> list[Path]:
    import ultralytics

    return sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml"))


def test_every_shipped_yaml_passes_but_downloads_and_text_models():
    refused = {}
    for f in _shipped():
        try:
            resolve_arch(str(f))
        except ArchError as e:
            refused[f.name] = str(e)
    assert set(refused) == {"yolo11-cls-resnet18.yaml", "yoloe-26.yaml", "yoloe-26-seg.yaml"}, refused
    assert "TorchVision" in refused["yolo11-cls-resnet18.yaml"]


def test_allow_list_is_the_shipped_vocabulary():
    """ALLOWED_MODULES is exactly what Ultralytics' own yamls use (minus TorchVision): an upgrade that adds a layer
    shows up here instead of as a refused --arch."""
    import yaml

    used = {row[2] for f in _shipped() for part in ("backbone", "head")
            for row in yaml.safe_load(f.read_text()).get(part, [])}
    assert used - {"TorchVision"} == set(ALLOWED_MODULES)


def test_demo_base_and_common_names_pass():
    blob = torch.load(DEMO_BASE / "model.pt", map_location="cpu", weights_only=True)
    check_arch(blob["yaml"])
    for name in ("yolov5nu.yaml", "yolov8n.yaml", "yolo11n.yaml"):
        assert resolve_arch(name)["backbone"]


@pytest.mark.parametrize("act", ["nn.SiLU()", "torch.nn.ReLU()", "nn.LeakyReLU(0.1)", "nn.LeakyReLU(0.1, inplace=True)",
                                 "nn.Hardswish()", "nn.ELU(1.0)"])
def test_activations_allowed(act):
    check_arch({**GOOD, "activation": act})


@pytest.mark.parametrize("act", ["__import__('os').system('x') or nn.SiLU()", "nn.SiLU() if open('x','w') else 1",
                                 "nn.Module()", "nn.SiLU", "eval('1')", "nn.ReLU(x)", "nn.LeakyReLU(0.1)(0)", 3])
def test_activations_refused(act):
    with pytest.raises(ArchError, match="activation"):
        check_arch({**GOOD, "activation": act})


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["backbone"][0].__setitem__(2, "torch_safe_load"), "not an allowed layer"),
    (lambda d: d["backbone"][0].__setitem__(2, "TorchVision"), "not an allowed layer"),
    (lambda d: d["backbone"][0].__setitem__(2, "nn.functional"), "not an allowed layer"),
    (lambda d: d["backbone"][0].__setitem__(3, ["os"]), "string argument"),
    (lambda d: d["backbone"][0].__setitem__(3, [{"a": 1}]), "type dict"),
    (lambda d: d["backbone"][0].__setitem__(3, [1 << 40]), "out of range"),
    (lambda d: d["backbone"][0].__setitem__(1, 10**6), "repeats"),
    (lambda d: d["backbone"][0].__setitem__(0, "x"), "'from'"),
    (lambda d: d.__setitem__("download", "x"), "unknown architecture keys"),
    (lambda d: d.__setitem__("nc", -1), "nc must be"),
    (lambda d: d.__setitem__("scales", {"n": [1, 1, "x"]}), "scale 'n'"),
    (lambda d: d.__setitem__("head", []), "'head' must be"),
    (lambda d: d.__setitem__("width_multiple", 1e9), "width_multiple"),
])
def test_fields_refused(edit, match):
    import copy

    d = copy.deepcopy(GOOD)
    edit(d)
    with pytest.raises(ArchError, match=match):
        check_arch(d)


def test_checked_copy_is_independent():
    d = check_arch(GOOD)
    d["backbone"][0][3][0] = 999
    assert GOOD["backbone"][0][3][0] == 16
