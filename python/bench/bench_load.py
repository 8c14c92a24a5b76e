#!/usr/bin/env python3
"""``load_cached_frames`` through framecache's drop-in against the Python frame cache module,
and framecache's Python API against its Rust API, on one S3 server.

Each subcommand is one process and prints one JSON line; ``scripts/bench-python.sh`` runs
them in order and computes the ratios:

    prepare TIMELINE N W H     write N synthetic W×H frames (framecache's, q85) via the drop-in
    dropin TIMELINE CACHE_DIR  load twice in a new process: the first load is cold when
                               CACHE_DIR is empty and warm when it is filled, the second is hot
    seed SEED_DIR TIMELINE     the same two loads through the module (run with its interpreter)
    api N W H RUNS             framecache.FrameCache measured as examples/bench_timeline.rs
                               measures the Rust API: cold, warm, hot and hot read-only
                               (``writeable=False``) load_frames, medians

S3 settings come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def checksum(frames) -> int:
    """Touches every frame (as a caller would) and makes the loads comparable."""
    return sum(int(f.image[f.image.shape[0] // 2, f.image.shape[1] // 2].sum()) for f in frames)


def prepare(timeline: str, n: int, width: int, height: int) -> dict:
    import framecache
    from framecache import frames

    made = [framecache.synthetic_frame(seq, width, height) for seq in range(n)]
    took, count = timed(frames.cache_frames, timeline, made)
    assert count == n
    return {"phase": "prepare", "frames": n, "cache_frames_s": took}


def dropin(timeline: str, cache_dir: str) -> dict:
    os.environ["FRAMECACHE_CACHE_DIR"] = cache_dir
    os.environ.setdefault("FRAMECACHE_BACKEND", "s3")
    os.environ.setdefault("FRAMECACHE_MEMORY_CAPACITY", "1GiB")
    filled = os.path.isdir(cache_dir) and any(os.scandir(cache_dir))
    from framecache import frames

    first_s, first = timed(frames.load_cached_frames, timeline)
    second_s, second = timed(frames.load_cached_frames, timeline)
    assert len(first) == len(second) and checksum(first) == checksum(second)
    return {
        "phase": "dropin",
        "frames": len(first),
        "first": "warm" if filled else "cold",
        "first_s": first_s,
        "hot_s": second_s,
        "checksum": checksum(first),
    }


def seed(seed_dir: str, timeline: str) -> dict:
    sys.path.insert(0, seed_dir)
    os.environ.setdefault("S3_ENDPOINT_URL", os.environ.get("AWS_ENDPOINT_URL", ""))
    from core.detect.checkpoint import frames  # the module, as its users import it

    first_s, first = timed(frames.load_cached_frames, timeline)
    second_s, second = timed(frames.load_cached_frames, timeline)
    assert len(first) == len(second)
    return {
        "phase": "seed",
        "frames": len(first),
        "first_s": first_s,
        "second_s": second_s,
        "checksum": checksum(first),
    }


def api(n: int, width: int, height: int, runs: int) -> dict:
    """The Rust benchmark's cold/warm/hot protocol, through the Python API."""
    import framecache

    scratch = tempfile.mkdtemp(prefix="framecache-pybench-")
    timeline = f"pybench-{os.getpid()}"
    mem = 256 << 20

    def cache(disk: str, memory: int = mem) -> framecache.FrameCache:
        return framecache.FrameCache(
            backend="s3", cache_dir=os.path.join(scratch, disk), memory_capacity=memory,
            disk_capacity=64 << 30,
        )

    made = [framecache.synthetic_frame(seq, width, height) for seq in range(n)]
    cache("w").cache_frames(timeline, made, 85)
    del made
    def load_count(fc: framecache.FrameCache, writeable: bool = True) -> int:
        # The frames are freed inside the timing, as the Rust benchmark's are.
        return len(fc.load_frames(timeline, writeable=writeable))

    cold, warm, hot, hot_read_only = [], [], [], []
    for run in range(runs):
        fc = cache(f"c{run}")
        took, count = timed(load_count, fc)
        assert count == n
        cold.append(took)
        del fc
        if run + 1 < runs:
            # Raw frames take 24x the JPEGs' space: keep only the last cold run's.
            shutil.rmtree(os.path.join(scratch, f"c{run}"))
    warm_dir = f"c{runs - 1}"
    for _ in range(runs):
        fc = cache(warm_dir)
        took, _ = timed(load_count, fc)
        warm.append(took)
        assert fc.stats()["disk"]["hits"] == n
    hot_cache = cache(warm_dir, max(mem, 1 << 30))
    hot_cache.load_frames(timeline)
    for _ in range(runs):
        took, _ = timed(load_count, hot_cache)
        hot.append(took)
        took, _ = timed(load_count, hot_cache, False)
        hot_read_only.append(took)
    cache("cleanup", 0).clear(timeline)
    del fc, hot_cache
    shutil.rmtree(scratch)

    def median(v):
        return sorted(v)[len(v) // 2]

    return {
        "phase": "api",
        "frames": n,
        "runs": runs,
        "load_cold_s": median(cold),
        "load_warm_s": median(warm),
        "load_hot_s": median(hot),
        "load_hot_read_only_s": median(hot_read_only),
    }


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "prepare":
        out = prepare(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif command == "dropin":
        out = dropin(args[0], args[1])
    elif command == "seed":
        out = seed(args[0], args[1])
    elif command == "api":
        out = api(int(args[0]), int(args[1]), int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown command {command!r}\n{__doc__}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
