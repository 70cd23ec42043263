"""`cldet predict`: detections drawn on images, a folder or a video, with YOLO-txt and JSON results beside them.

The same pre/post-processing as `check` and the export's host metrics (cldet.core.processing), around either an
ONNX artifact run by ONNX Runtime (torch-free: the board can predict) or any `predict(x) -> (B, 4 + nc, A)` callable
the caller hands in (cldet.api passes a run's PyTorch model this way; deploy never imports torch or the detector).

Everything is checked before the output folder is made: the options, every source file (images decode; a video
opens and yields a first frame), the model, and the output folder itself (refused if it exists, unless exist_ok).
Written into `out`:
    <name>                     each image with its boxes, class names and scores drawn (same file name)
    <stem>.mp4 / <stem>.avi    each video with its predicted frames drawn
    labels/<stem>.txt          one line per detection: class cx cy w h score (normalised to the image), as
                               Ultralytics' `save_txt` + `save_conf`; video frames: labels/<stem>_<frame>.txt
    predictions.json           every image/frame with its detections in original pixels (x1, y1, x2, y2)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..core.draw import draw_detections
from ..core.errors import ArtifactError, CldetError, DataError, RunError
from ..core.files import write_json_atomic
from ..core.processing import Detections, letterbox, load_image, postprocess
from ..core.validate import image_problem
from .options import PredictOptions

__all__ = ["Model", "Prediction", "PredictResult", "predict", "list_sources", "onnx_model", "IMAGE_SUFFIXES",
           "VIDEO_SUFFIXES", "RESULTS"]

log = logging.getLogger("cldet")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
RESULTS = "predictions.json"


@dataclass
class Model:
    """What predicts: a batch (B, 3, S, S) float32 -> (B, 4 + nc, A) callable, its class names and input size."""

    fn: Callable[[np.ndarray], np.ndarray]
    names: list[str]
    imgsz: int
    label: str  # shown and recorded: the run or artifact it came from


@dataclass
class Prediction:
    """One image (or video frame): where it came from and its detections in original-image pixels."""

    source: Path
    frame: int | None
    shape: tuple[int, int]  # (h, w)
    detections: Detections

    def as_dict(self, names: list[str]) -> dict:
        d = self.detections
        return {"source": str(self.source), "frame": self.frame, "height": self.shape[0], "width": self.shape[1],
                "detections": [{"class_id": int(c), "class": names[int(c)] if int(c) < len(names) else str(int(c)),
                                "score": round(float(s), 5), "box_xyxy": [round(float(v), 2) for v in b]}
                               for b, s, c in zip(d.boxes, d.scores, d.classes)]}


@dataclass
class PredictResult:
    """What `predict` returns: every image/frame's detections, the class names, and the files written."""

    out: Path
    model: str
    names: list[str]
    predictions: list[Prediction] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def detections(self) -> int:
        return sum(len(p.detections) for p in self.predictions)

    def as_dict(self) -> dict:
        return {"model": self.model, "classes": self.names, "out": str(self.out), "seconds": round(self.seconds, 2),
                "images": [p.as_dict(self.names) for p in self.predictions]}


def list_sources(source: Path) -> list[Path]:
    """The images and videos `source` names, each checked (DataError naming the file): an image decodes, a video
    opens and yields a first frame."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"--source {source} does not exist.")
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       + VIDEO_SUFFIXES)
        if not files:
            raise DataError(f"--source {source}: the folder holds no images or videos "
                            f"({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}).")
    else:
        if source.suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            raise DataError(f"--source {source}: unknown file type {source.suffix!r}; give an image "
                            f"({', '.join(IMAGE_SUFFIXES)}), a video ({', '.join(VIDEO_SUFFIXES)}) or a folder.")
        files = [source]
    for f in files:
        if f.suffix.lower() in VIDEO_SUFFIXES:
            _check_video(f)
        else:
            problem = image_problem(f)
            if problem:
                raise DataError(f"image {f} {problem}.")
    return files


def _check_video(path: Path) -> None:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok = cap.isOpened() and cap.read()[0]
    finally:
        cap.release()
    if not ok:
        raise DataError(f"video {path} cannot be decoded (OpenCV read no frame: corrupt, empty, or a codec this "
                        "OpenCV build lacks); convert it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`, or extract frames.")


def check_out(out: Path, exist_ok: bool) -> None:
    """The output folder: RunError (exit 4) when it exists and exist_ok is off, or when a file is in the way."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise RunError(f"--out {out} is a file, not a folder; choose another --out.")
        if not exist_ok:
            raise RunError(f"--out {out} already exists; predict never overwrites it. Choose another --out, or pass "
                           "--exist-ok to write into it.")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunError(f"--out {out}: {parent} is a file, not a folder.")
            break


def check_options(opts: PredictOptions) -> None:
    if (opts.run is None) == (opts.artifact is None):
        raise CldetError("give exactly one of --run (a cldet run, PyTorch) and --artifact (an ONNX file).")
    for name, v in (("--conf", opts.conf), ("--iou", opts.iou)):
        if not 0 <= v <= 1:
            raise CldetError(f"{name} {v:g}: must be within [0, 1].")


def onnx_model(opts: PredictOptions) -> Model:
    """An ONNX artifact as a Model: class names from its metadata, else from the manifest.json beside it."""
    from ..core.manifest import read_manifest
    from .runtime import open_backend

    artifact = Path(opts.artifact)
    if artifact.suffix.lower() != ".onnx":
        raise ArtifactError(f"--artifact {artifact}: predict runs ONNX artifacts (.onnx); use `cldet check` for "
                            "TensorRT engines, or --run for a run's PyTorch model.")
    backend = open_backend(artifact, provider=opts.provider, threads=opts.threads)
    meta = backend.session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    names = [n for n in meta.get("names", "").split(",") if n]
    if len(names) != backend.nc and (artifact.parent / "manifest.json").is_file():
        names = read_manifest(artifact.parent / "manifest.json").classes
    if len(names) != backend.nc:
        log.warning("%s: no class names for its %d outputs; class ids are shown", artifact, backend.nc)
        names = [str(i) for i in range(backend.nc)]
    return Model(fn=backend, names=names, imgsz=backend.imgsz, label=str(artifact))


def _frames(path: Path, stride: int) -> Iterator[tuple[int | None, np.ndarray, float]]:
    """(frame index or None, BGR image, fps) for an image or each stride-th frame of a video."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        yield None, load_image(path), 0.0
        return
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    k = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if k % stride == 0:
                yield k, frame, fps / stride
            k += 1
    finally:
        cap.release()


def _yolo_lines(det: Detections, shape: tuple[int, int]) -> str:
    h, w = shape
    rows = []
    for (x1, y1, x2, y2), s, c in zip(det.boxes, det.scores, det.classes):
        rows.append(f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                    f"{(y2 - y1) / h:.6f} {float(s):.5f}\n")
    return "".join(rows)


class _VideoOut:
    """A drawn video, opened at its first frame: mp4 (mp4v) where OpenCV can write it, else MJPG avi."""

    def __init__(self, out: Path, stem: str) -> None:
        self.out, self.stem, self.writer, self.path = out, stem, None, None

    def write(self, img: np.ndarray, fps: float) -> None:
        import cv2

        if self.writer is None:
            h, w = img.shape[:2]
            for suffix, code in ((".mp4", "mp4v"), (".avi", "MJPG")):
                path = self.out / f"{self.stem}{suffix}"
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*code), max(fps, 1.0), (w, h))
                if writer.isOpened():
                    self.writer, self.path = writer, path
                    break
                writer.release()
                path.unlink(missing_ok=True)
            if self.writer is None:
                raise CldetError(f"OpenCV cannot write a video into {self.out} (neither mp4v nor MJPG).")
        self.writer.write(img)

    def close(self) -> Path | None:
        if self.writer is not None:
            self.writer.release()
        return self.path


def predict(opts: PredictOptions, model: Model | None = None) -> PredictResult:
    """Run `model` (or opts.artifact with ONNX Runtime) on opts.source and write the results into opts.out.

    All inputs are checked before opts.out is created; a refused call leaves nothing behind."""
    import cv2

    check_options(opts)
    sources = list_sources(opts.source)
    check_out(opts.out, opts.exist_ok)
    model = model if model is not None else onnx_model(opts)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    res = PredictResult(out=out, model=model.label, names=list(model.names))
    t0 = time.time()
    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(sources), desc="predict", unit="file", leave=False)
    for src in sources:
        video = _VideoOut(out, src.stem) if src.suffix.lower() in VIDEO_SUFFIXES else None
        for frame, img, fps in _frames(src, opts.vid_stride):
            x, lb = letterbox(img, model.imgsz)
            raw = model.fn(x[None])[0]
            det = postprocess(raw, lb, conf=opts.conf, iou=opts.iou, max_det=opts.max_det)
            pred = Prediction(source=src, frame=frame, shape=img.shape[:2], detections=det)
            res.predictions.append(pred)
            drawn = draw_detections(img, det, model.names)
            stem = src.stem if frame is None else f"{src.stem}_{frame}"
            (out / "labels" / f"{stem}.txt").write_text(_yolo_lines(det, pred.shape))
            if video is None:
                cv2.imwrite(str(out / src.name), drawn)
                res.files.append(out / src.name)
            else:
                video.write(drawn, fps)
        if video is not None and (path := video.close()) is not None:
            res.files.append(path)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    res.seconds = time.time() - t0
    write_json_atomic(out / RESULTS, res.as_dict())
    res.files.append(out / RESULTS)
    return res
