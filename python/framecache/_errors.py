"""framecache's exceptions.

Every exception framecache raises derives from :class:`FrameCacheError`; each one also
derives from the builtin a caller would catch for it (``ValueError`` for bad input,
``OSError`` for storage failures).
"""

from __future__ import annotations


class FrameCacheError(Exception):
    """Base class of every framecache error.

    ``retryable`` is True when repeating the call may succeed (a timeout, a throttled or
    unavailable origin).
    """

    retryable: bool = False


class InvalidInputError(FrameCacheError, ValueError):
    """An id, name, quality, image or configuration value broke a rule; nothing was read or
    written. ``what`` names the kind of value and ``value`` is the offending one."""

    what: str = ""
    value: str = ""


class StorageError(FrameCacheError, OSError):
    """Reading or writing storage failed. ``filename`` is the local path, when there is one."""


class OriginError(StorageError):
    """Blob storage (S3, or the fs backend's directory) failed for ``key`` (an object key or
    prefix). Never raised for a mere miss."""

    key: str = ""


class IncompleteTimelineError(FrameCacheError):
    """The timeline's writer has not finished (or died): its manifest lists ``expected``
    frames and ``present`` of them exist."""

    timeline: str = ""
    expected: int = 0
    present: int = 0


class MissingFrameError(FrameCacheError, LookupError):
    """A read of some frames (``seqs=``, a dataset item) asked for frame ``seq``, which
    ``timeline`` does not have. The single-frame lookups (``load_frame``, ``frame_jpeg``)
    return None instead."""

    timeline: str = ""
    seq: int = -1

    @classmethod
    def of(cls, timeline: str, seq: int) -> MissingFrameError:
        error = cls(f"timeline {timeline!r} has no frame {seq}")
        error.timeline = timeline
        error.seq = seq
        return error


class SupersededError(FrameCacheError):
    """Another writer was re-caching ``timeline`` at the same time, and this write did not
    finish it: either a writer that began later had not finished (its manifest generation is
    ``other``, and this write removed none of its frames), or writers kept replacing frames
    while this one finished (``other`` is None; the timeline is left incomplete). Writing
    again replaces the timeline."""

    timeline: str = ""
    other: str | None = None


class CodecError(FrameCacheError):
    """Stored bytes did not decode (``key``), or a frame did not encode (``seq``)."""


class FrameTooLargeError(CodecError):
    """The JPEG of ``key`` claims ``width`` × ``height`` pixels, more than ``limit`` (the
    ``max_frame_pixels`` setting; by default Pillow's decompression-bomb limit,
    178,956,970). Refused from its header before anything was allocated; what Pillow
    raises ``DecompressionBombError`` for."""

    key: str = ""
    width: int = 0
    height: int = 0
    limit: int = 0


class ObjectTooLargeError(FrameCacheError):
    """The origin object ``key`` is ``size`` bytes, more than ``limit`` (the
    ``max_object_size`` setting, 64 MiB by default). Refused from the size its listing
    reported, before the download; kept in no tier."""

    key: str = ""
    size: int = 0
    limit: int = 0


__all__ = [
    "CodecError",
    "FrameCacheError",
    "FrameTooLargeError",
    "IncompleteTimelineError",
    "InvalidInputError",
    "ObjectTooLargeError",
    "MissingFrameError",
    "OriginError",
    "StorageError",
    "SupersededError",
]
