"""``framecache.dataset`` under worker pools: it pickles, opens its cache lazily in each worker
(fork and spawn), and N workers reading one timeline download each frame once and decode it
once on the machine (counted)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle

import numpy as np
import pytest

from conftest import frame_key, pillow_jpeg, seed_frames, synthetic_image
from framecache import Frame, MissingFrameError
from framecache.dataset import FrameDataset, TimelineDataset

WORKERS = 4
POOL_TIMEOUT = 300  # seconds: a wedged worker fails the test instead of hanging CI


def _read_everything(dataset: FrameDataset):
    """One worker's pass over the whole dataset: its images' digests and its cache's counters."""
    digests = [hashlib.blake2b(dataset[i].tobytes()).hexdigest() for i in range(len(dataset))]
    return os.getpid(), digests, dataset.cache.stats()


def _seed_timeline(backend, timeline: str, n: int) -> list[np.ndarray]:
    """Frames as the Python module stores them: JPEGs only, no manifest."""
    images = [synthetic_image(i) for i in range(n)]
    for i, image in enumerate(images):
        backend.raw.put(frame_key(timeline, i), pillow_jpeg(image))
    return images


def test_a_dataset_pickles_without_its_cache_and_opens_one_on_use(backend, timeline):
    backend.cache("writer").cache_frames(timeline, seed_frames(6))
    dataset = FrameDataset.over_timelines(
        {timeline: range(2, 5)}, cache=backend.cache_kwargs("ds")
    )
    assert dataset._cache is None, "nothing listed, nothing opened"
    assert len(dataset) == 3
    image = dataset[0]
    assert dataset._cache is not None
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._cache is None
    assert np.array_equal(copy[0], image)
    direct = backend.cache("direct").load_frame(timeline, 2)
    assert np.array_equal(image, direct.image)
    # Frames, and slices.
    frames = FrameDataset([(timeline, 4)], cache=backend.cache_kwargs("ds"), output="frame")
    assert isinstance(frames[0], Frame)
    assert frames[0].chunk_id == 101
    assert [a.shape for a in dataset[1:]] == [image.shape] * 2


def test_whole_timelines_and_listed_timelines(backend, timeline):
    writer = backend.cache("writer")
    writer.cache_frames(timeline, seed_frames(5))
    writer.cache_frames(timeline + "-b", seed_frames(3))
    listed = FrameDataset.over_timelines([timeline, timeline + "-b"], cache=backend.cache_kwargs())
    assert listed.items == [(timeline, s) for s in range(5)] + [(timeline + "-b", s) for s in range(3)]
    whole = TimelineDataset([timeline, timeline + "-b"], cache=backend.cache_kwargs())
    assert [len(item) for item in whole] == [5, 3]
    some = TimelineDataset([timeline], seqs=[4, 0], cache=backend.cache_kwargs(), output="frame")
    assert [f.sequence for f in some[0]] == [4, 0]


def test_a_missing_seq_raises_naming_it(backend, timeline):
    backend.cache("writer").cache_frames(timeline, seed_frames(3))
    dataset = FrameDataset([(timeline, 1), (timeline, 7)], cache=backend.cache_kwargs())
    assert dataset[0].shape == (48, 64, 3)
    with pytest.raises(MissingFrameError) as raised:
        dataset[1]
    assert (raised.value.timeline, raised.value.seq) == (timeline, 7)
    assert isinstance(raised.value, LookupError)
    with pytest.raises(MissingFrameError):
        TimelineDataset([timeline], seqs=[2, 3], cache=backend.cache_kwargs())[0]


def test_invalid_output_is_refused():
    from framecache import InvalidInputError

    with pytest.raises(InvalidInputError):
        FrameDataset([], output="jpeg")


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_download_and_decode_each_frame_once(backend, timeline, method):
    n = 12
    images = _seed_timeline(backend, timeline, n)
    dataset = FrameDataset(
        [(timeline, s) for s in range(n)],
        cache=backend.cache_kwargs(
            f"pool-{method}", decoded_disk_capacity=256 << 20, decoded_memory_capacity=64 << 20
        ),
    )
    context = multiprocessing.get_context(method)
    with context.Pool(WORKERS) as pool:
        results = pool.map_async(_read_everything, [dataset] * WORKERS, chunksize=1).get(
            POOL_TIMEOUT
        )
    expected = [hashlib.blake2b(dataset[i].tobytes()).hexdigest() for i in range(n)]
    assert all(digests == expected for _, digests, _ in results)
    for i, image in enumerate(images):
        assert float(np.abs(dataset[i].astype(int) - image.astype(int)).mean()) < 6
    # Counters are per process and cumulative: a worker that ran two passes counts once.
    last = {}
    for pid, _, stats in results:
        if pid not in last or stats["origin"]["hits"] >= last[pid]["origin"]["hits"]:
            last[pid] = stats
    assert len(last) >= 1
    # No manifest (the module's layout), so the origin's only reads are the frames.
    assert sum(s["origin"]["hits"] for s in last.values()) == n, last
    assert sum(s["decodes"] for s in last.values()) == n, last


def test_torch_dataloader_shares_the_arrays(backend, timeline):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    n = 8
    _seed_timeline(backend, timeline, n)
    dataset = FrameDataset(
        [(timeline, s) for s in range(n)], cache=backend.cache_kwargs("torch"), output="tensor"
    )
    one = dataset[0]
    assert isinstance(one, torch.Tensor) and one.dtype == torch.uint8
    loader = DataLoader(dataset, batch_size=2, num_workers=4, timeout=POOL_TIMEOUT)
    batches = list(loader)
    assert sum(len(b) for b in batches) == n
    assert torch.equal(batches[0][0], one)


def _batches(n: int, size: int) -> list[list[int]]:
    """A shuffled epoch's batches of ``size`` indices, as a ``DataLoader`` samples them."""
    order = [(i * 97 + 13) % n for i in range(n)]
    assert sorted(order) == list(range(n))
    return [order[i : i + size] for i in range(0, n, size)]


@pytest.mark.parametrize("window", [None, 3600.0])
def test_warm_batches_ask_the_origin_a_page_at_a_time_or_not_at_all(backend, timeline, window):
    """30 warm batches of 8 through ``FrameDataset``: at most 35 origin requests strict (a
    listing page per batch, not a request per frame), none after the first batch within a
    revalidation window."""
    n = 240
    backend.cache("writer").cache_frames(timeline, seed_frames(n))
    backend.cache("ds").load_frames(timeline)  # every frame on this machine's disk
    options = backend.cache_kwargs("ds")
    if window is not None:
        options["revalidate_after"] = window
    dataset = FrameDataset.over_timelines({timeline: range(n)}, cache=options)
    batches = _batches(n, 8)
    assert len(batches) == 30
    first = dataset.__getitems__(batches[0])
    after_first = dataset.cache.stats()["origin_requests"]
    assert after_first <= 3, after_first
    for batch in batches[1:]:
        images = dataset.__getitems__(batch)
        assert len(images) == 8
    requests = dataset.cache.stats()["origin_requests"]
    if window is None:
        assert requests <= 35, requests
    else:
        assert requests == after_first, requests - after_first
        dataset[17]  # a single item too
        assert dataset.cache.stats()["origin_requests"] == after_first
    direct = backend.cache("direct").load_frames(timeline, seqs=batches[0])
    assert all(np.array_equal(a, f.image) for a, f in zip(first, direct, strict=True))
