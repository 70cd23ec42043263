"""The drift gate: does this artifact, on this device, still score what the host measured at export time?

`check()` verifies the artifact against the manifest (sha256, class count and names, input size), runs it
through the shared pre/post-processing on the evaluation data, and compares mAP50-95 per increment's
class group with the manifest's host references. Drift is measured both ways (|reference - measured|):
the gate proves the board reproduces the host, and a gain is as much a sign of a different graph or
different data as a loss. Torch-free.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.data import load_dataset, require_classes
from ..core.errors import ArtifactError
from ..core.manifest import Manifest, read_manifest
from ..core.validate import check_split
from .backend import ENGINE_SUFFIXES, Backend
from .options import CheckOptions
from .runtime import open_backend

__all__ = ["GroupDrift", "CheckReport", "check", "verify_artifact", "verify_backend", "format_table"]

@dataclass
class GroupDrift:
    """One class group: host reference vs measured mAP (0-1), drift in points (reference - measured)."""

    group: str
    classes: list[str]
    reference: float
    measured: float
    reference_map50: float | None
    measured_map50: float
    drift: float
    ok: bool


@dataclass
class CheckReport:
    artifact: str
    sha256: str
    manifest: str
    reference_key: str
    backend: str
    providers: list[str]
    data: str
    split: str
    images: int
    tolerance: float
    groups: list[GroupDrift]
    per_class: dict
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(g.ok for g in self.groups)

    @property
    def failed_groups(self) -> list[str]:
        return [g.group for g in self.groups if not g.ok]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        d["max_abs_drift"] = max((abs(g.drift) for g in self.groups if not math.isnan(g.drift)), default=0.0)
        return d


def verify_artifact(artifact: Path, manifest: Manifest, reference: str | None = None) -> tuple[str, dict, str, list[str]]:
    """(reference key, its manifest entry, artifact sha256, warnings); ArtifactError when they disagree.

    An engine built on the board is not in the manifest (engines are built per device): it is checked
    against `reference` (default: the INT8 artifact it was built from, preferring target tensorrt).
    """
    from ..core.files import sha256_file

    if not artifact.is_file():
        raise ArtifactError(f"artifact {artifact} does not exist (or is not a file).")
    digest = sha256_file(artifact)
    warnings: list[str] = []
    own = manifest.find(artifact, digest)
    is_engine = artifact.suffix.lower() in ENGINE_SUFFIXES
    if own is not None:
        expected = manifest.artifacts[own].get("sha256")
        if expected != digest and is_engine:  # rebuilt on this device: engine builds are not byte-reproducible
            warnings.append(f"{artifact.name} differs from the engine in the manifest (rebuilt on this device?): "
                            "hash not checked, accuracy compared with its source artifact's references.")
            own = None
        elif expected != digest:
            raise ArtifactError(
                f"{artifact}: sha256 {digest[:16]}... does not match manifest entry '{own}' ({str(expected)[:16]}...) "
                f"in {manifest.path}. The file was changed or belongs to another export; copy the artifact and "
                "manifest.json of the same export together."
            )
    elif is_engine:
        warnings.append(f"{artifact.name} is a device-built engine, not in the manifest: hash not checked, "
                        "accuracy compared with its source artifact's references.")
    else:
        listed = ", ".join(f"{Path(a['file']).name}" for a in manifest.artifacts.values())
        raise ArtifactError(
            f"{artifact} is not in {manifest.path} (its sha256 {digest[:16]}... matches none; listed: {listed}). "
            "Use the manifest written by the export that produced this file."
        )
    planned = (manifest.raw.get("engine_builds") or {}).get(artifact.name, {})
    if reference:
        key = reference
    elif own is not None and (manifest.artifacts[own].get("metrics") or not is_engine):
        key = own
    elif own is not None and manifest.artifacts[own].get("source"):  # an engine the export built
        key = manifest.artifacts[own]["source"]
    elif planned.get("source") in manifest.artifacts:  # an engine built on the board from the export's plan
        key = planned["source"]
    else:  # an engine: scored against the ONNX it was built from
        key = _engine_source(manifest)
    if key not in manifest.artifacts:
        raise ArtifactError(f"--reference {key!r} is not an artifact of {manifest.path} ({', '.join(manifest.artifacts)}).")
    if not manifest.artifacts[key].get("metrics"):
        note = manifest.artifacts[key].get("metrics_note")
        if note:  # e.g. the in-graph NMS export, whose output the shared post-processing does not read
            raise ArtifactError(f"{artifact.name}: {note}; check the raw-output artifact instead (model.int8.onnx).")
        raise ArtifactError(
            f"{manifest.path}: artifact '{key}' has no host reference metrics; re-run `cldet export` with evaluation data."
        )
    return key, manifest.artifacts[key], digest, warnings


def _engine_source(manifest: Manifest) -> str:
    arts = {k: a for k, a in manifest.artifacts.items() if a.get("metrics")}
    for want in (("int8", "tensorrt"), ("int8", None), ("fp16", None), ("fp32", None)):
        for k, a in arts.items():
            if a.get("precision") == want[0] and (want[1] is None or a.get("target") == want[1]):
                return k
    if not arts:
        raise ArtifactError(f"{manifest.path} has no artifact with host reference metrics; re-run `cldet export`.")
    return next(iter(arts))


def verify_backend(backend: Backend, manifest: Manifest) -> None:
    """Classes and input size of the opened artifact must be the manifest's (else ArtifactError)."""
    if backend.imgsz != manifest.imgsz:
        raise ArtifactError(
            f"{backend.artifact.name} takes {backend.imgsz} px input but {manifest.path} says {manifest.imgsz} px: "
            "artifact and manifest come from different exports."
        )
    if backend.nc != len(manifest.classes):
        raise ArtifactError(
            f"{backend.artifact.name} outputs {backend.nc} classes but {manifest.path} lists {len(manifest.classes)} "
            f"({', '.join(manifest.classes)}): artifact and manifest come from different exports."
        )
    names = _embedded_names(backend)
    if names and names != manifest.classes:
        raise ArtifactError(
            f"{backend.artifact.name} was exported with classes {names} but {manifest.path} lists {manifest.classes}."
        )


def _embedded_names(backend: Backend) -> list[str] | None:
    """Class names cldet's exporter writes into ONNX metadata (None for engines or foreign files)."""
    session = getattr(backend, "session", None)
    if session is None:
        return None
    meta = session.get_modelmeta().custom_metadata_map
    raw = meta.get("names")
    if not raw:
        return None
    if raw.startswith("{"):  # Ultralytics' own exports: a dict literal {0: 'a', ...}
        import ast

        try:
            d = ast.literal_eval(raw)
            return [d[i] for i in sorted(d)]
        except (ValueError, SyntaxError):
            return None
    return raw.split(",")


def check(opts: CheckOptions) -> CheckReport:
    """Run the gate; returns the report (the caller decides the exit code from `report.passed`)."""
    from ..core.evaluate import evaluate

    t0 = time.perf_counter()
    artifact, man, data, split, limit = Path(opts.artifact), read_manifest(opts.manifest), opts.data, opts.split, opts.limit
    key, entry, digest, warnings = verify_artifact(artifact, man, opts.reference)
    ds = load_dataset(data)
    require_classes(man.classes, ds, f"manifest {man.path}")  # before the runtime is opened
    check_split(ds, split, len(ds.names), limit=limit)  # every image decodes and every label parses, before scoring
    fp = man.raw.get("eval", {}).get("fingerprint")
    if fp and limit is None and fp != ds.fingerprint(split):
        warnings.append(f"{data} [{split}] differs from the data the references were measured on "
                        f"({man.raw['eval'].get('data')}): drift may reflect the data, not the runtime.")
    backend = open_backend(artifact, provider=opts.provider, threads=opts.threads)
    verify_backend(backend, man)
    res = evaluate(backend, ds, split, man.classes, man.imgsz, groups=man.groups, batch=opts.batch,
                   progress=opts.progress, limit=limit)
    rows = []
    for g, classes in man.groups.items():
        ref = entry["metrics"].get(g)
        if ref is None:
            raise ArtifactError(f"{man.path}: artifact '{key}' has no reference for group '{g}'; re-run `cldet export`.")
        m = res.groups[g]
        r = float(ref["map50_95"])
        drift = (r - m.map50_95) * 100.0
        ok = math.isnan(m.map50_95) and math.isnan(r) or abs(drift) <= opts.tolerance
        rows.append(GroupDrift(g, classes, r, m.map50_95, ref.get("map50"), m.map50, drift, bool(ok)))
    return CheckReport(
        artifact=str(artifact), sha256=digest, manifest=str(man.path), reference_key=key, backend=backend.name,
        providers=list(backend.providers), data=str(data), split=split, images=res.images, tolerance=opts.tolerance,
        groups=rows, per_class=res.as_dict()["per_class"], warnings=warnings, seconds=time.perf_counter() - t0,
    )


def format_table(report: CheckReport) -> str:
    """The drift table printed by `cldet check` (mAP50-95; drift in points, reference minus measured)."""
    lines = [f"{'group':<14} {'reference':>9} {'measured':>9} {'drift':>7}  status",
             f"{'-' * 14} {'-' * 9} {'-' * 9} {'-' * 7}  ------"]
    for g in report.groups:
        lines.append(f"{g.group:<14} {g.reference:>9.4f} {g.measured:>9.4f} {g.drift:>+7.2f}  {'ok' if g.ok else 'FAIL'}")
    verdict = "PASS" if report.passed else f"FAIL ({', '.join(report.failed_groups)})"
    lines.append(f"tolerance {report.tolerance:g} mAP50-95 points -> {verdict}")
    return "\n".join(lines)
