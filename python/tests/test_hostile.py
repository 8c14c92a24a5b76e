"""Damaged and hostile objects: a clear exception, the process lives, nothing bad is kept.
Limits (``max_frame_pixels``, ``max_object_size``) as keywords and environment variables."""

from __future__ import annotations

import math

import pytest
from conftest import SeedFrame, frame_key, pillow_jpeg, seed_frames, synthetic_image

from framecache import (
    CodecError,
    FrameCacheError,
    FrameTooLargeError,
    InvalidInputError,
    ObjectTooLargeError,
)

PILLOW_BOMB_LIMIT = 178_956_970


def bomb() -> bytes:
    """A few hundred bytes whose frame header claims 65500x65500 (a bomb to Pillow)."""
    jpeg = bytearray(pillow_jpeg(synthetic_image(1, 16, 16), quality=50))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = (65500).to_bytes(2, "big") * 2
    return bytes(jpeg[: jpeg.index(b"\xff\xda") + 32])


def store(backend, timeline: str, bad: bytes) -> None:
    """Frames 0 and 2 whole, frame 1 `bad`, as another writer left them."""
    for seq in (0, 2):
        backend.raw.put(frame_key(timeline, seq), pillow_jpeg(synthetic_image(seq, 240, 320)))
    backend.raw.put(frame_key(timeline, 1), bad)


def test_hierarchy():
    assert issubclass(FrameTooLargeError, CodecError)
    assert issubclass(FrameTooLargeError, FrameCacheError)
    assert issubclass(ObjectTooLargeError, FrameCacheError)
    assert not issubclass(ObjectTooLargeError, (ValueError, OSError))


def test_a_decompression_bomb_raises_and_the_process_lives(dropin, backend, timeline):
    store(backend, timeline, bomb())
    fc = backend.cache("direct")
    for load in (lambda: dropin.load_cached_frames(timeline), lambda: fc.load_frames(timeline)):
        with pytest.raises(FrameTooLargeError) as caught:
            load()
        err = caught.value
        assert (err.key, err.width, err.height) == (frame_key(timeline, 1), 65500, 65500)
        assert err.limit == PILLOW_BOMB_LIMIT
        assert "65500x65500" in str(err) and "max_frame_pixels" in str(err)
    # Still alive, and the other frames load.
    assert fc.load_frame(timeline, 2).image.shape == (240, 320, 3)


def test_a_truncated_frame_raises_every_time_and_is_kept_nowhere(dropin, backend, timeline):
    whole = pillow_jpeg(synthetic_image(1, 240, 320))
    store(backend, timeline, whole[: len(whole) // 2])
    fc = backend.cache("direct")
    for _ in range(2):
        with pytest.raises(CodecError) as caught:
            dropin.load_cached_frames(timeline)
        assert caught.value.key == frame_key(timeline, 1)
        with pytest.raises(CodecError):
            fc.load_frames(timeline)
        with pytest.raises(CodecError):
            fc.load_frame(timeline, 1)
        with pytest.raises(CodecError):
            list(fc.iter_frames(timeline))
        with pytest.raises(CodecError):
            fc.load_frame(timeline, 1, scale=4)
    # Another process on the machine (same disk cache) finds nothing kept either.
    again = backend.cache("direct")
    with pytest.raises(CodecError):
        again.load_frame(timeline, 1)
    # Once the object is repaired, the frame loads whole: nothing bad was kept.
    backend.raw.put(frame_key(timeline, 1), whole)
    assert fc.load_frame(timeline, 1).image.shape == (240, 320, 3)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_timestamp_is_refused_naming_the_frame(dropin, backend, timeline, bad):
    frames = seed_frames(3)
    frames[2] = SeedFrame(2, 0, bad, synthetic_image(2))
    with pytest.raises(ValueError, match="timestamp") as caught:
        dropin.cache_frames(timeline, frames)
    assert isinstance(caught.value, InvalidInputError)
    assert "seq 2" in caught.value.value
    assert not backend.cache("check").exists(timeline)


def test_max_frame_pixels_keyword(backend, timeline):
    backend.cache("writer").cache_frames(timeline, seed_frames(2))  # 64x48 frames
    strict = backend.cache("strict", max_frame_pixels=64 * 48 - 1)
    with pytest.raises(FrameTooLargeError) as caught:
        strict.load_frames(timeline)
    assert (caught.value.width, caught.value.height) == (64, 48)
    assert caught.value.limit == 64 * 48 - 1
    assert len(backend.cache("exact", max_frame_pixels=64 * 48).load_frames(timeline)) == 2
    with pytest.raises(InvalidInputError, match="max_frame_pixels"):
        backend.cache("zero", max_frame_pixels=0)


def test_max_frame_pixels_environment(backend, timeline, monkeypatch):
    backend.cache("writer").cache_frames(timeline, seed_frames(1))
    monkeypatch.setenv("FRAMECACHE_MAX_FRAME_PIXELS", "32x48")
    with pytest.raises(FrameTooLargeError):
        backend.cache("env").load_frames(timeline)
    monkeypatch.setenv("FRAMECACHE_MAX_FRAME_PIXELS", "lots")
    with pytest.raises(InvalidInputError, match="FRAMECACHE_MAX_FRAME_PIXELS"):
        backend.cache("bad-env")


def test_max_object_size_keyword_and_environment(backend, timeline, monkeypatch):
    big = pillow_jpeg(synthetic_image(1, 480, 640), quality=95)
    store(backend, timeline, big)
    fc = backend.cache("small", max_object_size=len(big) - 1)
    with pytest.raises(ObjectTooLargeError) as caught:
        fc.load_frame(timeline, 1)
    err = caught.value
    assert (err.key, err.size, err.limit) == (frame_key(timeline, 1), len(big), len(big) - 1)
    assert fc.load_frame(timeline, 0) is not None
    monkeypatch.setenv("FRAMECACHE_MAX_OBJECT_SIZE", "1KiB")
    with pytest.raises(ObjectTooLargeError):
        backend.cache("env").load_frame(timeline, 0)


def test_an_unreadable_manifest_is_counted(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(2))
    backend.raw.put(f"cache/timelines/{timeline}/frames/manifest.json", b"{not json")
    frames = fc.load_frames(timeline)
    assert [f.timestamp for f in frames] == [0.0, 0.0]
    assert fc.stats()["unreadable_manifests"] == 1
