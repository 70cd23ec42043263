import math

import pytest
import torch

from cldet.detector.model import build_model, load_backbone, load_checkpoint, save_checkpoint, widen_head
from cldet.core.errors import RunError
from cldet.core.assets import BACKBONE

WEIGHTS = BACKBONE


@pytest.fixture(scope="module")
def base():
    m = build_model("yolov5nu.yaml", ["a", "b", "c"])
    missing = load_backbone(m, WEIGHTS)
    assert missing and all(k.startswith("model.24.") for k in missing)  # only the head starts fresh
    return m.eval()


def test_widen_head_keeps_old_outputs_exactly(base):
    wide, report = widen_head(base, ["a", "b", "c"], ["d", "e"])
    wide.eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        y0, y1 = base(x)[0], wide(x)[0]
    assert y1.shape[1] == 4 + 5
    assert torch.allclose(y0, y1[:, :7], atol=1e-6)  # boxes + old class scores unchanged
    assert len(report["widened"]) == 6  # weight + bias of the last class conv on 3 levels
    head = wide.model[-1]
    for i in range(3):
        bias = head.cv3[i][-1].bias.detach()
        prior = math.log(5 / 5 / (640 / float(head.stride[i])) ** 2)
        assert torch.allclose(bias[3:], torch.full((2,), prior))
        # new classes start quiet: their probability is far below the detection threshold
    assert y1[:, 7:].max() < 0.05


def test_checkpoint_roundtrip_weights_only(base, tmp_path):
    p = tmp_path / "m.pt"
    save_checkpoint(p, base, ["a", "b", "c"], 96)
    m, meta = load_checkpoint(p)
    assert meta["names"] == ["a", "b", "c"] and meta["imgsz"] == 96
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(m(x)[0], base(x)[0])


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_code_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "cldet-ckpt/1", "x": Evil()}, p)
    with pytest.raises(RunError, match="weights-only"):
        load_checkpoint(p)
    q = tmp_path / "other.pt"
    torch.save({"a": torch.zeros(1)}, q)
    with pytest.raises(RunError, match="not a cldet checkpoint"):
        load_checkpoint(q)


@pytest.mark.parametrize("arch", ["yolov8n.yaml", "yolo11n.yaml"])
def test_widen_head_of_other_architectures(arch):
    """YOLOv8's class branch is Conv-Conv-Conv2d, YOLO11's (Ultralytics 8.4, legacy=False) DWConv+Conv pairs then the
    Conv2d: widening touches only the last Conv2d of each level in both, and the old outputs stay exact."""
    torch.manual_seed(0)
    old = build_model(arch, ["a", "b", "c"]).eval()
    wide, report = widen_head(old, ["a", "b", "c"], ["d"])
    wide.eval()
    head = wide.model[-1]
    assert report["widened"] == [f"model.{len(wide.model) - 1}.cv3.{i}.{len(head.cv3[i]) - 1}.{t}"
                                 for i in range(3) for t in ("weight", "bias")]
    assert isinstance(head.cv3[0][-1], torch.nn.Conv2d) and head.cv3[0][-1].out_channels == 4
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(old(x)[0], wide(x)[0][:, :7], atol=1e-6)


@pytest.mark.parametrize("arch", ["yolov8n.yaml", "yolo11n.yaml"])
def test_a_coco_sized_n_head_keeps_its_class_branch_width(arch, tmp_path):
    """Ultralytics sizes the class branch max(64, min(nc, 100)) for n models: 80 wide for COCO's 80 classes, 81 for
    81. The widened head keeps the parent's 80 (cls_width in its yaml), so every trained weight carries over, and a
    checkpoint of it rebuilds the same network."""
    torch.manual_seed(0)
    old_names = [f"c{i}" for i in range(80)]
    old = build_model(arch, old_names).eval()
    assert old.model[-1].cv3[0][-1].in_channels == 80
    wide, report = widen_head(old, old_names, ["new"])
    wide.eval()
    assert wide.yaml["cls_width"] == 80 and wide.model[-1].cv3[0][-1].in_channels == 80
    assert len(report["widened"]) == 6 and not report["skipped"]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(old(x)[0], wide(x)[0][:, :84], atol=1e-6)
    save_checkpoint(tmp_path / "m.pt", wide, old_names + ["new"], 64)
    back, _ = load_checkpoint(tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.equal(back(x)[0], wide(x)[0])
    small = build_model(arch, ["a", "b"])  # a branch that does not depend on the class count: no cls_width
    assert "cls_width" not in widen_head(small, ["a", "b"], ["c"])[0].yaml
