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


class SupersededError(FrameCacheError):
    """Another writer started re-caching ``timeline`` after this write began and had not
    finished when this one did: its version (generation ``other``) wins, and this write
    removed none of its frames. Writing again replaces it."""

    timeline: str = ""
    other: str = ""


class CodecError(FrameCacheError):
    """Stored bytes did not decode (``key``), or a frame did not encode (``seq``)."""


__all__ = [
    "CodecError",
    "FrameCacheError",
    "IncompleteTimelineError",
    "InvalidInputError",
    "OriginError",
    "StorageError",
    "SupersededError",
]
