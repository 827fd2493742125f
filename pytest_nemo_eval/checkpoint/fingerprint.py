"""A checkpoint's identity in seconds, not in a full read: what keys the proxy cache and resumed results.

Why not the full SHA-256: an 8B checkpoint is 16 GB, minutes of disk reads on every re-gate, before
any cache hit can be served. Why not sizes and mtimes: a copy (CI cache restore, rsync, `cp -r`)
changes every mtime, and a fine-tune that keeps the shapes keeps every size.

What is hashed, per file, in sorted relative-path order (mtimes never):
- its relative path and its size;
- small files (< SMALL_FILE_BYTES: configs, tokenizer files, torch_dist `.metadata`, `metadata.json`,
  index files) in full;
- large files (the weight shards): SAMPLES byte ranges of SAMPLE_BYTES each, spread evenly from the
  first byte to the last (both included).

What it trusts: that two checkpoints whose configs, tokenizer, weight metadata and sizes agree and
whose sampled bytes agree hold the same weights. Training moves every tensor, so any fine-tune,
any other iteration and any other model differ in the sampled ranges; an edit that changes a few
bytes between two sampled ranges of a shard, and nothing else, would go unseen. For that case,
`--nemo-cache refresh` (or `--nemo-rerun`) re-asks the model. docs/how-to/cache-and-resume.md says so too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SMALL_FILE_BYTES = 1 << 20  # read whole: configs, tokenizer, the weights' metadata and index
SAMPLES = 64  # per large file; 64 x 64 KiB = 4 MiB read of each shard whatever its size
SAMPLE_BYTES = 64 << 10
FINGERPRINT_VERSION = "fp1"  # part of the digest: a change of the scheme is a change of identity


def checkpoint_fingerprint(path: Path) -> str:
    """`fp1-<sha256 hex>` of the directory's file tree as the module docstring says."""
    path = Path(path)
    digest = hashlib.sha256(FINGERPRINT_VERSION.encode() + b"\0")
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with open(file, "rb") as handle:
            if size < SMALL_FILE_BYTES:
                digest.update(handle.read())
                continue
            for offset in sample_offsets(size):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE_BYTES))
    return f"{FINGERPRINT_VERSION}-{digest.hexdigest()}"


def sample_offsets(size: int) -> list[int]:
    """SAMPLES evenly spaced starts of SAMPLE_BYTES ranges covering the first and the last byte."""
    last = max(size - SAMPLE_BYTES, 0)
    return sorted({last * i // (SAMPLES - 1) for i in range(SAMPLES)})


def tree_bytes(path: Path) -> int:
    """Total size of the files under `path` (for saying what a full hash would have read)."""
    return sum(os.path.getsize(p) for p in Path(path).rglob("*") if p.is_file())
