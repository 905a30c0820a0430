"""The terminal's outbox: a payment is written here, durably, before it is sent.

If the answer is lost (timeout, network failure, the terminal crashing), the entry stays, and the next
`status` resends the same transfer id and body: the server answers with the first outcome, so the
payment is charged exactly once and never lost.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path


class Outbox:
    def __init__(self, path: Path):
        self.path = Path(path)

    def entries(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def save(self, transfer_id: str, body: dict) -> None:
        entries = self.entries()
        entries[transfer_id] = {"body": body, "saved_at": int(time.time())}
        self._write(entries)

    def remove(self, transfer_id: str) -> None:
        entries = self.entries()
        if entries.pop(transfer_id, None) is not None:
            self._write(entries)

    def _write(self, entries: dict) -> None:
        # Written to a temporary file, flushed to disk, then renamed: a crash leaves the old or the new file.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(entries, handle, ensure_ascii=False, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
