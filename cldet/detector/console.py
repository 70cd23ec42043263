"""What a training run shows on the console: one progress bar and a short line per epoch.

Ultralytics prints its argument dump, dataset scans, a per-batch bar and per-epoch tables. By default all of
that goes to `RUN/train.log` instead (its per-batch redraws are dropped; their final lines are kept), and cldet
draws one bar over the whole run on stderr, with one summary line per epoch. `verbose=True` keeps Ultralytics'
own console output as well (the log file is written either way).
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from pathlib import Path
from typing import Iterator

__all__ = ["LOG_NAME", "TrainingConsole", "training_console"]

LOG_NAME = "train.log"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _LogStream:
    """A stdout stand-in that appends plain text to the log file.

    Ultralytics' bars hand their redraws to a `progress(bar_id, frame)` hook when the stream has one: redraws
    are dropped, and a bar's last frame (its per-epoch table row) is written once the bar closes.
    """

    def __init__(self, fh) -> None:
        self._fh = fh
        self._frames: dict[int, str] = {}

    def write(self, text: str) -> int:
        return self._fh.write(_ANSI.sub("", text.replace("\r", "")))

    def progress(self, bar_id: int, frame: str) -> None:
        if frame:
            self._frames[bar_id] = frame
        elif bar_id in self._frames:  # closed: its last frame is log content
            self.write(self._frames.pop(bar_id))

    def flush(self) -> None:
        self._fh.flush()

    def isatty(self) -> bool:
        return False


class _RunBar:
    """Callbacks drawing one tqdm bar over all batches of all epochs, and one line per epoch."""

    def __init__(self, label: str, stream) -> None:
        self.label, self.stream, self.bar = label, stream, None

    def _losses(self, trainer) -> str:
        loss = getattr(trainer, "tloss", None) or {}
        return " ".join(f"{k} {float(v):.3g}" for k, v in loss.items())

    def on_train_epoch_start(self, trainer) -> None:
        from tqdm import tqdm

        if self.bar is None:
            nb = len(trainer.train_loader)
            tty = getattr(self.stream, "isatty", lambda: False)()
            self.bar = tqdm(total=trainer.epochs * nb, initial=trainer.epoch * nb, desc=self.label, unit="batch",
                            file=self.stream, dynamic_ncols=True, leave=True,
                            mininterval=0.1 if tty else 10.0)  # a log file or pipe gets a redraw every 10 s at most
        self.bar.set_postfix_str(f"epoch {trainer.epoch + 1}/{trainer.epochs}", refresh=False)

    def on_train_batch_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_fit_epoch_end(self, trainer) -> None:
        if self.bar is None or trainer.epoch >= trainer.epochs:  # final_eval calls again with epoch + 1
            return
        self.bar.write(f"  epoch {trainer.epoch + 1}/{trainer.epochs}  {self._losses(trainer)}", file=self.stream)

    def on_train_end(self, trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TrainingConsole:
    """What `training_console` yields: the log file's path, and `attach(trainer)` for the run bar."""

    def __init__(self, path: Path, bar: _RunBar) -> None:
        self.path, self._bar = path, bar

    def attach(self, trainer) -> None:
        """Draw the run bar and the per-epoch lines from `trainer`'s callbacks."""
        for event in ("on_train_epoch_start", "on_train_batch_end", "on_fit_epoch_end", "on_train_end"):
            trainer.add_callback(event, getattr(self._bar, event))


@contextlib.contextmanager
def training_console(out: Path, verbose: bool = False, label: str | None = None) -> Iterator[TrainingConsole]:
    """Route Ultralytics' output into `out/train.log` (and, with `verbose`, to the console too) while the block runs.

    Build the trainer inside the block (its constructor already logs) and `attach` it. Ultralytics' logger is
    restored as it was on exit; the stdout redirection lasts only while the block runs.
    """
    from ultralytics.utils import LOGGER

    out.mkdir(parents=True, exist_ok=True)
    path = out / LOG_NAME
    level, handlers = LOGGER.level, list(LOGGER.handlers)
    with open(path, "a", encoding="utf-8") as fh:
        file_handler = logging.StreamHandler(_LogStream(fh))
        file_handler.setFormatter(logging.Formatter("%(message)s"))
        LOGGER.addHandler(file_handler)
        LOGGER.setLevel(logging.INFO)  # Ultralytics logs its tables at INFO
        try:
            bar = _RunBar(label or f"train {out.name}", sys.stderr)
            try:
                if verbose:  # Ultralytics' own output stays on the console, beside the run bar
                    yield TrainingConsole(path, bar)
                    return
                for h in handlers:
                    LOGGER.removeHandler(h)
                with contextlib.redirect_stdout(_LogStream(fh)):
                    yield TrainingConsole(path, bar)
            finally:
                bar.on_train_end(None)
        finally:
            LOGGER.removeHandler(file_handler)
            for h in handlers:
                if h not in LOGGER.handlers:
                    LOGGER.addHandler(h)
            LOGGER.setLevel(level)
