"""``framecache.FrameCache``: the timeline API, configuration, frames as numpy arrays."""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import pickle

import numpy as np
import pytest
from conftest import SeedFrame, close, frame_key, pillow_jpeg, png_bytes, seed_frames, synthetic_image

import framecache
from framecache import FrameCache


def test_status_listing_and_timelines(backend, timeline):
    fc = backend.cache()
    assert fc.status(timeline) == {"state": "missing"}
    assert fc.exists(timeline) is False
    assert fc.list_frames(timeline) == []

    fc.cache_frames(timeline, seed_frames(3))
    status = fc.status(timeline)
    assert status["state"] == "complete" and status["frames"] == 3
    assert isinstance(status["generation"], str) and status["generation"]
    listing = fc.list_frames(timeline)
    assert [e["seq"] for e in listing] == [0, 1, 2]
    assert listing[1]["key"] == frame_key(timeline, 1)
    assert listing[1]["size"] == len(backend.raw.get(frame_key(timeline, 1)))
    assert listing[1]["meta"]["chunk_id"] == 100 and listing[1]["meta"]["timestamp"] == 0.04
    assert timeline in fc.timelines()

    backend.raw.put(frame_key(timeline + "-raw", 0), fc.frame_jpeg(timeline, 0))
    assert fc.status(timeline + "-raw") == {"state": "unmanaged", "frames": 1}
    assert fc.list_frames(timeline + "-raw")[0]["meta"] is None


def test_load_one_frame_iterate_and_jpegs(backend, timeline):
    fc = backend.cache()
    given = seed_frames(5)
    assert fc.cache_frames(timeline, given, quality=90) == 5

    one = fc.load_frame(timeline, 3)
    assert (one.sequence, one.chunk_id, one.timestamp, one.perceptual_hash) == (3, 100, 0.12, "ph0003")
    assert close(one.image, given[3].image)
    assert fc.load_frame(timeline, 99) is None

    iterated = fc.iter_frames(timeline)
    assert iter(iterated) is iterated
    seqs = [f.sequence for f in iterated]
    assert seqs == [0, 1, 2, 3, 4]
    with pytest.raises(StopIteration):
        next(iterated)

    jpeg = fc.frame_jpeg(timeline, 2)
    assert isinstance(jpeg, bytes) and jpeg == backend.raw.get(frame_key(timeline, 2))
    assert fc.frame_jpeg(timeline, 42) is None

    jpegs = fc.load_jpegs(timeline)
    assert [(j["seq"], j["timestamp"]) for j in jpegs] == [(f.sequence, f.timestamp) for f in given]
    assert jpegs[2]["jpeg"] == jpeg
    assert {j["source"] for j in jpegs} <= {"memory", "disk", "origin"}

    b64 = fc.load_frames_b64(timeline)
    assert base64.b64decode(b64[2]["jpeg_b64"]) == jpeg


def test_abandoned_iterator_stops_cleanly(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(20))
    it = fc.iter_frames(timeline)
    assert next(it).sequence == 0
    del it
    assert len(fc.load_frames(timeline)) == 20


def test_overlays_as_bytes_and_b64(backend, timeline):
    fc = backend.cache()
    pngs = {"edges": png_bytes(1), "lines": png_bytes(2)}
    assert fc.save_overlays(timeline, "job", "stage", 4, pngs) == 2
    assert fc.load_overlays(timeline, "job", "stage", 4) == pngs
    assert fc.load_overlays_b64(timeline, "job", "stage", 4) == {
        k: base64.b64encode(v).decode() for k, v in pngs.items()
    }
    assert fc.save_overlays_b64(timeline, "job", "stage", 5, {"x": base64.b64encode(pngs["edges"]).decode()}) == 1
    assert fc.list_overlay_frames(timeline, "job", "stage") == [4, 5]
    assert fc.load_overlays(timeline, "job", "stage", 6) is None


def test_clear_scopes_and_clear_local(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(2))
    fc.save_overlays(timeline, "j", "s", 0, {"o": png_bytes(0)})
    fc.load_frames(timeline)

    assert fc.clear_local(timeline) >= 2  # disk entries of this machine only
    assert fc.status(timeline)["frames"] == 2
    fc.clear(timeline, "overlays")
    assert fc.list_overlay_frames(timeline, "j", "s") == [] and fc.exists(timeline)
    fc.clear(timeline)
    assert fc.exists(timeline) is False and fc.load_frames(timeline) == []


def test_stats_count_tiers(backend, timeline):
    fc = backend.cache("stats")
    fc.cache_frames(timeline, seed_frames(4))
    fresh = backend.cache("stats-fresh")
    fresh.load_frames(timeline)
    stats = fresh.stats()
    assert set(stats) >= {"memory", "disk", "origin", "coalesced", "skipped_names", "offline_loads"}
    assert stats["origin"]["hits"] >= 4
    fresh.load_frames(timeline)
    # The second load finds the decoded frames in memory: no JPEG read, no decode.
    later = fresh.stats()
    assert later["decoded_memory"]["hits"] == stats["decoded_memory"]["hits"] + 4
    assert later["decodes"] == stats["decodes"] == 4
    assert later["memory"]["hits"] == stats["memory"]["hits"]


def test_arrays_are_writable_and_private(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(2))
    first = fc.load_frames(timeline)
    second = fc.load_frames(timeline)  # served by the memory tier
    kept = second[0].image.copy()

    image = first[0].image
    assert image.flags.writeable and image.flags.c_contiguous
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
    image[...] = 0
    first[0].image[0, 0] = (1, 2, 3)

    assert np.array_equal(second[0].image, kept)
    assert np.array_equal(fc.load_frames(timeline)[0].image, kept)
    assert np.array_equal(fc.load_frame(timeline, 0).image, kept)


def test_decoded_frames_are_kept(backend, timeline):
    fc = backend.cache("decoded")
    fc.cache_frames(timeline, seed_frames(3))
    first = fc.load_frames(timeline)
    fc.load_frames(timeline)
    stats = fc.stats()
    assert stats["decodes"] == 3 and stats["decoded_memory"]["hits"] == 3, stats
    # The raw frames are written behind the load.
    assert fc.flush_raw_writes()
    assert fc.stats()["decoded_disk"]["writes"] == 3 and fc.stats()["raw_writes_pending"] == 0
    # Another process on the machine (a new handle on the same disk cache) maps the raw frames.
    other = backend.cache("decoded")
    again = other.load_frames(timeline)
    stats = other.stats()
    assert stats["decodes"] == 0 and stats["decoded_disk"]["hits"] == 3, stats
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again, strict=True))

    off = backend.cache("off", decoded_memory_capacity=0, decoded_disk_capacity=0)
    off.load_frames(timeline)
    off.load_frames(timeline)
    assert off.stats()["decodes"] == 6
    assert not os.path.exists(os.path.join(backend.tmp, "disk-off", "decoded"))


def data_pointer(image: np.ndarray) -> int:
    return image.__array_interface__["data"][0]


# With a disk cache, decoded frames are raw entries every process maps; without, heap
# buffers in this process's decoded-frame memory tier. Read-only arrays view either in place.
DECODED_STORES = pytest.mark.parametrize("disk", [True, False], ids=["mapped", "heap"])


@DECODED_STORES
def test_read_only_arrays_are_views_of_the_cache(backend, timeline, disk):
    fc = backend.cache(disk=disk)
    fc.cache_frames(timeline, seed_frames(3))
    cold = fc.load_frames(timeline, writeable=False)
    hot = fc.load_frames(timeline, writeable=False)
    one = fc.load_frame(timeline, 1, writeable=False)
    iterated = list(fc.iter_frames(timeline, writeable=False))

    async def twins():
        return await fc.load_frames_async(timeline, writeable=False), await fc.load_frame_async(
            timeline, 2, writeable=False
        )

    from_async, one_async = asyncio.run(twins())
    expected = [f.image.copy() for f in fc.load_frames(timeline)]

    for loaded in (cold, hot, iterated, from_async):
        assert [f.sequence for f in loaded] == [0, 1, 2]
        for frame, want, first in zip(loaded, expected, cold, strict=True):
            image = frame.image
            assert not image.flags.writeable
            assert image.dtype == np.uint8 and image.shape == (48, 64, 3) and image.flags.c_contiguous
            assert np.array_equal(image, want)
            # No copy: every load hands out the same cached pixels.
            assert data_pointer(image) == data_pointer(first.image)
            assert np.shares_memory(image, first.image)
    assert data_pointer(one.image) == data_pointer(cold[1].image) and not one.image.flags.writeable
    assert data_pointer(one_async.image) == data_pointer(cold[2].image)

    image = hot[0].image
    with pytest.raises(ValueError):
        image[0, 0] = (1, 2, 3)
    with pytest.raises(ValueError):
        image[...] = 0
    with pytest.raises(ValueError):
        image.setflags(write=True)  # the memory belongs to the cache
    view = image[:, :, 0]
    with pytest.raises(ValueError):
        view[0, 0] = 9
    assert np.array_equal(image, expected[0])

    # The arrays keep their pixels alive when the cache drops its copies and goes away.
    fc.clear_local(timeline)
    del fc
    assert all(np.array_equal(f.image, want) for f, want in zip(hot, expected, strict=True))


@DECODED_STORES
def test_writes_to_writable_arrays_never_reach_the_cache(backend, timeline, disk):
    fc = backend.cache(disk=disk)
    fc.cache_frames(timeline, seed_frames(2))
    shared = fc.load_frames(timeline, writeable=False)
    kept = [f.image.copy() for f in shared]
    writable = fc.load_frames(timeline)
    assert all(f.image.flags.writeable for f in writable)
    assert data_pointer(writable[0].image) != data_pointer(shared[0].image)
    writable[0].image[...] = 0
    writable[1].image[0, 0] = (1, 2, 3)
    frame = fc.load_frame(timeline, 1)
    frame.image[...] = 255

    assert all(np.array_equal(f.image, want) for f, want in zip(shared, kept, strict=True))
    for later in (fc.load_frames(timeline), fc.load_frames(timeline, writeable=False)):
        assert all(np.array_equal(f.image, want) for f, want in zip(later, kept, strict=True))
    assert np.array_equal(fc.load_frame(timeline, 1, writeable=False).image, kept[1])


def test_decoded_pixels_are_not_copied_into_numpy(tmp_path):
    """The array is a view over the decoder's buffer (owned by a Rust container object),
    not a numpy-allocated copy."""
    frame = framecache.FrameCache(backend="fs", root=str(tmp_path / "origin"), disk=False)
    frame.cache_frames("t", [SeedFrame(0, 0, 0.0, synthetic_image(0))])
    image = frame.load_frames("t")[0].image
    assert not image.flags.owndata
    assert image.base is not None and not isinstance(image.base, np.ndarray)


def test_frame_object():
    image = synthetic_image(1)
    frame = framecache.Frame(7, 2, 1.5, image, "abc")
    assert (frame.sequence, frame.chunk_id, frame.timestamp, frame.perceptual_hash) == (7, 2, 1.5, "abc")
    assert frame.image is image
    assert framecache.Frame(1, 0, 0.0, image).perceptual_hash == ""
    frame.timestamp = 2.0
    clone = pickle.loads(pickle.dumps(frame))
    assert (clone.sequence, clone.timestamp) == (7, 2.0)
    assert np.array_equal(clone.image, image)
    assert "sequence=7" in repr(frame)


def test_configuration_keywords(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMECACHE_BACKEND", "fs")
    monkeypatch.setenv("FRAMECACHE_ROOT", str(tmp_path / "env-root"))
    monkeypatch.setenv("FRAMECACHE_CACHE_DIR", str(tmp_path / "env-disk"))
    from_env = FrameCache()
    assert str(tmp_path / "env-root") in from_env.origin
    assert str(tmp_path / "env-disk") in from_env.origin
    given = FrameCache(root=str(tmp_path / "kw-root"), disk=False)
    assert str(tmp_path / "kw-root") in given.origin and "no disk cache" in given.origin
    s3 = FrameCache(backend="s3", bucket="b", endpoint="http://127.0.0.1:9", secret_access_key="hidden")
    assert "s3://b at http://127.0.0.1:9" in repr(s3) and "hidden" not in repr(s3)


def test_signatures_and_docs_are_introspectable():
    params = inspect.signature(FrameCache.cache_frames).parameters
    assert list(params) == ["self", "timeline", "frames", "quality", "replace"]
    assert params["quality"].default == 85
    assert params["replace"].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["replace"].default is False
    jpegs = inspect.signature(FrameCache.cache_jpegs_async).parameters
    assert jpegs["replace"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(framecache.frames_to_b64).parameters["quality"].default == 75
    assert "backend" in inspect.signature(FrameCache).parameters
    assert inspect.signature(framecache.Frame).parameters["perceptual_hash"].default == ""
    assert list(inspect.signature(framecache.Frame).parameters) == [
        "sequence",
        "chunk_id",
        "timestamp",
        "image",
        "perceptual_hash",
    ]
    for name in dir(FrameCache):
        if not name.startswith("_"):
            assert getattr(FrameCache, name).__doc__, name


def test_cache_jpegs_stores_bytes_as_given(backend, timeline):
    fc = backend.cache()
    jpegs = [pillow_jpeg(synthetic_image(i), 70) for i in range(3)]
    items = [
        {"seq": 0, "jpeg": jpegs[0], "timestamp": 0.5, "chunk_id": 3, "perceptual_hash": "h0"},
        {"seq": 1, "jpeg": jpegs[1]},
        SeedJpeg(2, jpegs[2]),
    ]
    assert fc.cache_jpegs(timeline, items) == 3
    assert [backend.raw.get(frame_key(timeline, i)) for i in range(3)] == jpegs
    loaded = fc.load_frames(timeline)
    assert (loaded[0].chunk_id, loaded[0].timestamp, loaded[0].perceptual_hash) == (3, 0.5, "h0")
    assert (loaded[1].chunk_id, loaded[1].timestamp) == (0, 0.0)
    with pytest.raises(framecache.InvalidInputError, match="JPEG"):
        fc.cache_jpegs(timeline, [{"seq": 0, "jpeg": b"PNG?"}])


class SeedJpeg:
    def __init__(self, seq, jpeg):
        self.seq, self.jpeg = seq, jpeg


def test_scaled_loads_decode_smaller_frames_through_the_dct(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(2, width=161, height=90))
    full = fc.load_frames(timeline)
    for scale in (2, 4, 8):
        scaled = fc.load_frames(timeline, scale=scale)
        expected = (-(-90 // scale), -(-161 // scale), 3)
        assert [f.image.shape for f in scaled] == [expected, expected]
        # Each scaled pixel is close to the mean of the full-size block it stands for.
        for small, big in zip(scaled, full):
            h, w = (90 // scale) * scale, (161 // scale) * scale
            blocks = big.image[:h, :w].astype(np.float64)
            blocks = blocks.reshape(h // scale, scale, w // scale, scale, 3).mean(axis=(1, 3))
            error = np.abs(small.image[: h // scale, : w // scale] - blocks).mean()
            assert error < 12.0, (scale, error)
        # Scaled frames are cached apart from full ones: the full load is unchanged.
        assert fc.load_frame(timeline, 1, scale=scale).image.shape == expected
    assert fc.load_frames(timeline)[0].image.shape == (90, 161, 3)


@pytest.mark.parametrize("bad", [0, 3, 16])
def test_a_scale_other_than_1_2_4_8_is_refused_naming_it(backend, timeline, bad):
    fc = backend.cache()
    with pytest.raises(framecache.InvalidInputError) as caught:
        fc.load_frames(timeline, scale=bad)
    assert caught.value.what == "scale" and caught.value.value == str(bad)
    with pytest.raises(framecache.InvalidInputError):
        fc.iter_frames(timeline, scale=bad)
