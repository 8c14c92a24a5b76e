"""Each exception class: what raises it, what it derives from, what it names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SeedFrame, frame_key, seed_frames, synthetic_image

import framecache
from framecache import (
    CodecError,
    FrameCache,
    FrameCacheError,
    IncompleteTimelineError,
    InvalidInputError,
    OriginError,
    StorageError,
    SupersededError,
    frames,
)


def test_hierarchy():
    assert issubclass(InvalidInputError, FrameCacheError) and issubclass(InvalidInputError, ValueError)
    assert issubclass(OriginError, StorageError) and issubclass(StorageError, OSError)
    assert issubclass(OriginError, FrameCacheError)
    assert issubclass(IncompleteTimelineError, FrameCacheError)
    assert not issubclass(IncompleteTimelineError, (ValueError, OSError))
    assert issubclass(CodecError, FrameCacheError)
    assert issubclass(SupersededError, FrameCacheError)
    assert not issubclass(SupersededError, (ValueError, OSError))


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "x" * 300])
def test_invalid_timeline_id_names_the_value(dropin, bad):
    with pytest.raises(InvalidInputError) as caught:
        dropin.load_cached_frames(bad)
    assert caught.value.what == "timeline id"
    assert caught.value.value == bad
    assert repr(bad)[1:-1][:40] in str(caught.value)


@pytest.mark.parametrize("quality", [0, 101, -5, 1000])
def test_invalid_quality(dropin, timeline, quality):
    with pytest.raises(ValueError, match=f"quality \"{quality}\"") as caught:
        dropin.cache_frames(timeline, seed_frames(1), quality=quality)
    assert isinstance(caught.value, InvalidInputError)
    with pytest.raises(InvalidInputError):
        dropin.frames_to_b64(seed_frames(1), quality=quality)


@pytest.mark.parametrize(
    "image, shown",
    [
        (np.zeros((8, 8, 4), dtype=np.uint8), "[8, 8, 4]"),
        (np.zeros((8, 8), dtype=np.uint8), "[8, 8]"),
        (np.zeros((8, 8, 3), dtype=np.float32), "float32"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "[0, 8, 3]"),
        ([[1, 2, 3]], "list"),
    ],
)
def test_invalid_image(image, shown):
    with pytest.raises(InvalidInputError, match="image of frame") as caught:
        frames.frames_to_b64([SeedFrame(4, 0, 0.0, image)])
    assert shown in str(caught.value) and "4" in caught.value.value


def test_frame_without_attributes():
    with pytest.raises(InvalidInputError, match="sequence"):
        frames.frames_to_b64([{"image": synthetic_image(0)}])


def test_duplicate_sequence_numbers(dropin, timeline):
    twice = [SeedFrame(1, 0, 0.0, synthetic_image(1)), SeedFrame(1, 0, 0.0, synthetic_image(2))]
    with pytest.raises(InvalidInputError, match="appears more than once"):
        dropin.cache_frames(timeline, twice)


def test_overlay_that_is_not_png_base64(dropin, timeline):
    with pytest.raises(InvalidInputError, match="edge"):
        dropin.save_overlays(timeline, "job", "stage", 0, {"edge": "not base64!"})


def fs_in(tmp_path) -> dict:
    """An fs origin and a cache directory of this test's own."""
    return dict(backend="fs", root=str(tmp_path / "origin"), cache_dir=str(tmp_path / "cache"))


def test_bad_configuration(tmp_path):
    with pytest.raises(InvalidInputError, match="backend"):
        FrameCache(backend="ftp")
    # The in-memory origin is a test hook of the Rust crate, absent from the wheel.
    with pytest.raises(InvalidInputError, match="backend"):
        FrameCache(backend="memory")
    with pytest.raises(InvalidInputError, match="origin_timeout"):
        FrameCache(**fs_in(tmp_path), origin_timeout=-1.0)
    with pytest.raises(InvalidInputError, match="lock_wait"):
        FrameCache(**fs_in(tmp_path), lock_wait=-1.0)
    FrameCache(**fs_in(tmp_path), lock_wait=0.0)  # 0: never wait for another process


def test_bad_lock_wait_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMECACHE_LOCK_WAIT", "soon")
    with pytest.raises(InvalidInputError, match="FRAMECACHE_LOCK_WAIT"):
        FrameCache(**fs_in(tmp_path))


def test_origin_failure_names_the_key(tmp_path):
    fc = FrameCache(
        backend="s3",
        endpoint="http://127.0.0.1:1",
        access_key_id="GKx",
        secret_access_key="secret",
        cache_dir=str(tmp_path / "disk"),
        retries=0,
    )
    with pytest.raises(OSError) as caught:
        fc.load_frames("down-timeline")
    err = caught.value
    assert isinstance(err, OriginError)
    assert "cache/timelines/down-timeline/frames/" in err.key
    assert err.key in str(err)
    assert "secret" not in str(err)


def test_local_storage_failure(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError) as caught:
        FrameCache(backend="fs", root=str(blocker / "root"), disk=False)
    assert isinstance(caught.value, OSError) and str(blocker) in str(caught.value)


def test_incomplete_timeline(dropin, backend, timeline):
    dropin.cache_frames(timeline, seed_frames(3))
    # As if a rebuild had died: its manifest incomplete, one of its frames missing.
    # (Under a complete manifest, a missing frame is simply not there.)
    backend.raw.delete(frame_key(timeline, 1))
    key = f"cache/timelines/{timeline}/frames/manifest.json"
    head = json.loads(backend.raw.get(key))
    head["complete"] = False
    backend.raw.put(key, json.dumps(head).encode())
    with pytest.raises(IncompleteTimelineError) as caught:
        dropin.load_cached_frames(timeline)
    err = caught.value
    assert (err.timeline, err.expected, err.present) == (timeline, 3, 2)
    assert timeline in str(err)


def test_undecodable_frame(dropin, backend, timeline):
    backend.raw.put(frame_key(timeline, 0), b"\xff\xd8\xff but not really a JPEG")
    with pytest.raises(CodecError) as caught:
        dropin.load_cached_frames(timeline)
    assert caught.value.key == frame_key(timeline, 0)
    # The undecoded path still serves the bytes.
    assert len(dropin.load_cached_frames_b64(timeline)) == 1


def test_errors_are_framecache_errors():
    assert framecache.FrameCacheError is FrameCacheError


def test_min_free_takes_bytes_a_percentage_or_auto(tmp_path, monkeypatch):
    for value in (0, 1 << 20, "5%", "2GiB", "auto"):
        FrameCache(backend="fs", root=str(tmp_path / "origin"), cache_dir=str(tmp_path / "any"), min_free=value)
    # Keeping the whole filesystem free leaves the disk tiers nothing, for free-space reasons.
    fc = FrameCache(backend="fs", root=str(tmp_path / "origin"), cache_dir=str(tmp_path / "all"), min_free="100%")
    for tier in ("disk_eviction", "decoded_disk_eviction"):
        status = fc.stats()[tier]
        assert status["fs_size"] > 0 and status["min_free"] == status["fs_size"], status
        assert status["limited_by"] == "free_space" and status["hard_limit"] == 0, status
    with pytest.raises(InvalidInputError, match="min_free"):
        FrameCache(**fs_in(tmp_path), min_free="lots")
    with pytest.raises(InvalidInputError, match="min_free"):
        FrameCache(**fs_in(tmp_path), min_free="150%")
    monkeypatch.setenv("FRAMECACHE_MIN_FREE", "plenty")
    with pytest.raises(InvalidInputError, match="FRAMECACHE_MIN_FREE"):
        FrameCache(**fs_in(tmp_path))
