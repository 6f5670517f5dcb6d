"""The decode-once cache (decoded tensors and image headers, keyed by the files' names, times
and sizes), and the digest that names a loaded dataset's contents.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

CACHE_FORMAT = 1        # bump when the cached tensors change meaning


def cache_dir() -> Path:
    return Path(os.environ.get("HETERO_CACHE") or Path.home() / ".cache" / "hetero")


def _cache_key(kind: str, root: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{kind}|{root}|{len(files)}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"|{path.relative_to(root)}|{stat.st_mtime_ns}|{stat.st_size}".encode())
    return digest.hexdigest()[:20]


def _cached(kind: str, root: Path, files: list[Path], build) -> tuple[dict, bool]:
    """``build()``'s tensors, from the cache when the folder is unchanged. True if cached."""
    path = cache_dir() / f"{kind}-{root.name}-{_cache_key(kind, root, files)}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True), True
        except (OSError, RuntimeError, EOFError):
            pass  # a truncated or stale file: rebuild it
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(arrays, tmp)
    os.replace(tmp, path)  # atomic: concurrent loaders never read half a file
    return arrays, False


def data_digest(data) -> str:
    """sha256 (12 hex digits) of what a network sees: the training split and the test split.

    In-memory datasets hash their uint8 pixels and labels; streamed ones (ImageNet layout)
    hash their file lists and labels, which is what changes between two folders.
    """
    h = hashlib.sha256()
    if hasattr(data, "train_x"):
        for tensor in (data.train_x, data.train_y, data.test_x, data.test_y):
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    else:
        for path, label in (*data.train, *data.test):
            h.update(f"{path}\t{label}\n".encode())
    return h.hexdigest()[:12]
