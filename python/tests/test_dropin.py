"""``from framecache import frames`` against the Python module's behaviour, both ways: objects
the module wrote (its layout, Pillow JPEGs, no manifest) read through the drop-in, and
objects the drop-in wrote read the way the module reads them."""

from __future__ import annotations

import base64
import inspect
import subprocess
import sys

import numpy as np
import pytest
from conftest import (
    PREFIX,
    SeedFrame,
    close,
    frame_key,
    overlay_key,
    pillow_decode,
    pillow_jpeg,
    png_bytes,
    seed_frames,
    synthetic_image,
)

import framecache
from framecache import frames as dropin_module

# The Python module's nine functions and their signatures, parameter for parameter.
SEED_SIGNATURES = {
    "cache_exists": ["timeline_id"],
    "cache_frames": ["timeline_id", "frames", "quality=85"],
    "load_cached_frames": ["timeline_id"],
    "load_cached_frames_b64": ["timeline_id"],
    "save_overlays": ["timeline_id", "job_id", "stage", "seq", "overlays"],
    "load_overlays": ["timeline_id", "job_id", "stage", "seq"],
    "list_overlay_frames": ["timeline_id", "job_id", "stage"],
    "clear_cache": ["timeline_id"],
    "frames_to_b64": ["frames", "quality=75"],
}


def write_seed_timeline(raw, timeline: str, n: int) -> list[np.ndarray]:
    """Writes ``n`` frames as the Python module does: Pillow JPEGs at q85, no manifest."""
    images = [synthetic_image(i) for i in range(n)]
    for i, image in enumerate(images):
        raw.put(frame_key(timeline, i), pillow_jpeg(image))
    return images


def test_signatures_match_the_module():
    # The module's parameters, in order; what framecache adds is keyword-only with a default
    # (``cache_frames(..., replace=False)``), so no call written for the module changes.
    for name, params in SEED_SIGNATURES.items():
        sig = inspect.signature(getattr(dropin_module, name))
        shown = [
            p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
            for p in sig.parameters.values()
            if p.kind is not inspect.Parameter.KEYWORD_ONLY
        ]
        assert shown == params, name
        extra = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert all(p.default is not inspect.Parameter.empty for p in extra), name
    assert [
        p.name
        for p in inspect.signature(dropin_module.cache_frames).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ] == ["replace"]
    assert dropin_module.BUCKET == __import__("os").environ.get("S3_BUCKET", "mpr")


def test_module_written_timeline_loads_with_defaults(dropin, backend, timeline):
    images = write_seed_timeline(backend.raw, timeline, 5)
    # Names the module skips (not .jpg) are skipped here too.
    backend.raw.put(f"{PREFIX}/{timeline}/frames/notes.txt", b"not a frame")

    assert dropin.cache_exists(timeline) is True
    loaded = dropin.load_cached_frames(timeline)

    assert [f.sequence for f in loaded] == [0, 1, 2, 3, 4]
    for frame, image in zip(loaded, images):
        assert isinstance(frame, framecache.Frame)
        assert (frame.chunk_id, frame.timestamp, frame.perceptual_hash) == (0, 0.0, "")
        assert frame.image.shape == image.shape and frame.image.dtype == np.uint8
        stored = backend.raw.get(frame_key(timeline, frame.sequence))
        assert close(frame.image, pillow_decode(stored), tolerance=1.0)


def test_module_written_timeline_b64_is_the_stored_bytes(dropin, backend, timeline):
    write_seed_timeline(backend.raw, timeline, 3)
    got = dropin.load_cached_frames_b64(timeline)
    assert [sorted(d) for d in got] == [["jpeg_b64", "seq", "timestamp"]] * 3
    for item in got:
        stored = backend.raw.get(frame_key(timeline, item["seq"]))
        assert base64.b64decode(item["jpeg_b64"]) == stored
        assert item["timestamp"] == 0.0
    assert [d["seq"] for d in got] == [0, 1, 2]


def test_missing_timeline(dropin, timeline):
    assert dropin.cache_exists(timeline) is False
    assert dropin.load_cached_frames(timeline) == []
    assert dropin.load_cached_frames_b64(timeline) == []
    assert dropin.load_overlays(timeline, "job", "stage", 0) is None
    assert dropin.list_overlay_frames(timeline, "job", "stage") == []


def test_dropin_written_timeline_reads_as_the_module_reads_it(dropin, backend, timeline):
    given = seed_frames(4)
    assert dropin.cache_frames(timeline, given) == 4

    keys = backend.raw.list(f"{PREFIX}/{timeline}/frames/")
    jpgs = [k for k in keys if k.endswith(".jpg")]
    assert jpgs == sorted(frame_key(timeline, i) for i in range(4))
    for frame in given:
        data = backend.raw.get(frame_key(timeline, frame.sequence))
        assert data[:3] == b"\xff\xd8\xff"
        assert close(pillow_decode(data), frame.image)
    # What is not a .jpg is what the module skips: the manifest's head and its chunks.
    prefix = f"{PREFIX}/{timeline}/frames/"
    others = [k[len(prefix):] for k in keys if not k.endswith(".jpg")]
    assert "manifest.json" in others
    assert all(o == "manifest.json" or o.startswith("manifest.d/") for o in others), others


def test_cache_frames_quality_changes_the_stored_jpeg(dropin, backend, timeline):
    image = synthetic_image(3, 96, 128)
    noisy = image ^ np.random.default_rng(0).integers(0, 40, image.shape, dtype=np.uint8)
    frame = SeedFrame(0, 0, 0.0, noisy)
    dropin.cache_frames(timeline, [frame], quality=95)
    high = backend.raw.get(frame_key(timeline, 0))
    dropin.cache_frames(timeline, [frame], 20)
    low = backend.raw.get(frame_key(timeline, 0))
    assert len(low) < len(high)


def test_metadata_round_trip(dropin, timeline):
    given = seed_frames(6)
    dropin.cache_frames(timeline, given)
    loaded = dropin.load_cached_frames(timeline)
    assert [(f.sequence, f.chunk_id, f.timestamp, f.perceptual_hash) for f in loaded] == [
        (f.sequence, f.chunk_id, f.timestamp, f.perceptual_hash) for f in given
    ]
    for frame, original in zip(loaded, given):
        assert close(frame.image, original.image)
    b64 = dropin.load_cached_frames_b64(timeline)
    assert [(d["seq"], d["timestamp"]) for d in b64] == [(f.sequence, f.timestamp) for f in given]


def test_cache_frames_takes_unsorted_noncontiguous_and_default_hash(dropin, timeline):
    base = np.ascontiguousarray(synthetic_image(9, 64, 80)[:, ::-1])
    strided = np.zeros((64, 160, 3), dtype=np.uint8)[:, ::2]  # not C-contiguous
    strided[...] = base
    assert not strided.flags.c_contiguous
    fortran = np.asfortranarray(synthetic_image(2, 64, 80))
    frames = [SeedFrame(5, 1, 0.5, strided), SeedFrame(2, 1, 0.25, fortran)]
    assert dropin.cache_frames(timeline, frames) == 2
    loaded = dropin.load_cached_frames(timeline)
    assert [f.sequence for f in loaded] == [2, 5]
    assert close(loaded[0].image, synthetic_image(2, 64, 80))
    assert close(loaded[1].image, base)
    assert loaded[1].perceptual_hash == ""


def test_cache_frames_of_nothing_writes_nothing(dropin, backend, timeline):
    write_seed_timeline(backend.raw, timeline, 2)
    assert dropin.cache_frames(timeline, []) == 0
    assert len(dropin.load_cached_frames(timeline)) == 2


def chunk_frames(chunk: int, n: int = 10, shift: int = 0) -> list[SeedFrame]:
    """Frames ``chunk * n ..`` of video chunk ``chunk``, as an extractor hands them over."""
    return [
        SeedFrame(
            sequence=seq,
            chunk_id=chunk,
            timestamp=seq / 25 + shift,
            image=synthetic_image(seq + shift),
            perceptual_hash=f"ph{seq}-{shift}",
        )
        for seq in range(chunk * n, chunk * n + n)
    ]


def meta(frames) -> list[tuple]:
    return [(f.sequence, f.chunk_id, f.timestamp, f.perceptual_hash) for f in frames]


def test_chunk_by_chunk_writes_keep_every_chunk(dropin, backend, timeline):
    # The module uploads one object per frame and deletes nothing: so does the drop-in.
    written = []
    for chunk in range(3):
        given = chunk_frames(chunk)
        assert dropin.cache_frames(timeline, given) == 10
        written += given
    keys = [k for k in backend.raw.list(f"{PREFIX}/{timeline}/frames/") if k.endswith(".jpg")]
    assert len(keys) == 30
    loaded = dropin.load_cached_frames(timeline)
    assert meta(loaded) == meta(written)
    for frame, original in zip(loaded, written):
        assert close(frame.image, original.image)


def test_a_chunk_written_again_replaces_only_its_seqs(dropin, timeline):
    for chunk in range(3):
        dropin.cache_frames(timeline, chunk_frames(chunk))
    assert len(dropin.load_cached_frames(timeline)) == 30
    again = chunk_frames(1, shift=50)
    dropin.cache_frames(timeline, again)
    loaded = dropin.load_cached_frames(timeline)
    expected = chunk_frames(0) + again + chunk_frames(2)
    assert meta(loaded) == meta(expected)
    for frame, original in zip(loaded, expected):
        assert close(frame.image, original.image), frame.sequence


def test_replace_rebuilds_the_timeline(dropin, backend, timeline):
    for chunk in range(3):
        dropin.cache_frames(timeline, chunk_frames(chunk))
    backend.raw.put(frame_key(timeline, 99), pillow_jpeg(synthetic_image(99)))
    assert dropin.cache_frames(timeline, chunk_frames(1), replace=True) == 10
    loaded = dropin.load_cached_frames(timeline)
    assert meta(loaded) == meta(chunk_frames(1))
    keys = [k for k in backend.raw.list(f"{PREFIX}/{timeline}/frames/") if k.endswith(".jpg")]
    assert keys == sorted(frame_key(timeline, s) for s in range(10, 20))


def test_a_mixed_fleet_keeps_every_chunk(dropin, backend, timeline):
    # Some workers still run the module (Pillow JPEGs, one PUT per frame, no manifest),
    # others the drop-in: chunks 0 and 2 by the module, 1 and 3 by framecache, in turn.
    module_images = {}
    for chunk in range(4):
        given = chunk_frames(chunk)
        if chunk % 2 == 0:
            for f in given:
                backend.raw.put(frame_key(timeline, f.sequence), pillow_jpeg(f.image))
                module_images[f.sequence] = f.image
        else:
            dropin.cache_frames(timeline, given)
    loaded = dropin.load_cached_frames(timeline)
    assert [f.sequence for f in loaded] == list(range(40))
    for frame in loaded:
        chunk = frame.sequence // 10
        if chunk % 2 == 0:
            assert (frame.chunk_id, frame.timestamp, frame.perceptual_hash) == (0, 0.0, "")
            assert close(frame.image, module_images[frame.sequence])
        else:
            assert (frame.chunk_id, frame.timestamp) == (chunk, frame.sequence / 25)
    # The module rewrites one of framecache's frames: it loads with the module's defaults.
    backend.raw.put(frame_key(timeline, 15), pillow_jpeg(synthetic_image(500)))
    rewritten = dropin.load_cached_frames(timeline)[15]
    assert (rewritten.chunk_id, rewritten.timestamp, rewritten.perceptual_hash) == (0, 0.0, "")
    assert close(rewritten.image, synthetic_image(500))


def test_replace_on_the_cache_blocking_and_async(backend, timeline):
    import asyncio

    def wait(make):
        """Runs the awaitable ``make()`` returns inside an event loop, as asyncio code does."""

        async def main():
            return await make()

        return asyncio.run(main())

    def jpeg(seq: int) -> dict:
        return {"seq": seq, "jpeg": pillow_jpeg(synthetic_image(seq))}

    def seqs() -> list[int]:
        return [f["seq"] for f in fc.load_jpegs(timeline)]

    fc = backend.cache("replace")
    fc.cache_frames(timeline, chunk_frames(0))
    fc.cache_jpegs(timeline, [jpeg(10)])
    assert len(fc.load_jpegs(timeline)) == 11
    wait(lambda: fc.cache_frames_async(timeline, chunk_frames(1)))
    assert len(fc.load_jpegs(timeline)) == 20
    wait(lambda: fc.cache_frames_async(timeline, chunk_frames(0)[:3], replace=True))
    assert seqs() == [0, 1, 2]
    wait(lambda: fc.cache_jpegs_async(timeline, [jpeg(7)]))
    assert seqs() == [0, 1, 2, 7]
    fc.cache_jpegs(timeline, [jpeg(4)], replace=True)
    assert seqs() == [4]
    wait(lambda: fc.cache_jpegs_async(timeline, [jpeg(5)], replace=True))
    assert seqs() == [5]


def test_overlays_written_by_the_module(dropin, backend, timeline):
    pngs = {
        (1, "edge_overlay_b64"): png_bytes(1),
        (1, "lines_overlay_b64"): png_bytes(2),
        (7, "edge_overlay_b64"): png_bytes(3),
    }
    for (seq, name), data in pngs.items():
        backend.raw.put(overlay_key(timeline, "job-1", "detect", seq, name), data)

    assert dropin.list_overlay_frames(timeline, "job-1", "detect") == [1, 7]
    assert dropin.load_overlays(timeline, "job-1", "detect", 1) == {
        "edge_overlay_b64": base64.b64encode(pngs[(1, "edge_overlay_b64")]).decode(),
        "lines_overlay_b64": base64.b64encode(pngs[(1, "lines_overlay_b64")]).decode(),
    }
    assert dropin.load_overlays(timeline, "job-1", "detect", 2) is None
    assert dropin.list_overlay_frames(timeline, "job-1", "other-stage") == []


def test_overlays_written_by_the_dropin(dropin, backend, timeline):
    overlays = {"edge": base64.b64encode(png_bytes(4)).decode(), "mask": base64.b64encode(png_bytes(5)).decode()}
    assert dropin.save_overlays(timeline, "job-2", "stage-a", 12, overlays) is None
    for name, b64 in overlays.items():
        stored = backend.raw.get(overlay_key(timeline, "job-2", "stage-a", 12, name))
        assert stored == base64.b64decode(b64)
    assert dropin.load_overlays(timeline, "job-2", "stage-a", 12) == overlays
    assert dropin.list_overlay_frames(timeline, "job-2", "stage-a") == [12]


def test_clear_cache_removes_frames_and_keeps_overlays(dropin, backend, timeline):
    dropin.cache_frames(timeline, seed_frames(3))
    write_seed_timeline(backend.raw, timeline + "-other", 1)
    overlay = {"edge": base64.b64encode(png_bytes(1)).decode()}
    dropin.save_overlays(timeline, "job", "stage", 0, overlay)

    assert dropin.clear_cache(timeline) is None

    assert backend.raw.list(f"{PREFIX}/{timeline}/frames/") == []
    assert dropin.cache_exists(timeline) is False
    assert dropin.load_cached_frames(timeline) == []
    # As the module's clear_cache: only the frames prefix.
    assert dropin.load_overlays(timeline, "job", "stage", 0) == overlay
    assert dropin.cache_exists(timeline + "-other") is True


def test_frames_to_b64_matches_the_module(dropin):
    given = [SeedFrame(3, 0, 0.12, synthetic_image(3)), SeedFrame(1, 0, 0.04, synthetic_image(1))]
    got = dropin.frames_to_b64(given)
    assert [(d["seq"], d["timestamp"]) for d in got] == [(1, 0.04), (3, 0.12)]
    for item in got:
        original = next(f for f in given if f.sequence == item["seq"])
        jpeg = base64.b64decode(item["jpeg_b64"])
        assert close(pillow_decode(jpeg), original.image)
        # The default quality is the module's 75: about the size Pillow makes at 75.
        assert len(jpeg) < 1.5 * len(pillow_jpeg(original.image, 75))
    assert dropin.frames_to_b64([]) == []


def test_configuration_comes_from_the_environment(backend, timeline):
    """A fresh process configured only by environment variables, as the CLI reads them."""
    write_seed_timeline(backend.raw, timeline, 2)
    script = (
        "import base64, sys\n"
        "from framecache import frames\n"
        "tl = sys.argv[1]\n"
        "loaded = frames.load_cached_frames(tl)\n"
        "assert [f.sequence for f in loaded] == [0, 1], loaded\n"
        "png = base64.b64encode(bytes.fromhex(sys.argv[2])).decode()\n"
        "frames.save_overlays(tl, 'j', 's', 1, {'x': png})\n"
        "print(frames.BUCKET)\n"
    )
    env = backend.env()
    env["S3_BUCKET"] = env.get("S3_BUCKET", "mpr")
    result = subprocess.run(
        [sys.executable, "-c", script, timeline, png_bytes(9).hex()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == env["S3_BUCKET"]
    assert backend.raw.get(overlay_key(timeline, "j", "s", 1, "x")) == png_bytes(9)


def test_default_backend_is_s3(tmp_path):
    """Without FRAMECACHE_BACKEND the drop-in talks to S3, as the module did: here to an
    endpoint where nothing listens, which fails naming the key rather than reading an empty
    local store."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "FRAMECACHE_BACKEND"}
    env.update(
        AWS_ENDPOINT_URL="http://127.0.0.1:1",
        AWS_ACCESS_KEY_ID="GKx",
        AWS_SECRET_ACCESS_KEY="x",
        FRAMECACHE_CACHE_DIR=str(tmp_path / "disk"),
    )
    script = (
        "from framecache import frames, OriginError\n"
        "try:\n"
        "    frames.cache_exists('tl')\n"
        "except OriginError as e:\n"
        "    print('origin error', e.key)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("origin error cache/timelines/tl/"), result.stdout
