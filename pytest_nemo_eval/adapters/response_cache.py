"""The response cache's store: one SQLite file (WAL), shared safely by threads and processes.

Why SQLite/WAL: readers never block the writer and vice versa, each INSERT is
atomic (no torn entries), the primary key rules out duplicates, and every
committed entry survives a crash of the proxy, so an interrupted run resumes
from its cache. Each row carries the body's SHA-256, checked on read.

The store is not an interceptor: the cache interceptor (interceptors/cache.py)
uses it, and the route table (routes.py) opens one per file and shares it
between routes. Keeping it here lets the registry name its type without
importing any interceptor (registry.py is a leaf the interceptors import).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    status INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB NOT NULL,
    body_sha256 TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class CacheError(RuntimeError):
    """The cache file cannot be used; the message names the file and the fix."""


class CachedResponse(NamedTuple):
    status: int
    content_type: str
    body: bytes


class ResponseCache:
    """Thread-safe handle on one cache file (one SQLite connection per thread)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            conn.execute("SELECT count(*) FROM responses LIMIT 1").fetchone()
        except (sqlite3.Error, OSError) as exc:
            self.close()
            raise CacheError(
                f"Response cache {self.path} cannot be used: {exc}. If the file is corrupted (not a SQLite "
                "database), move it aside or delete it; if it is locked, stop the other process holding it; "
                "or point the cache at another file (cache.path / --cache)."
            ) from exc

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def get(self, key: str) -> CachedResponse | None:
        row = self._conn().execute(
            "SELECT status, content_type, body, body_sha256 FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        status, content_type, body, digest = row
        if hashlib.sha256(body).hexdigest() != digest:
            # drop it so the upstream's fresh answer can take its place, and report it
            self._conn().execute("DELETE FROM responses WHERE key = ?", (key,))
            raise sqlite3.DatabaseError(f"cache entry {key[:12]}… failed its checksum and was dropped")
        return CachedResponse(status, content_type, bytes(body))

    def put(self, key: str, entry: CachedResponse, *, replace: bool) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        self._conn().execute(
            f"{verb} INTO responses (key, status, content_type, body, body_sha256, created) VALUES (?, ?, ?, ?, ?, ?)",
            (key, entry.status, entry.content_type, entry.body, hashlib.sha256(entry.body).hexdigest(), time.time()),
        )

    def warn_once(self, problem: str) -> bool:
        """True the first time `problem` (its text up to any entry key) is reported for this file."""
        kind = problem.split("cache entry", 1)[0] + ("entry checksum" if "checksum" in problem else "")
        with self._lock:
            if kind in self._warned:
                return False
            self._warned.add(kind)
            return True

    def count(self) -> int:
        return self._conn().execute("SELECT count(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def set_aside_if_corrupt(path: Path) -> str | None:
    """Check an existing cache file before a run opens it (SQLite's quick_check reads it once): a file that is
    not a healthy cache (corrupt, cut short by a crash or a half-restored CI cache) is renamed to
    `<name>.corrupt-<time>`, so the run starts an empty cache there; returns the one warning naming it, or None."""
    path = Path(path)
    if not path.is_file():
        return None
    problem = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            verdict = conn.execute("PRAGMA quick_check(1)").fetchone()
            if not verdict or verdict[0] != "ok":
                problem = f"quick_check says {verdict[0] if verdict else 'nothing'}"
            else:
                conn.execute("SELECT key, body_sha256 FROM responses LIMIT 1").fetchall()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return None  # another run holds it: it is in use, so it opens
        problem = str(exc)
    except sqlite3.Error as exc:
        problem = str(exc)
    if problem is None:
        return None
    problem = "; ".join(line.strip() for line in problem.splitlines() if line.strip())[:300]
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.replace(Path(f"{aside}{suffix}"))
    return (f"response cache {path} is not a usable cache ({problem}): moved aside to {aside.name}; this run "
            "starts an empty cache, so every request is a miss. Delete the moved file once you no longer need it.")


def cache_key(namespace: str, method: str, path: str, body: dict) -> str:
    """Canonical: key order and whitespace of the client's JSON do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{namespace}\n{method} {path}\n{canonical}".encode()).hexdigest()
