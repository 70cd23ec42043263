"""Detections drawn on an image (boxes, class names, scores), and panels put side by side.

numpy + OpenCV only (its built-in Hershey font: nothing is fetched), so the board can draw too.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .processing import Detections

__all__ = ["draw_detections", "side_by_side", "palette"]


def palette(n: int) -> list[tuple[int, int, int]]:
    """n well-separated BGR colours (evenly spaced hues)."""
    hsv = np.stack([np.linspace(0, 179, n, endpoint=False), np.full(n, 220), np.full(n, 255)], 1).astype(np.uint8)
    return [tuple(int(v) for v in c) for c in cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]]


def draw_detections(img_bgr: np.ndarray, det: Detections, names: Sequence[str],
                    colors: Sequence[tuple[int, int, int]] | None = None, scale: float = 1.0) -> np.ndarray:
    """A copy of the image with each detection's box and `name score` label; `scale` resizes the image first."""
    img = img_bgr.copy()
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    colors = list(colors) if colors is not None else palette(max(len(names), 1))
    thick = max(1, round(img.shape[0] / 300))
    for box, score, cls in sorted(zip(det.boxes, det.scores, det.classes), key=lambda t: t[1]):
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        color = colors[int(cls) % len(colors)]
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
        text = f"{names[int(cls)] if int(cls) < len(names) else int(cls)} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        ty = max(y1, th + base + 1)
        cv2.rectangle(img, (x1, ty - th - base - 1), (x1 + tw + 2, ty), color, -1)
        cv2.putText(img, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str], gap: int = 8, title_h: int = 28) -> np.ndarray:
    """Panels of one height in a row on white, each with its title above it."""
    h = max(p.shape[0] for p in panels)
    w = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((h + title_h, w, 3), 255, np.uint8)
    x = 0
    for p, t in zip(panels, titles):
        canvas[title_h:title_h + p.shape[0], x:x + p.shape[1]] = p
        cv2.putText(canvas, t, (x + 4, title_h - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        x += p.shape[1] + gap
    return canvas
