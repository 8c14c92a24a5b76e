"""``seqs=`` on every read of frames, on fs and S3: order and duplicates kept, a missing seq
named, with and without a manifest, a frame the Python module rewrote inside a range."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from conftest import close, frame_key, pillow_decode, pillow_jpeg, seed_frames, synthetic_image
from framecache import InvalidInputError, MissingFrameError


def _seed_layout(backend, timeline: str, n: int) -> None:
    for i in range(n):
        backend.raw.put(frame_key(timeline, i), pillow_jpeg(synthetic_image(i)))


@pytest.mark.parametrize("managed", [True, False], ids=["manifest", "python-module"])
def test_seqs_keep_order_and_duplicates(backend, timeline, managed):
    if managed:
        backend.cache("writer").cache_frames(timeline, seed_frames(20))
    else:
        _seed_layout(backend, timeline, 20)
    fc = backend.cache("reader")
    frames = fc.load_frames(timeline, seqs=range(5, 9))
    assert [f.sequence for f in frames] == [5, 6, 7, 8]
    assert [f.chunk_id for f in frames] == ([101, 101, 101, 102] if managed else [0] * 4)
    for f in frames:
        assert close(f.image, synthetic_image(f.sequence))
    listed = fc.load_frames(timeline, [7, 2, 7], writeable=False, scale=2)
    assert [f.sequence for f in listed] == [7, 2, 7]
    assert listed[0].image.shape == (24, 32, 3)
    assert [f.sequence for f in fc.iter_frames(timeline, seqs=iter([19, 0]))] == [19, 0]
    jpegs = fc.load_jpegs(timeline, seqs=(s for s in [3, 4]))
    assert [j["seq"] for j in jpegs] == [3, 4]
    assert jpegs[0]["jpeg"] == fc.frame_jpeg(timeline, 3)
    assert fc.load_frames(timeline, seqs=[]) == []
    assert len(fc.load_frames(timeline)) == 20  # seqs=None: the whole timeline

    async def twins():
        a = await fc.load_frames_async(timeline, seqs=range(10, 12))
        b = await fc.load_jpegs_async(timeline, seqs=[11, 10])
        c = [f.sequence async for f in fc.iter_frames(timeline, seqs=range(15, 18))]
        return [f.sequence for f in a], [j["seq"] for j in b], c

    assert asyncio.run(twins()) == ([10, 11], [11, 10], [15, 16, 17])


def test_a_missing_seq_raises_naming_it_everywhere(backend, timeline):
    backend.cache("writer").cache_frames(timeline, seed_frames(5))
    fc = backend.cache("reader")

    async def load_async(seqs):
        return await fc.load_frames_async(timeline, seqs=seqs)

    for call in (
        lambda: fc.load_frames(timeline, seqs=[1, 9, 2]),
        lambda: fc.load_jpegs(timeline, seqs=range(3, 10)),
        lambda: list(fc.iter_frames(timeline, seqs=[4, 5])),
        lambda: asyncio.run(load_async([9])),
    ):
        with pytest.raises(MissingFrameError) as raised:
            call()
        assert raised.value.timeline == timeline
        assert raised.value.seq in (5, 9)
    assert fc.load_frame(timeline, 9) is None  # the single-frame lookup: None, as always


def test_bad_seqs_are_refused(backend, timeline):
    fc = backend.cache()
    for bad in ([-1], ["3"], range(-2, 3), [1.5]):
        with pytest.raises(InvalidInputError):
            fc.load_frames(timeline, seqs=bad)
    with pytest.raises(InvalidInputError):
        fc.load_jpegs(timeline, seqs=range(0, 10**12))


def test_a_frame_the_python_module_rewrote_inside_a_range_is_fresh(backend, timeline):
    backend.cache("writer").cache_frames(timeline, seed_frames(10))
    fc = backend.cache("reader")
    assert [f.chunk_id for f in fc.load_frames(timeline, seqs=range(3, 6))] == [100, 101, 101]
    new_image = np.full((48, 64, 3), 200, dtype=np.uint8)
    backend.raw.put(frame_key(timeline, 4), pillow_jpeg(new_image))
    frames = fc.load_frames(timeline, seqs=range(3, 6))
    assert close(frames[1].image, new_image), "never the stale local copy"
    assert frames[1].chunk_id == 0, "the manifest no longer describes it"
    assert frames[0].chunk_id == 100 and frames[2].chunk_id == 101
    jpeg = fc.load_jpegs(timeline, seqs=[4])[0]["jpeg"]
    assert close(pillow_decode(jpeg), new_image)
