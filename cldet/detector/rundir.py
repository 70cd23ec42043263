"""A run folder's life: refused or accepted before any work, created exclusively, locked while written, resumable.

    (absent) --create--> pending.json --prepare--> data/, train/init.pt --train--> train/weights/state.pt (per epoch)
             --finish--> model.pt, calib/, lineage.json (last: a run is finished once it has one)

A kill at any point leaves either nothing, or a folder with `pending.json` (plain JSON: the command and the options
it was started with) that `--resume` completes: preparation is redone from scratch (it is cheap and deterministic),
training continues from the last epoch's weights-only state, and finishing is redone from that state. The only
files a resume reads back are `pending.json` (JSON), `train/weights/state.pt` (weights only) and `curves.json`
(JSON). A second process that wants to write the folder meanwhile (`learn` and `learn --resume` at once) exits 4
at once: the folder's `.lock` is held by the first (cldet.core.files.folder_lock).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Iterator

from ..core.errors import CldetError, RunError
from ..core.files import LOCK_NAME, folder_lock, write_json_atomic
from .lineage import LINEAGE

__all__ = ["PENDING", "PENDING_FORMAT", "RESUME_FREE", "check_out", "check_pending", "open_run", "RunFolder"]

PENDING = "pending.json"
PENDING_FORMAT = "cldet-pending/1"
RESUME_FREE = ("device", "workers", "threads", "curves", "verbose")  # may differ on --resume: they do not change the result


def check_out(out: Path, resume: bool) -> str:
    """What starting a run in `out` would do, without touching it: 'new', 'resume', or RunError (exit 4)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not resume:
            raise RunError(f"{out} already exists; choose a new --out (nothing is overwritten), "
                           "or pass --resume to continue an interrupted run there.")
        if not out.is_dir():
            raise RunError(f"{out} is not a folder; --resume continues an interrupted run folder.")
        if (out / LINEAGE).exists():
            raise RunError(f"{out} is a finished run; nothing to resume.")
        if not (out / PENDING).exists():
            if {p.name for p in out.iterdir()} == {LOCK_NAME}:  # killed between its creation and its first write
                return "resume"
            raise RunError(f"{out} is not an interrupted cldet run (no {PENDING}); refusing to write into it.")
        return "resume"
    if resume:
        raise RunError(f"--resume given but {out} does not exist.")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunError(f"--out {out}: {parent} is a file, not a folder.")
            break
    return "new"


def check_pending(out: Path, command: str, options: dict) -> dict | None:
    """The pending record of an interrupted run in `out` (None when it has none yet), refused unless it is cldet's,
    for `command`, and started with the same `options` (RESUME_FREE ones aside). Reads only."""
    path = Path(out) / PENDING
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e}); the folder cannot be resumed.") from None
    if not isinstance(raw, dict) or raw.get("format") != PENDING_FORMAT:
        raise RunError(f"{path}: not a cldet pending record (format {PENDING_FORMAT}); it was left by another cldet "
                       "version or was modified. Start a new run in another --out.")
    if raw.get("command") != command:
        raise RunError(f"{out} is an interrupted `cldet {raw.get('command')}` run; resume it with that command.")
    before = raw.get("options") if isinstance(raw.get("options"), dict) else {}
    now = json.loads(json.dumps(options, default=str))
    diff = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                     if k not in RESUME_FREE and a.get(k) != b.get(k)]
        elif key not in RESUME_FREE and a != b:
            diff.append(f"{key}: {a!r} -> {b!r}")
    if diff:
        raise CldetError(f"--resume {out}: the options or data differ from the interrupted run's "
                         f"({'; '.join(diff[:6])}). Resume with the options it was started with.")
    return raw


class RunFolder:
    """The open run folder: its pending record, and the seconds earlier sessions spent on it."""

    def __init__(self, out: Path, command: str, options: dict, resuming: bool) -> None:
        self.out, self.command, self.options, self.resuming = out, command, options, resuming
        self.started = time.time()
        self.earlier = 0.0

    @property
    def pending(self) -> Path:
        return self.out / PENDING

    def begin(self) -> None:
        """Write the pending record; on resume, first check it again (under the lock) and carry its seconds on."""
        if self.resuming:
            raw = check_pending(self.out, self.command, self.options)
            seconds = raw.get("seconds", 0.0) if raw else 0.0
            self.earlier = float(seconds) if isinstance(seconds, (int, float)) and seconds >= 0 else 0.0
        self.save()

    def seconds(self) -> float:
        return round(self.earlier + time.time() - self.started, 1)

    def save(self) -> None:
        write_json_atomic(self.pending, {"format": PENDING_FORMAT, "command": self.command, "options": self.options,
                                         "seconds": self.seconds()})

    def done(self) -> None:
        self.pending.unlink(missing_ok=True)


@contextlib.contextmanager
def open_run(out: Path, mode: str, command: str, options: dict) -> Iterator[RunFolder]:
    """Create (mode 'new') or reopen ('resume') `out`, hold its lock, and write its pending record."""
    out = Path(out)
    if mode == "new":
        try:
            out.mkdir(parents=True)
        except FileExistsError:  # another process created it since the check
            raise RunError(f"{out} already exists; choose a new --out (nothing is overwritten).") from None
    with folder_lock(out):
        if mode == "resume":
            check_out(out, resume=True)  # again, under the lock: the other writer may have finished meanwhile
        run = RunFolder(out, command, options, resuming=mode == "resume")
        run.begin()
        yield run
