"""framecache: a tiered read-through cache (memory, a disk cache shared by the machine's
processes, blob storage) for video-frame JPEGs and debug-overlay PNGs.

``from framecache import frames`` is a drop-in for the Python frame cache module (same
functions, same object layout in the same bucket). :class:`FrameCache` is the full API.
"""

from __future__ import annotations

import atexit as _atexit

# Every load returns numpy arrays: numpy is imported with the package rather than by the
# first load (its import, about 0.1 s, would otherwise be paid inside that load's call).
import numpy as _numpy  # noqa: F401

from framecache._errors import (
    CodecError,
    FrameCacheError,
    FrameTooLargeError,
    IncompleteTimelineError,
    InvalidInputError,
    ObjectTooLargeError,
    MissingFrameError,
    OriginError,
    StorageError,
    SupersededError,
)
from framecache import _logging, _native
from framecache._native import (
    JPEG_ENCODER,
    Frame,
    FrameCache,
    FrameIterator,
    __version__,
    frames_to_b64,
    synthetic_frame,
)

# The core's log events go to `logging` (logger "framecache"); see framecache/_logging.py.
_logging.install()

# Raw frames are written behind loads by a native thread that never keeps the interpreter
# from exiting; this waits, bounded, for the ones still queued so that they are kept.
_atexit.register(_native._flush_raw_writes_at_exit, 10.0)

__all__ = [
    "JPEG_ENCODER",
    "CodecError",
    "Frame",
    "FrameCache",
    "FrameCacheError",
    "FrameIterator",
    "FrameTooLargeError",
    "IncompleteTimelineError",
    "InvalidInputError",
    "ObjectTooLargeError",
    "MissingFrameError",
    "OriginError",
    "StorageError",
    "SupersededError",
    "__version__",
    "frames_to_b64",
    "synthetic_frame",
]
