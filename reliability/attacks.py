"""The attack suite's figures (issue 10, item 3): attacks tried and accepted, by kind.

The attacks themselves are `tests/integration/test_attacks.py`: forged, replayed, expired and
cross-terminal signatures; a merchant's terminal paying in a municipality it does not accept; staff of
one municipality on another's data; revoked, suspended and superseded cards; forged, misdirected and old
card signatures; PIN lockout; a partner without agreement or signing with another partner's key;
partner request signatures and a partner reading another partner's conversions; an Individual Number in
every identifier and free-text field; oversized bodies and deeply nested JSON. An
attack is *accepted* when it is not refused with its documented code, or when anything was written.

`python -m reliability.attacks` runs the suite and prints `reliability/results/attacks.json`.
"""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "reliability" / "results" / "attacks.json"


@dataclass
class AttackLog:
    """Every attack tried in a run, and whether the platform let it through."""

    by_kind: dict = field(default_factory=dict)
    accepted_attacks: list = field(default_factory=list)
    refused_otherwise: list = field(default_factory=list)

    def record(self, kind: str, name: str, accepted: bool, detail: str = "", refused_otherwise: bool = False) -> None:
        """`refused_otherwise`: refused, nothing written, but by another documented check than the attack's own."""
        entry = self.by_kind.setdefault(kind, {"tried": 0, "accepted": 0})
        entry["tried"] += 1
        if refused_otherwise:
            entry["refused_with_another_documented_code"] = entry.get("refused_with_another_documented_code", 0) + 1
            self.refused_otherwise.append({"kind": kind, "attack": name, "answer": detail[:120].strip()})
        if accepted:
            entry["accepted"] += 1
            self.accepted_attacks.append({"kind": kind, "attack": name, "detail": detail[:500]})

    @property
    def tried(self) -> int:
        return sum(entry["tried"] for entry in self.by_kind.values())

    @property
    def accepted(self) -> int:
        return sum(entry["accepted"] for entry in self.by_kind.values())

    def summary(self) -> dict:
        return {
            "tried": self.tried,
            "accepted": self.accepted,
            "by_kind": dict(sorted(self.by_kind.items())),
            "accepted_attacks": self.accepted_attacks,
            "refused_with_another_documented_code": self.refused_otherwise,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }


def writes(before: dict, after: dict, allow: dict | None = None) -> list[str]:
    """What changed between two snapshots of every table (`table_snapshot`), beyond what `allow` permits:
    `{"nonces": 1}` lets that many items appear in a table (a request's nonce is spent once its signature
    checks out); `{"challenges": -1}` lets that many disappear (a one-time challenge is spent even when the
    answer is refused); `{"staff_sessions": "touch"}` lets existing items change (a session's last activity)."""
    allow = allow or {}
    changes = []
    for table in sorted(set(before) | set(after)):
        old = {repr(item) for item in before.get(table, [])}
        new = {repr(item) for item in after.get(table, [])}
        added, removed = new - old, old - new
        permitted = allow.get(table)
        if permitted == "touch" and len(before.get(table, [])) == len(after.get(table, [])):
            continue
        if isinstance(permitted, int) and permitted >= 0 and not removed and len(added) <= permitted:
            continue
        if isinstance(permitted, int) and permitted < 0 and not added and len(removed) <= -permitted:
            continue
        if added or removed:
            changes.append(f"{table}: +{len(added)} -{len(removed)}")
    return changes


def write_results(log: AttackLog, path: pathlib.Path = RESULTS) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = log.summary()
    path.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    status = subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/integration/test_attacks.py", *(argv or [])],
                             cwd=ROOT)
    if RESULTS.exists():
        print(RESULTS.read_text(encoding="utf-8"))
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
