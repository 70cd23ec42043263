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
