"""The GIL released during calls, threads, asyncio, a forked child, Ctrl-C. No test depends on
timing: where one must prove that something ran *during* a call, the call can only finish if
it did (its origin is served by Python threads, or held until Python releases it)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading
import warnings

import numpy as np
import pytest
from conftest import SeedFrame, close, pillow_jpeg, png_bytes, seed_frames, synthetic_image
from fakes3 import FakeS3

from framecache import FrameCache, IncompleteTimelineError, InvalidInputError, frames


def digest(loaded) -> str:
    h = hashlib.sha256()
    for f in loaded:
        h.update(f"{f.sequence}:{f.chunk_id}:{f.timestamp}:{f.perceptual_hash}".encode())
        h.update(np.ascontiguousarray(f.image).tobytes())
    return h.hexdigest()


def fake_timeline(server: FakeS3, timeline: str, n: int) -> None:
    for i in range(n):
        server.objects[f"cache/timelines/{timeline}/frames/{i}.jpg"] = pillow_jpeg(synthetic_image(i))


def test_gil_is_released_while_loading(tmp_path):
    """The origin is a Python HTTP server: its handler threads need the GIL to answer, so the
    load completes only if framecache released it while waiting."""
    with FakeS3() as server:
        fake_timeline(server, "gil", 6)
        fc = FrameCache(**server.cache_kwargs(str(tmp_path)))
        loaded = fc.load_frames("gil")
        assert [f.sequence for f in loaded] == list(range(6))
        assert server.requests >= 7  # a listing, the manifest probe, six frames
        assert fc.exists("gil") and len(fc.load_frames_b64("gil")) == 6


def test_another_thread_runs_during_a_load(tmp_path):
    """A Python thread completes work while the main thread is inside ``load_frames``:
    the origin holds the frame reads until that thread has run."""
    with FakeS3() as server:
        fake_timeline(server, "progress", 3)
        fc = FrameCache(**server.cache_kwargs(str(tmp_path)))
        server.hold()
        progressed = []

        def worker():
            server.arrived.wait()  # the load is in progress: a frame read is waiting
            progressed.extend(range(1000))  # Python work, needs the GIL
            server.release.set()

        thread = threading.Thread(target=worker)
        thread.start()
        loaded = fc.load_frames("progress")
        thread.join()
        assert len(progressed) == 1000 and len(loaded) == 3


def test_threads_share_one_cache(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(12))
    expected = digest(fc.load_frames(timeline))
    results: list[str] = []
    errors: list[BaseException] = []

    def load(i: int):
        try:
            other = backend.cache(f"thread-{i % 2}") if i % 3 == 0 else fc
            results.append(digest(other.load_frames(timeline)))
            results.append(digest(list(fc.iter_frames(timeline))))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == [expected] * 16


def test_dropin_from_threads(dropin, timeline):
    dropin.cache_frames(timeline, seed_frames(5))
    out: list[int] = []
    threads = [threading.Thread(target=lambda: out.append(len(dropin.load_cached_frames(timeline)))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [5] * 6


def test_an_awaitable_write_keeps_the_pixels_it_was_given(backend, timeline):
    # The blocking write reads its arrays where they are; the awaitable copies them before
    # it returns, so arrays the caller overwrites at once are stored as they were.
    fc = backend.cache()
    given = seed_frames(6, height=96, width=128)
    originals = [f.image.copy() for f in given]

    async def main():
        write = fc.cache_frames_async(timeline, given)
        for f in given:
            f.image[:] = 255 - f.image
        return await write

    assert asyncio.run(main()) == 6
    loaded = fc.load_frames(timeline)
    assert all(close(f.image, o) for f, o in zip(loaded, originals))
    assert not any(close(f.image, g.image) for f, g in zip(loaded, given))
    # Contiguous, sliced (a view), Fortran-ordered: each stored as it is.
    images = [originals[0], originals[1][:, ::-1], np.asfortranarray(originals[2])]
    frames_in = [SeedFrame(s, 0, s / 30.0, img) for s, img in enumerate(images)]
    assert fc.cache_frames(timeline + "-b", frames_in) == 3
    loaded = fc.load_frames(timeline + "-b")
    assert all(close(f.image, img) for f, img in zip(loaded, images))


def test_asyncio_twins(backend, timeline):
    fc = backend.cache()

    async def main():
        assert await fc.exists_async(timeline) is False
        assert await fc.cache_frames_async(timeline, seed_frames(4)) == 4
        loaded, b64, status, listing = await asyncio.gather(
            fc.load_frames_async(timeline),
            fc.load_frames_b64_async(timeline),
            fc.status_async(timeline),
            fc.list_frames_async(timeline),
        )
        assert [f.sequence for f in loaded] == [0, 1, 2, 3]
        assert loaded[2].chunk_id == 100 and loaded[2].image.flags.writeable
        assert [d["seq"] for d in b64] == [0, 1, 2, 3]
        assert status["state"] == "complete" and len(listing) == 4
        one = await fc.load_frame_async(timeline, 1)
        assert one.sequence == 1 and await fc.load_frame_async(timeline, 9) is None
        assert await fc.frame_jpeg_async(timeline, 0) == fc.frame_jpeg(timeline, 0)
        assert len(await fc.load_jpegs_async(timeline)) == 4
        assert [f.sequence async for f in fc.iter_frames(timeline)] == [0, 1, 2, 3]
        assert await fc.save_overlays_async(timeline, "j", "s", 1, {"o": png_bytes(0)}) == 1
        assert await fc.list_overlay_frames_async(timeline, "j", "s") == [1]
        assert (await fc.load_overlays_async(timeline, "j", "s", 1)).keys() == {"o"}
        assert (await fc.load_overlays_b64_async(timeline, "j", "s", 1)).keys() == {"o"}
        assert timeline in await fc.timelines_async()
        with pytest.raises(InvalidInputError):
            await fc.load_frames_async("bad/id")
        assert await fc.clear_local_async(timeline) >= 4
        assert len(await fc.load_frames_async(timeline)) == 4  # from the origin again
        await fc.clear_async(timeline)
        assert await fc.load_frames_async(timeline) == []

    asyncio.run(main())


def test_asyncio_cancellation_does_not_wedge_the_cache(tmp_path):
    with FakeS3() as server:
        fake_timeline(server, "cancel", 2)
        fc = FrameCache(**server.cache_kwargs(str(tmp_path)))
        server.hold()

        async def main():
            task = asyncio.ensure_future(fc.load_frames_async("cancel"))
            await asyncio.get_running_loop().run_in_executor(None, server.arrived.wait)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            server.held = False
            server.release.set()
            return await fc.load_frames_async("cancel")

        assert len(asyncio.run(main())) == 2


def run_in_child(fn) -> int:
    """Forks; runs ``fn`` in the child, which exits 0 when it returns True. Returns the
    child's exit status."""
    with warnings.catch_warnings():
        # Python >= 3.12 warns when a process with threads forks: that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            code = 0 if fn() else 3
        except BaseException:  # noqa: BLE001 - the parent sees the status
            import traceback

            traceback.print_exc()
            code = 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_child_builds_its_own_cache(backend, timeline):
    # No retries: a child that reused its parent's pooled connections (bound to the parent's
    # runtime) would wait out the deadline and fail, instead of passing slowly.
    fc = backend.cache("fork", retries=0, origin_timeout=20.0)
    fc.cache_frames(timeline, seed_frames(8))
    expected = digest(fc.load_frames(timeline))  # the parent's runtime and tiers are live
    saved = frames._cache
    frames._cache = fc
    try:

        def child() -> bool:
            assert digest(frames.load_cached_frames(timeline)) == expected
            assert fc._pid == os.getpid()  # rebuilt for this process
            assert digest(list(fc.iter_frames(timeline))) == expected
            fc.cache_frames(timeline + "-child", seed_frames(2))
            return True

        assert run_in_child(child) == 0
        # The parent's cache still works, and sees what the child wrote.
        assert fc._pid == os.getpid()
        assert digest(fc.load_frames(timeline)) == expected
        assert len(fc.load_frames(timeline + "-child")) == 2
    finally:
        frames._cache = saved


def test_iterator_from_before_a_fork_refuses_in_the_child(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(2))
    it = fc.iter_frames(timeline)

    def child() -> bool:
        from framecache import FrameCacheError

        with pytest.raises(FrameCacheError, match="another process"):
            next(it)
        return True

    assert run_in_child(child) == 0
    assert len(list(it)) == 2


def test_ctrl_c_interrupts_a_load(tmp_path):
    """SIGINT arrives while a load waits on an origin that never answers (until the test
    ends): the load raises KeyboardInterrupt instead of waiting out its timeout."""
    with FakeS3() as server:
        fake_timeline(server, "stuck", 3)
        fc = FrameCache(**server.cache_kwargs(str(tmp_path), origin_timeout=600.0))
        server.hold()

        def interrupt():
            server.arrived.wait()
            os.kill(os.getpid(), signal.SIGINT)

        thread = threading.Thread(target=interrupt)
        thread.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                fc.load_frames("stuck")
        finally:
            thread.join()
        server.held = False
        server.release.set()
        assert len(fc.load_frames("stuck")) == 3


def test_incomplete_is_raised_from_async_too(backend, timeline):
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(2))
    backend.raw.delete(f"cache/timelines/{timeline}/frames/0.jpg")
    # A rebuild that died: its manifest incomplete.
    key = f"cache/timelines/{timeline}/frames/manifest.json"
    head = json.loads(backend.raw.get(key))
    head["complete"] = False
    backend.raw.put(key, json.dumps(head).encode())

    async def main():
        return await fc.load_frames_async(timeline)

    with pytest.raises(IncompleteTimelineError):
        asyncio.run(main())
