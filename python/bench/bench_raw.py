#!/usr/bin/env python3
"""What raw decoded frames cost a load, through the Python API on the filesystem backend.

Each figure is taken in a new process; ``run`` drives them, alternating the variants round
by round so that they share the machine's state, and prints one JSON line of medians:

    prepare ROOT N W H          write N synthetic W×H frames (q85) to the fs origin at ROOT
    cold ROOT DIR raw|noraw     one cold load (DIR empty) with the decoded disk tier on or
                                off; then waits (bounded) for the raw frames written behind
                                the load and reports how many were written and dropped
    hot ROOT DIR                the decoded disk tier off: a first load, then the median of
                                three writable hot loads (decoded memory tier)
    run ROOT N W H ROUNDS [LABEL=PYTHONPATH ...]
                                prepare (unless ROOT exists), then ROUNDS rounds of cold raw, cold noraw and hot
                                per variant (a variant is a PYTHONPATH holding a build of the
                                package; none given: the installed one)
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

TIMELINE = "rawbench"


def cache(root: str, cache_dir: str, raw: bool):
    import framecache

    return framecache.FrameCache(
        backend="fs",
        root=root,
        cache_dir=cache_dir,
        memory_capacity=512 << 20,
        disk_capacity=16 << 30,
        decoded_memory_capacity=1 << 30,
        decoded_disk_capacity=(16 << 30) if raw else 0,
    )


def prepare(root: str, n: int, width: int, height: int) -> dict:
    import framecache

    made = [framecache.synthetic_frame(seq, width, height) for seq in range(n)]
    scratch = tempfile.mkdtemp(prefix="framecache-rawbench-w-")
    fc = framecache.FrameCache(backend="fs", root=root, cache_dir=scratch, disk=False)
    assert fc.cache_frames(TIMELINE, made, 85) == n
    shutil.rmtree(scratch)
    return {"phase": "prepare", "frames": n}


def cold(root: str, cache_dir: str, mode: str) -> dict:
    fc = cache(root, cache_dir, mode == "raw")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    frames = fc.load_frames(TIMELINE)
    took = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    n = len(frames)
    del frames
    # The raw frames a load leaves to its writer: wait for them (bounded), to report them.
    wait = getattr(fc, "flush_raw_writes", None)
    if mode == "raw" and wait is not None:
        wait(30.0)
    stats = fc.stats()
    s = stats["decoded_disk"]
    return {
        "phase": "cold",
        "mode": mode,
        "frames": n,
        "load_s": took,
        "cpu_s": cpu,
        "raw_written": s["writes"],
        "raw_dropped": stats.get("raw_writes_dropped", 0),
    }


def hot(root: str, cache_dir: str) -> dict:
    fc = cache(root, cache_dir, False)
    fc.load_frames(TIMELINE)
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        frames = fc.load_frames(TIMELINE, writeable=True)
        runs.append(time.perf_counter() - start)
        assert frames[0].image.flags.writeable
        del frames
    return {"phase": "hot", "load_s": sorted(runs)[1]}


def run(root: str, n: int, width: int, height: int, rounds: int, variants: list[str]) -> dict:
    variants = variants or ["installed="]
    scratch = tempfile.mkdtemp(prefix="framecache-rawbench-")

    def child(path: str, *args: str) -> dict:
        env = dict(os.environ)
        if path:
            env["PYTHONPATH"] = path
        out = subprocess.run(
            [sys.executable, __file__, *args], env=env, check=True, capture_output=True, text=True
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    if not os.path.isdir(root):
        first = variants[0].split("=", 1)[1]
        child(first, "prepare", root, str(n), str(width), str(height))
    results: dict[str, dict[str, list]] = {}
    for r in range(rounds):
        for variant in variants:
            label, path = variant.split("=", 1)
            got = results.setdefault(label, {})
            for mode in ("raw", "noraw"):
                d = os.path.join(scratch, f"{label}-{mode}-{r}")
                out = child(path, "cold", root, d, mode)
                got.setdefault(f"cold_{mode}_s", []).append(out["load_s"])
                got.setdefault(f"cold_{mode}_cpu_s", []).append(out["cpu_s"])
                got.setdefault(f"cold_{mode}_written", []).append(out["raw_written"])
                got.setdefault(f"cold_{mode}_dropped", []).append(out["raw_dropped"])
                shutil.rmtree(d)
            d = os.path.join(scratch, f"{label}-hot-{r}")
            got.setdefault("hot_noraw_s", []).append(child(path, "hot", root, d)["load_s"])
            shutil.rmtree(d)
    shutil.rmtree(scratch)

    def median(v):
        return sorted(v)[len(v) // 2]

    summary = {"frames": n, "width": width, "height": height, "rounds": rounds,
               "load_average": os.getloadavg()[0]}
    for label, got in results.items():
        m = {k: median(v) for k, v in got.items()}
        m["cold_ratio"] = m["cold_raw_s"] / m["cold_noraw_s"]
        m["all"] = got
        summary[label] = m
    return summary


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "prepare":
        out = prepare(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif command == "cold":
        out = cold(args[0], args[1], args[2])
    elif command == "hot":
        out = hot(args[0], args[1])
    elif command == "run":
        out = run(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]), args[5:])
    else:
        raise SystemExit(f"unknown command {command!r}\n{__doc__}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
