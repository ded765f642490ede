"""Records of a generation stage in progress, appended as they finish.

A long stage (prompts, candidates, judgments) appends each finished chunk of records to
`<artifact>.partial` (JSONL, one record per line, each with a stable id) and flushes it to
disk. After a crash or a kill, the next run repairs a torn last line, keeps every complete
record and produces only what is missing; when the stage is done, the records are written
to the artifact atomically and the journal is removed. So an artifact that exists is
complete, and a journal never holds a record twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .files import atomic_write_text, write_jsonl
from .rundir import journal_of


class Journal:
    def __init__(self, artifact: Path):
        self.artifact = Path(artifact)
        self.path = journal_of(self.artifact)

    def load(self, complete: Callable[[list[dict]], list[dict]] | None = None) -> list[dict]:
        """Finished records; a torn tail (a kill in mid-write) is cut off the file.

        `complete` filters out records of unfinished work items (for example a prompt with
        fewer than N candidates, when a kill interrupted the write of its chunk); the
        journal is rewritten without them, so later appends never duplicate a record.
        """
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        records: list[dict] = []
        for line in data.split(b"\n")[:-1]:  # what follows the last newline is torn
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except (UnicodeDecodeError, json.JSONDecodeError):
                break  # a garbled line: keep what came before it
        kept = complete(records) if complete else records
        if kept != records or not data.endswith(b"\n") and data:
            self._rewrite(kept)
        return kept

    def append(self, records: Iterable[dict]) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        if not text:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def finish(self, records: list[dict]) -> None:
        """Write the complete artifact atomically, then drop the journal."""
        write_jsonl(self.artifact, records)
        self.path.unlink(missing_ok=True)

    def _rewrite(self, records: list[dict]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def complete_groups(key: str, size: int) -> Callable[[list[dict]], list[dict]]:
    """Keep only records whose group (same `key`) has all `size` members, first copies only."""

    def keep(records: list[dict]) -> list[dict]:
        seen: set = set()
        unique = []
        for r in records:
            if r["id"] not in seen:
                seen.add(r["id"])
                unique.append(r)
        counts: dict = {}
        for r in unique:
            counts[r[key]] = counts.get(r[key], 0) + 1
        return [r for r in unique if counts[r[key]] == size]

    return keep
