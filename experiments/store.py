"""results.jsonl: one JSON record per attack, appended as soon as it is known.

A killed run loses nothing already written: a re-run reads the file, skips the rows whose
key is present and appends only new ones, so the file never holds a key twice. A line cut
short by the kill (no trailing newline) is dropped on open. The settings that make the
results comparable (budget, seed, data) are kept in `settings.json` beside the file, and a
re-run with other settings is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os

# The fields that name one attack: one line per distinct key.
KEY_FIELDS = ("model", "region", "pixels", "restriction", "attack", "image", "target")


def record_key(record: dict) -> tuple:
    """The tuple of KEY_FIELDS naming the attack of `record`."""
    return tuple(record.get(k) for k in KEY_FIELDS)


class ResultStore:
    """Append-only JSONL results with a set of the keys already present.

    Args:
      path: the results.jsonl file (created with its folder if missing).
    """

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.records: list[dict] = []
        self.keys: set[tuple] = set()
        if os.path.exists(path):
            self._load()

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) < len(data):
            # The run was killed mid-line: drop the fragment so appends start clean.
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        for number, line in enumerate(complete.decode().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{self.path}:{number}: not a JSON record ({err})") from None
            key = record_key(record)
            if key not in self.keys:
                self.keys.add(key)
                self.records.append(record)

    def __contains__(self, key: tuple) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.records)

    def append(self, records: list[dict]) -> int:
        """Write the records whose key is new, flushed to disk; returns how many."""
        new = []
        for r in records:
            key = record_key(r)
            if key not in self.keys:
                self.keys.add(key)
                new.append(r)
        if new:
            with open(self.path, "a") as f:
                f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in new))
                f.flush()
                os.fsync(f.fileno())
            self.records.extend(new)
        return len(new)


def check_settings(workdir: str, settings: dict) -> None:
    """Write WORKDIR/settings.json, or raise ValueError if it holds other settings."""
    path = os.path.join(workdir, "settings.json")
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != settings:
            diff = {k: (old.get(k), settings.get(k)) for k in old.keys() | settings.keys()}
            diff = {k: v for k, v in diff.items() if v[0] != v[1]}
            raise ValueError(
                f"--workdir {workdir} holds results made with other settings "
                f"(was, now: {diff}); use another --workdir or the same settings"
            )
        return
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(settings, f, indent=2, sort_keys=True)
