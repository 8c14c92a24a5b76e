"""Type stubs of framecache's native module (the Rust half of the package)."""

from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from os import PathLike
from typing import Any, Literal, Protocol, TypedDict, final

import numpy as np
import numpy.typing as npt

__version__: str
JPEG_ENCODER: str

class FrameLike(Protocol):
    """Anything with the seed module's ``Frame`` attributes."""

    sequence: int
    chunk_id: int
    timestamp: float
    image: npt.NDArray[np.uint8]
    perceptual_hash: str

class EncodedFrame(TypedDict, total=False):
    seq: int  # required
    jpeg: bytes  # required
    chunk_id: int
    timestamp: float
    perceptual_hash: str

class FrameB64(TypedDict):
    seq: int
    timestamp: float
    jpeg_b64: str

class FrameJpeg(TypedDict):
    seq: int
    timestamp: float
    jpeg: bytes
    source: Literal["memory", "disk", "origin"]

class FrameMeta(TypedDict):
    seq: int
    chunk_id: int
    timestamp: float
    perceptual_hash: str
    size: int
    blake3: str

class FrameEntry(TypedDict):
    seq: int
    key: str
    size: int
    meta: FrameMeta | None

class TierStats(TypedDict):
    hits: int
    misses: int
    bytes_read: int
    bytes_written: int
    writes: int
    corrupt: int
    evictions: int
    errors: int
    retries: int

class EvictionStatus(TypedDict):
    evictor_running: bool
    evictor_here: bool
    evictor_pid: int
    used_bytes: int
    low_watermark: int
    high_watermark: int
    hard_limit: int
    counted: bool
    rounds: int
    last_round_us: int
    last_round_entries: int
    last_round_bytes: int
    writer_batches: int
    repaired_shards: int
    rebuilds: int
    last_rebuild_us: int
    takeovers: int

class Stats(TypedDict):
    memory: TierStats
    disk: TierStats
    origin: TierStats
    coalesced: int
    skipped_names: int
    offline_loads: int
    fetched_by_other_process: int
    fetch_lock_timeouts: int
    decoded_memory: TierStats
    decoded_disk: TierStats
    decodes: int
    decode_waits: int
    disk_eviction: EvictionStatus | None
    decoded_disk_eviction: EvictionStatus | None
    unreadable_manifests: int
    private_ledgers: int
    decode_lock_timeouts: int
    dir_lock_timeouts: int
    inherited_locks_closed: int
    thumbnails: int
    raw_writes_dropped: int
    raw_writes_pending: int
    origin_requests: int

Scope = Literal["all", "frames", "overlays"]
StrPath = str | PathLike[str]

@final
class Frame:
    """One video frame; ``image`` is an H×W×3 ``uint8`` RGB array owned by this frame (or,
    loaded with ``writeable=False``, a read-only view of the cache's pixels)."""

    sequence: int
    chunk_id: int
    timestamp: float
    image: npt.NDArray[np.uint8]
    perceptual_hash: str
    def __init__(
        self,
        sequence: int,
        chunk_id: int,
        timestamp: float,
        image: npt.NDArray[np.uint8],
        perceptual_hash: str = "",
    ) -> None: ...

@final
class FrameIterator(Iterator[Frame], AsyncIterator[Frame]):
    def __iter__(self) -> FrameIterator: ...
    def __next__(self) -> Frame: ...
    def __aiter__(self) -> FrameIterator: ...
    def __anext__(self) -> Awaitable[Frame]: ...

@final
class FrameCache:
    """Tiered read-through cache: memory, a machine-wide disk cache, blob storage.

    Keywords default to the environment (as the ``framecache`` command reads it)."""

    def __init__(
        self,
        *,
        backend: Literal["fs", "s3"] | None = None,
        root: StrPath | None = None,
        bucket: str | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        anonymous: bool | None = None,
        addressing: Literal["auto", "path", "virtual"] | None = None,
        cache_dir: StrPath | None = None,
        memory_capacity: int | None = None,
        disk_capacity: int | None = None,
        disk: bool | None = None,
        decoded_memory_capacity: int | None = None,
        decoded_disk_capacity: int | None = None,
        concurrency: int | None = None,
        origin_timeout: float | None = None,
        origin_io_timeout: float | None = None,
        retries: int | None = None,
        max_frame_pixels: int | None = None,
        max_object_size: int | None = None,
        lock_wait: float | None = None,
        min_free: int | str | None = None,
        revalidate_after: float | None = None,
        share_group: str | int | None = None,
        allow_network_fs: bool | None = None,
    ) -> None: ...
    @property
    def origin(self) -> str: ...
    def stats(self) -> Stats: ...
    def flush_raw_writes(self, timeout: float = 60.0) -> bool: ...
    def exists(self, timeline: str) -> bool: ...
    def exists_async(self, timeline: str) -> Awaitable[bool]: ...
    def status(self, timeline: str) -> dict[str, Any]: ...
    def status_async(self, timeline: str) -> Awaitable[dict[str, Any]]: ...
    def list_frames(self, timeline: str) -> list[FrameEntry]: ...
    def list_frames_async(self, timeline: str) -> Awaitable[list[FrameEntry]]: ...
    # ``writeable=False``: each ``image`` is a read-only view of the cache's decoded pixels
    # (``image.flags.writeable`` is False; assigning raises ValueError), never copied: the
    # cheapest for frames already in the cache. By default each ``image`` is writable and
    # private to its frame: writes never reach the cache or other loads. ``scale`` 2, 4 or 8
    # decodes at 1/scale of the size (rounded up) through the DCT, cached apart.
    # ``seqs``: any iterable of ints (a ``range`` is the common case), read in its order,
    # duplicates repeated; None is the whole timeline. A seq the timeline lacks raises
    # ``MissingFrameError`` naming it.
    def load_frames(
        self, timeline: str, seqs: Iterable[int] | None = None, *, writeable: bool = True, scale: int = 1
    ) -> list[Frame]: ...
    def load_frames_async(
        self, timeline: str, seqs: Iterable[int] | None = None, *, writeable: bool = True, scale: int = 1
    ) -> Awaitable[list[Frame]]: ...
    def load_frame(self, timeline: str, seq: int, *, writeable: bool = True, scale: int = 1) -> Frame | None: ...
    def load_frame_async(
        self, timeline: str, seq: int, *, writeable: bool = True, scale: int = 1
    ) -> Awaitable[Frame | None]: ...
    def iter_frames(
        self, timeline: str, seqs: Iterable[int] | None = None, *, writeable: bool = True, scale: int = 1
    ) -> FrameIterator: ...
    def frame_jpeg(self, timeline: str, seq: int) -> bytes | None: ...
    def frame_jpeg_async(self, timeline: str, seq: int) -> Awaitable[bytes | None]: ...
    def load_jpegs(self, timeline: str, seqs: Iterable[int] | None = None) -> list[FrameJpeg]: ...
    def load_jpegs_async(self, timeline: str, seqs: Iterable[int] | None = None) -> Awaitable[list[FrameJpeg]]: ...
    def load_frames_b64(self, timeline: str) -> list[FrameB64]: ...
    def load_frames_b64_async(self, timeline: str) -> Awaitable[list[FrameB64]]: ...
    def cache_frames(
        self, timeline: str, frames: Iterable[FrameLike], quality: int = 85, *, replace: bool = False
    ) -> int: ...
    def cache_frames_async(
        self, timeline: str, frames: Iterable[FrameLike], quality: int = 85, *, replace: bool = False
    ) -> Awaitable[int]: ...
    def save_overlays(
        self, timeline: str, job: str, stage: str, seq: int, overlays: dict[str, bytes]
    ) -> int: ...
    def save_overlays_async(
        self, timeline: str, job: str, stage: str, seq: int, overlays: dict[str, bytes]
    ) -> Awaitable[int]: ...
    def save_overlays_b64(
        self, timeline: str, job: str, stage: str, seq: int, overlays: dict[str, str]
    ) -> int: ...
    def save_overlays_b64_async(
        self, timeline: str, job: str, stage: str, seq: int, overlays: dict[str, str]
    ) -> Awaitable[int]: ...
    def load_overlays(self, timeline: str, job: str, stage: str, seq: int) -> dict[str, bytes] | None: ...
    def load_overlays_async(
        self, timeline: str, job: str, stage: str, seq: int
    ) -> Awaitable[dict[str, bytes] | None]: ...
    def load_overlays_b64(self, timeline: str, job: str, stage: str, seq: int) -> dict[str, str] | None: ...
    def load_overlays_b64_async(
        self, timeline: str, job: str, stage: str, seq: int
    ) -> Awaitable[dict[str, str] | None]: ...
    def list_overlay_frames(self, timeline: str, job: str, stage: str) -> list[int]: ...
    def list_overlay_frames_async(self, timeline: str, job: str, stage: str) -> Awaitable[list[int]]: ...
    def clear(self, timeline: str, scope: Scope = "all") -> None: ...
    def clear_async(self, timeline: str, scope: Scope = "all") -> Awaitable[None]: ...
    def clear_local(self, timeline: str, scope: Scope = "all") -> int: ...
    def clear_local_async(self, timeline: str, scope: Scope = "all") -> Awaitable[int]: ...
    def cache_jpegs(self, timeline: str, frames: Iterable[EncodedFrame | Any], *, replace: bool = False) -> int: ...
    def cache_jpegs_async(
        self, timeline: str, frames: Iterable[EncodedFrame | Any], *, replace: bool = False
    ) -> Awaitable[int]: ...
    def timelines(self) -> list[str]: ...
    def timelines_async(self) -> Awaitable[list[str]]: ...

def frames_to_b64(frames: Iterable[FrameLike], quality: int = 75) -> list[FrameB64]: ...
def synthetic_frame(seq: int, width: int = 1280, height: int = 720) -> Frame: ...

def _flush_raw_writes_at_exit(timeout: float) -> bool: ...

# The core's log events in `logging` (framecache/_logging.py drives these).
def _set_log_threshold(level: int) -> None: ...
def _log_threshold() -> int: ...
def _log_counters() -> dict[str, int]: ...
def _flush_logs() -> None: ...
def _logs_after_fork() -> None: ...
def _close_logs() -> None: ...
