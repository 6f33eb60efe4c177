"""Live progress of a local run on stderr, read from the per-shard files as they appear.

Every shard writes ``features/<shard>.json`` when its features exist and ``shards/<shard>.json`` (its
summary) when it is done, so a launcher-side thread that lists those two folders knows how far the
run is on any local runner, ``multi_processing`` included, without touching the pipeline. On a
terminal it is one updating line; otherwise (CI, logs) a plain line every ``LOG_EVERY`` seconds
(``SHARDGUARD_PROGRESS_SECONDS`` overrides the interval).
Shards whose summary was already there at launch (a resumed run) count as done from the start.
"""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time

from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.transforms.contracts import RunLayout

TTY_EVERY, LOG_EVERY = 0.5, 10.0


def _mtimes(pattern: str) -> dict[str, float]:
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # noqa: BLE001 - the folder does not exist yet
        return {}
    return {m.path.rsplit("/", 1)[-1][: -len(".json")]: m.last_updated_in_seconds for m in found}


class Progress:
    """A context manager that reports progress while the run inside it goes on."""

    def __init__(self, layout: RunLayout, shards: list[str], enabled: bool = True, stream=None):
        self._layout, self._shards, self._enabled = layout, set(shards), enabled
        self._out = stream or sys.stderr
        self._tty = hasattr(self._out, "isatty") and self._out.isatty()
        self._stop = threading.Event()
        self._seen: dict[str, dict] = {}
        self._before = {}
        self._thread = None
        self._start = time.time()

    def __enter__(self):
        if self._enabled:
            self._before = _mtimes(fileio.join(self._layout.root, "shards", "*.json"))
            self._thread = threading.Thread(target=self._loop, name="shardguard-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._print(final=True)
        return False

    def _loop(self) -> None:
        every = float(os.environ.get("SHARDGUARD_PROGRESS_SECONDS") or (TTY_EVERY if self._tty else LOG_EVERY))
        while not self._stop.wait(every):
            self._print(final=False)

    def _poll(self) -> tuple[int, int]:
        feats = _mtimes(fileio.join(self._layout.root, "features", "*.json"))
        summaries = _mtimes(fileio.join(self._layout.root, "shards", "*.json"))
        for shard, mtime in summaries.items():
            if shard in self._shards and shard not in self._seen and mtime != self._before.get(shard, -1):
                self._seen[shard] = self._read(shard)
        resumed = sum(1 for s in self._before if s in self._shards and s not in self._seen)
        return sum(1 for s in feats if s in self._shards), len(self._seen) + resumed

    def _read(self, shard: str) -> dict:
        try:
            return fileio.read_json(self._layout.summary(shard)).get("counts") or {}
        except (ValueError, OSError):
            return {}

    def line(self) -> str:
        """The current progress line."""
        featured, done = self._poll()
        total, elapsed = len(self._shards), max(time.time() - self._start, 1e-6)
        rows = sum(c.get("rows_in", 0) for c in self._seen.values())
        flagged = sum(c.get("removed", 0) + c.get("quarantined", 0) for c in self._seen.values())
        fresh = len(self._seen)
        eta = (total - done) * elapsed / fresh if fresh and done < total else None
        return (f"[shardguard] shards {done}/{total} done ({featured} with features), {rows} rows, "
                f"{rows / elapsed:.0f} rows/s, {flagged} removed or quarantined"
                + (f", ETA {eta:.0f}s" if eta is not None else "") + f", {elapsed:.0f}s elapsed")

    def _print(self, final: bool) -> None:
        text = self.line()
        if self._tty:
            end = "\n" if final else ""
            width = shutil.get_terminal_size((200, 20)).columns
            self._out.write("\r" + text[: width - 1].ljust(width - 1) + end)
        else:
            self._out.write(text + "\n")
        self._out.flush()
