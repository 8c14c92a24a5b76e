"""Frame cache: per-timeline frame storage in blob storage, through framecache's local tiers.

A drop-in for the Python frame cache module: the same functions, parameters, defaults and
return values, and the same objects in the same bucket::

    cache/timelines/{timeline_id}/frames/{seq}.jpg
    cache/timelines/{timeline_id}/overlays/{job_id}/{stage}/{seq}_{name}.png

so both read what the other wrote. Reads go through a memory tier and a disk cache shared
by the machine's processes before blob storage. framecache also writes
``frames/manifest.json`` (ignored by the Python module) so that frames it cached load with
their ``chunk_id``, ``timestamp`` and ``perceptual_hash``; frames written without one load
with the module's defaults (``0``, ``0.0``, ``""``).

Configuration comes from the environment, as for the ``framecache`` command, read when
first used: ``FRAMECACHE_BACKEND`` (``s3`` by default here, as the module always used S3;
``fs`` for a local directory), ``FRAMECACHE_ROOT``,
``S3_BUCKET``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``FRAMECACHE_CACHE_DIR``, ``FRAMECACHE_MEMORY_CAPACITY``,
``FRAMECACHE_DISK_CAPACITY``. One cache serves the whole process (and is rebuilt in a
forked child).

``cache_frames`` writes the given frames and keeps every other frame of the timeline, as the
module does (a timeline cached chunk by chunk ends with every chunk; a seq written again is
replaced). ``cache_frames(..., replace=True)`` rebuilds it instead: the timeline becomes
exactly these frames. Where it differs, on purpose: ``cache_frames`` rejects duplicate
sequence numbers; ``save_overlays`` accepts only base64 PNG data; errors are
:class:`framecache.FrameCacheError` subclasses (``ValueError`` for bad input, ``OSError``
for storage failures).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from framecache._native import Frame, FrameCache
from framecache._native import frames_to_b64 as _frames_to_b64

logger = logging.getLogger(__name__)

BUCKET = os.environ.get("S3_BUCKET", "mpr")
CACHE_PREFIX = "cache/timelines"

_cache: FrameCache | None = None
_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    # A fork while another thread held the lock must not leave the child waiting forever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


def _fc() -> FrameCache:
    """The process's cache, configured from the environment on first use.

    The module this replaces always used S3, so S3 is the backend here unless
    ``FRAMECACHE_BACKEND`` says otherwise: a worker that only changes its import keeps
    reading and writing the same bucket.
    """
    global _cache
    cache = _cache
    if cache is None:
        with _lock:
            if _cache is None:
                backend = os.environ.get("FRAMECACHE_BACKEND", "").strip() or "s3"
                _cache = FrameCache(backend=backend)
            cache = _cache
    return cache


def cache_exists(timeline_id: str) -> bool:
    """Check if frame cache exists for a timeline."""
    return _fc().exists(timeline_id)


def cache_frames(timeline_id: str, frames: list[Any], quality: int = 85, *, replace: bool = False) -> int:
    """
    Write frames to blob storage as JPEGs (and through the local tiers).
    Returns number of frames cached.

    The timeline's other frames stay, as with the module. ``replace=True`` rebuilds the
    timeline instead: it becomes exactly ``frames`` and every other frame is removed.
    """
    frames = list(frames)
    if not frames and not replace:
        return 0
    count = _fc().cache_frames(timeline_id, frames, quality, replace=replace)
    logger.info("Cached %d frames for timeline %s", count, timeline_id)
    return count


def load_cached_frames(timeline_id: str) -> list[Frame]:
    """
    Load all cached frames as Frame objects with numpy arrays.
    Returns empty list if cache doesn't exist.
    """
    return _fc().load_frames(timeline_id)


def load_cached_frames_b64(timeline_id: str) -> list[dict]:
    """
    Load cached frames as base64 JPEGs for the UI.
    Returns list of {seq, timestamp, jpeg_b64}.
    """
    return _fc().load_frames_b64(timeline_id)


def save_overlays(
    timeline_id: str,
    job_id: str,
    stage: str,
    seq: int,
    overlays: dict[str, str],
) -> None:
    """
    Save debug overlay images (base64 PNG) to blob storage.
    overlays: {overlay_key: base64_png_string}
    e.g. {"edge_overlay_b64": "iVBOR...", "lines_overlay_b64": "iVBOR..."}
    """
    _fc().save_overlays_b64(timeline_id, job_id, stage, seq, overlays)
    logger.info(
        "Saved %d overlays for timeline %s job %s stage %s frame %d",
        len(overlays),
        timeline_id,
        job_id,
        stage,
        seq,
    )


def load_overlays(
    timeline_id: str,
    job_id: str,
    stage: str,
    seq: int,
) -> dict[str, str] | None:
    """
    Load debug overlay images from blob storage as base64 strings.
    Returns {overlay_key: base64_png_string} or None if no overlays cached.
    """
    return _fc().load_overlays_b64(timeline_id, job_id, stage, seq)


def list_overlay_frames(
    timeline_id: str,
    job_id: str,
    stage: str,
) -> list[int]:
    """List frame sequences that have cached overlays."""
    return _fc().list_overlay_frames(timeline_id, job_id, stage)


def clear_cache(timeline_id: str) -> None:
    """Delete the frame cache for a timeline (blob storage and this machine's copies)."""
    _fc().clear(timeline_id, "frames")
    logger.info("Cleared frame cache for timeline %s", timeline_id)


def frames_to_b64(frames: Iterable[Any], quality: int = 75) -> list[dict]:
    """
    Convert in-memory Frame objects to base64 JPEG dicts.
    For API responses when frames are already in memory.
    """
    return _frames_to_b64(frames, quality)


__all__ = [
    "BUCKET",
    "CACHE_PREFIX",
    "Frame",
    "cache_exists",
    "cache_frames",
    "clear_cache",
    "frames_to_b64",
    "list_overlay_frames",
    "load_cached_frames",
    "load_cached_frames_b64",
    "load_overlays",
    "save_overlays",
]
