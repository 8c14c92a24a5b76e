#!/usr/bin/env python3
"""Where a load in a new process spends its time: wall and CPU time (every thread of the
process) and minor page faults of each step, one line.

    profile_load.py TIMELINE CACHE_DIR [--read-only]

Steps: ``import`` (the package), ``open`` (``FrameCache()``: configuration, HTTP client,
disk tiers), ``index`` (``status``: the listing and the manifest, as a load starts),
``load`` (``load_frames``: the index again, then each frame found and mapped, and the arrays
made), ``touch`` (one pixel of each frame read), ``hot`` (a second load in the process).
Run it with a filled CACHE_DIR for a warm load, an empty one for a cold load; under
``perf record -g`` for the functions. S3 settings come from the environment.
"""

from __future__ import annotations

import resource
import sys
import time

marks: list[tuple[str, float, float, int]] = []


def mark(name: str) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    marks.append((name, time.perf_counter(), usage.ru_utime + usage.ru_stime, usage.ru_minflt))


def main(argv: list[str]) -> None:
    timeline, cache_dir = argv[0], argv[1]
    writeable = "--read-only" not in argv[2:]
    mark("start")
    import framecache

    mark("import")
    fc = framecache.FrameCache(backend="s3", cache_dir=cache_dir)
    mark("open")
    fc.status(timeline)
    mark("index")
    frames = fc.load_frames(timeline, writeable=writeable)
    mark("load")
    sum(int(f.image[f.image.shape[0] // 2, f.image.shape[1] // 2].sum()) for f in frames)
    mark("touch")
    fc.load_frames(timeline, writeable=writeable)
    mark("hot")
    steps = [
        f"{name} {t - t0:.3f} s wall, {c - c0:.3f} s cpu, {f - f0} faults"
        for (name, t, c, f), (_, t0, c0, f0) in zip(marks[1:], marks)
    ]
    stats = fc.stats()
    print(" | ".join(steps), f"| {len(frames)} frames, {stats['decodes']} decodes")


if __name__ == "__main__":
    main(sys.argv[1:])
