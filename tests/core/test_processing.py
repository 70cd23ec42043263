import numpy as np
import pytest

from cldet.core.processing import letterbox, load_image, nms, postprocess
from cldet.core.errors import DataError


def test_letterbox_shape_pad_and_inverse():
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 90:110] = 255
    x, lb = letterbox(img, 64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert lb.ratio == pytest.approx(0.32) and lb.pad == (0, 16)
    assert x[0, 0, 0] == pytest.approx(114 / 255)  # padding row
    # a box at the white square's location in input pixels maps back to the original
    out = np.zeros((4 + 1, 1), np.float32)
    out[:, 0] = [100 * 0.32, 50 * 0.32 + 16, 20 * 0.32, 20 * 0.32, 0.9]
    d = postprocess(out, lb, conf=0.1)
    assert np.allclose(d.boxes[0], [90, 40, 110, 60], atol=1e-3)


def test_nms_and_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    assert list(nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5)) == [0, 2]
    out = np.zeros((6, 3), np.float32)  # 2 classes; two overlapping boxes of different classes both survive
    out[:4, 0] = out[:4, 1] = [5, 5, 10, 10]
    out[:4, 2] = [55, 55, 10, 10]
    out[4, 0], out[5, 1], out[4, 2] = 0.9, 0.8, 0.0005
    d = postprocess(out, None, conf=0.001)
    assert len(d) == 2 and set(d.classes.tolist()) == {0, 1} and d.scores[0] >= d.scores[1]


def test_load_image_errors(tmp_path, monkeypatch):
    import cv2

    with pytest.raises(DataError, match="cannot read"):
        load_image(tmp_path / "missing.jpg")
    # grayscale and RGBA are converted as the trainer's loader converts them (DeepPCB is grayscale)
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    img = load_image(tmp_path / "g.png")
    assert img.shape == (8, 8, 3) and (img == cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_COLOR)).all()
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8, 4), 7, np.uint8))
    assert load_image(tmp_path / "a.png").shape == (8, 8, 3)
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((8, 8, 3), np.uint16))
    with pytest.raises(DataError, match="deep.png is uint16"):
        load_image(tmp_path / "deep.png")
    import cldet.core.processing as proc

    monkeypatch.setattr(proc.cv2, "imread", lambda *a: np.zeros((8, 8, 2), np.uint8))  # e.g. a 2-channel TIFF
    with pytest.raises(DataError, match="2 channels"):
        load_image(tmp_path / "two.tiff")
