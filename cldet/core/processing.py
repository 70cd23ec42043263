"""Pre- and post-processing shared by every backend (PyTorch on the host, ONNX Runtime, TensorRT).

One implementation, numpy + OpenCV only, so the board runs exactly what the host measured.

Model I/O contract (what `cldet export` emits and every backend returns):
  input  `images`  float32 (B, 3, S, S), RGB, values in [0, 1], letterboxed to S x S with gray (PAD_VALUE) padding,
                   the resized image centred (Ultralytics' LetterBox, auto=False).
  output `output0` float32 (B, 4 + nc, A): per anchor, box centre x, centre y, width, height in input pixels,
                   then nc class probabilities (sigmoid already applied). A = sum of (S/stride)^2 over P3-P5.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Letterbox", "letterbox", "load_image", "nms", "postprocess", "Detections"]

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the square input: scale, then (left, top) padding."""

    ratio: float
    pad: tuple[float, float]  # (left, top) in input pixels
    orig_shape: tuple[int, int]  # (h, w) of the original image


def load_image(path) -> np.ndarray:
    """Read an image as BGR uint8 (H, W, 3), converted exactly as Ultralytics' training loader does.

    Grayscale images are replicated to three channels and an alpha channel is dropped (the trainer reads
    with cv2.IMREAD_COLOR, so that is what the model learned from). Formats the trainer cannot have seen
    (2 or more than 4 channels, more than 8 bits) are clear errors naming the file.
    """
    from .errors import DataError

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"cannot read image {path} (missing, corrupt or not an image).")
    if img.dtype != np.uint8:
        raise DataError(f"image {path} is {img.dtype}; expected 8-bit (convert it, e.g. to 8-bit JPEG or PNG).")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img if img.ndim == 2 else img[..., 0], cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if channels != 3:
        raise DataError(f"image {path} has {channels} channels; the model expects colour (3) or grayscale images.")
    return img


def letterbox(img_bgr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to size x size; returns the (3, S, S) float32 RGB tensor in [0, 1].

    Matches Ultralytics' LetterBox (INTER_LINEAR, centred, the -0.1/+0.1 rounding of the padding) so the
    exported model sees what the PyTorch model saw in validation.
    """
    h, w = img_bgr.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (w, h) != (new_w, new_h):
        img_bgr = cv2.resize(img_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    img_bgr = cv2.copyMakeBorder(img_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    x = np.ascontiguousarray(img_bgr[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0
    return x, Letterbox(ratio=r, pad=(left, top), orig_shape=(h, w))


@dataclass
class Detections:
    """Boxes in original-image pixels (x1, y1, x2, y2), scores and class ids, sorted by score."""

    boxes: np.ndarray  # (n, 4) float32
    scores: np.ndarray  # (n,) float32
    classes: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.scores)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thres: float) -> np.ndarray:
    """Greedy NMS on xyxy boxes; returns kept indices in descending score order."""
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = (xx2 - xx1).clip(0) * (yy2 - yy1).clip(0)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_thres]
    return np.asarray(keep, dtype=np.int64)


def postprocess(
    output: np.ndarray,
    lb: Letterbox | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    max_nms: int = 30000,
) -> Detections:
    """Decode one image's raw output (4 + nc, A) into detections (per-class NMS, one class per anchor).

    With `lb`, boxes are mapped back to the original image and clipped to it; without, they stay in
    input pixels.
    """
    if output.ndim != 2:
        raise ValueError(f"expected one image's output of shape (4 + nc, A), got {output.shape}")
    pred = output.T  # (A, 4 + nc)
    cls_scores = pred[:, 4:]
    cls = cls_scores.argmax(1)
    score = cls_scores[np.arange(len(cls)), cls]
    m = score > conf
    pred, cls, score = pred[m], cls[m], score[m]
    if len(score) > max_nms:
        top = np.argsort(-score)[:max_nms]
        pred, cls, score = pred[top], cls[top], score[top]
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)
    offset = cls[:, None].astype(np.float32) * 7680.0  # per-class NMS in one pass (boxes never span 7680 px)
    keep = nms(boxes + offset, score, iou)[:max_det]
    boxes, score, cls = boxes[keep], score[keep], cls[keep]
    if lb is not None and len(boxes):
        boxes[:, [0, 2]] -= lb.pad[0]
        boxes[:, [1, 3]] -= lb.pad[1]
        boxes /= lb.ratio
        h0, w0 = lb.orig_shape
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w0)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h0)
    return Detections(boxes.astype(np.float32), score.astype(np.float32), cls.astype(np.int64))
