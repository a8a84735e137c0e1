"""Decoded-split cache: decode a split's images once, keep them as one uint8 tensor on disk.

A split (any method.md §3 layout, see :mod:`dacl.data.layouts`) is decoded by
:func:`~dacl.data.layouts.decode_split` into ``uint8 (N, C, S, S)`` images, ``int64 (N,)``
labels and the ``N`` sample names, and saved with ``torch.save`` as ONE file in ``cache_dir``
beside a *fingerprint* of what it was built from. Later runs recompute the fingerprint and reuse
the file only when it matches; anything else rebuilds it.

The fingerprint (SHA-256) covers: a format version; the sample names and labels, in order (a
file added, removed, renamed or moved to another class folder changes them); and for every
source file (each image, or the one CSV) its absolute path, size and ``st_mtime_ns`` (a file
replaced or rewritten in place changes them). That costs one ``stat()`` per file and reads no
image, so reusing the cache is cheap (docs/results.md has the timings). The one edit it cannot
see is new content that keeps both the size and the nanosecond mtime (e.g. a same-length
overwrite followed by ``touch -r``, or an in-place change within one file-system clock tick of
the fingerprint); delete ``cache_dir`` after such surgery, or bump :data:`CACHE_VERSION` when
decoding itself changes.

The fingerprint is taken *before* decoding, so a file changed while a build runs leaves a stale
fingerprint behind and the next run rebuilds.

Writes are atomic (temporary file in ``cache_dir``, flushed, then ``os.replace``): an
interrupted build leaves no file that could be reused, and concurrent builders (DDP ranks) each
publish a complete file. A cache that cannot be read (corrupt, older format) is rebuilt; a
``cache_dir`` that cannot be written only costs a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import torch
from torch import Tensor

from dacl.checkpoint import atomic_save, safe_load
from dacl.data.layouts import SplitIndex, decode_split, first_few
from dacl.errors import DACLError

log = logging.getLogger("dacl.data")

#: Bump when the cached content or the decoding changes meaning: old caches are then rebuilt.
CACHE_VERSION = 2

__all__ = ["CACHE_VERSION", "cache_path", "fingerprint", "load_or_build"]


def cache_path(index: SplitIndex, cache_dir: str | Path) -> Path:
    """The cache file of ``index`` in ``cache_dir``: one per (data location, split).

    Named after the split and a hash of where its sources live, so the splits of one dataset
    (even ``val``/``test`` read from the same ``test/`` folder or the same CSV) and datasets at
    different places never share a file. Validity is decided by :func:`fingerprint`, not by the
    name.
    """
    split = index.split
    paths = [os.path.abspath(p) for p in index.sources]
    where = os.path.commonpath(paths) if paths else ""
    # Without a split name, the first sample's name tells splits of one folder apart.
    tag = split or (index.names[0] if len(index) else "")
    digest = hashlib.sha256(f"{where}\0{tag}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{split or 'split'}-{digest}.pt"


def fingerprint(index: SplitIndex) -> str:
    """SHA-256 over the format version, names, labels and every source's path, size, mtime_ns.

    A source that cannot be stat'ed (removed since indexing) is recorded as missing, so the
    fingerprint changes when it comes back.
    """
    h = hashlib.sha256()
    head = f"dacl-decoded-v{CACHE_VERSION}\0{len(index)}\0{len(index.sources)}\0"
    h.update(f"{head}{index.channels}\0{index.size}\0".encode())
    h.update("\0".join(index.names).encode("utf-8", "surrogateescape"))
    h.update(b"\1")
    h.update(torch.as_tensor(list(index.labels), dtype=torch.int64).numpy().tobytes())
    h.update(b"\1")
    stats = []
    for src in index.sources:
        path = os.path.abspath(src)
        try:
            st = os.stat(path)
            stats.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
        except OSError:
            stats.append(f"{path}\0missing")
    h.update("\n".join(stats).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _read(path: Path, expect: str) -> dict | None:
    """The cached payload if ``path`` holds a well-formed cache with fingerprint ``expect``."""
    if not path.is_file():
        return None
    try:
        payload = safe_load(path, "decoded cache")
    except DACLError as err:  # corrupt, truncated, other format, or unsafe: never used
        log.warning("%s; rebuilding it", err)
        return None
    if not isinstance(payload, dict) or payload.get("fingerprint") != expect:
        return None
    images, labels, names = payload.get("images"), payload.get("labels"), payload.get("names")
    ok = (
        isinstance(images, Tensor)
        and images.dtype == torch.uint8
        and images.dim() == 4
        and isinstance(labels, Tensor)
        and labels.dtype == torch.int64
        and isinstance(names, list)
        and images.shape[0] == labels.shape[0] == len(names)
    )
    if not ok:
        log.warning("decoded cache %s is malformed; rebuilding it", path)
        return None
    return payload


def load_or_build(
    index: SplitIndex, cache_dir: str | Path, strict: bool = False
) -> tuple[Tensor, Tensor, list[str]]:
    """The decoded split: uint8 images (N, C, S, S), int64 labels (N,), names — from the cache
    in ``cache_dir`` when its fingerprint matches ``index``'s sources, else decoded (with
    :func:`decode_split`, ``strict`` as there) and cached.

    A cache built non-strictly that skipped unreadable files is not reused with ``strict=True``
    (the rebuild raises, naming the file); reused non-strictly, it warns again how many it lacks.
    """
    path = cache_path(index, cache_dir)
    start = time.perf_counter()
    payload = _read(path, fingerprint(index))
    if payload is not None and strict and payload.get("skipped"):
        log.info("decoded cache %s skipped unreadable files; rebuilding strictly", path)
        payload = None
    if payload is None:
        payload = _build(index, path, strict, start)
    else:
        _say_reused(payload, path, index.split or "?", start)
    if not payload["names"]:  # nothing to train or measure on: say so before the run starts
        bad = payload["skipped"]
        why = f"its {len(bad)} file(s) are unreadable ({first_few(bad)})" if bad else "no files"
        raise DACLError(f"the {index.split or '?'} split has no readable image: {why}")
    return payload["images"], payload["labels"], payload["names"]


def _say_reused(payload: dict, path: Path, split: str, start: float) -> None:
    """Say that the split comes from ``path``, warning again of the files it lacks."""
    skipped = payload.get("skipped") or []
    if skipped:
        log.warning(
            "the decoded %s split lacks %d unreadable file(s) skipped when it was built: %s",
            split,
            len(skipped),
            first_few(skipped),
        )
    log.info(
        "reusing decoded cache %s (%s split, %d images, fingerprint matches, %.2f s)",
        path,
        split,
        len(payload["names"]),
        time.perf_counter() - start,
    )


def _build(index: SplitIndex, path: Path, strict: bool, start: float) -> dict:
    """Decode ``index`` and save it at ``path`` (a cache that cannot be written only warns)."""
    reason = "fingerprint changed" if path.exists() else "no cache yet"
    split, count = index.split or "?", len(index)
    log.info("building decoded cache %s (%s split, %d samples; %s)", path, split, count, reason)
    images, labels, names = decode_split(index, strict=strict)
    kept = set(names)
    skipped = [n for n in index.names if n not in kept] if len(names) != len(index) else []
    payload = {
        "fingerprint": fingerprint(index),
        "images": images.contiguous(),
        "labels": labels,
        "names": list(names),
        "skipped": skipped,
    }
    try:
        atomic_save(payload, path)
    except OSError as err:
        log.warning("could not write decoded cache %s (%s); continuing without it", path, err)
    else:
        log.info(
            "built decoded cache %s (%d images, %.1f MB, %.2f s)",
            path,
            images.shape[0],
            path.stat().st_size / 1e6,
            time.perf_counter() - start,
        )
    return payload
