"""Reads at the latency of a remote S3: a proxy adding a fixed delay per request
(``scripts/latency_proxy.py``) in front of Garage, warm and cold, whole timeline, range and
``FrameDataset`` batches, with the requests that reached Garage counted.

    scripts/garage.sh start /tmp/g && source /tmp/g/env
    python python/bench/bench_latency.py [--frames 240] [--delays 0,30] [--runs 3]

Needs ``AWS_ENDPOINT_URL`` and ``GARAGE_METRICS_URL`` (as ``scripts/garage.sh`` writes
them). Each figure runs on a new ``FrameCache`` handle (its memory tiers empty): warm on a
disk cache that already holds every frame, cold on an empty one; medians of ``--runs``.
Prints one JSON line per figure and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import numpy as np

from framecache import FrameCache
from framecache.dataset import FrameDataset

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join(HERE, "..", "..", "scripts", "latency_proxy.py")


def garage_requests() -> int:
    with urllib.request.urlopen(os.environ["GARAGE_METRICS_URL"], timeout=10) as r:
        text = r.read().decode()
    return sum(
        int(n)
        for n in re.findall(r'^api_s3_request_counter\{api_endpoint="\w+"\} (\d+)', text, re.M)
    )


class Frame:
    def __init__(self, seq: int):
        rng = np.random.default_rng(seq)
        self.sequence = seq
        self.chunk_id = seq // 10
        self.timestamp = seq / 30
        self.perceptual_hash = f"ph{seq}"
        self.image = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)


def start_proxy(delay_ms: float) -> tuple[subprocess.Popen, str]:
    upstream = os.environ["AWS_ENDPOINT_URL"].split("://", 1)[1].rstrip("/")
    proc = subprocess.Popen(
        [sys.executable, PROXY, "--upstream", upstream, "--delay-ms", str(delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    return proc, "http://" + line.rsplit(" ", 1)[1]


def batches(n: int, size: int = 8) -> list[list[int]]:
    order = [(i * 97 + 13) % n for i in range(n)]
    return [order[i : i + size] for i in range(0, n, size)][:30]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--delays", default="0,30")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-latency-")
    tl = f"lat-{uuid.uuid4().hex[:8]}"
    base = dict(backend="s3", memory_capacity=256 << 20, disk_capacity=4 << 30)
    FrameCache(cache_dir=os.path.join(tmp, "writer"), **base).cache_frames(
        tl, [Frame(i) for i in range(args.frames)]
    )
    rows = []
    for delay in [float(d) for d in args.delays.split(",")]:
        proxy, endpoint = start_proxy(delay)
        try:
            opts = dict(base, endpoint=endpoint)
            warm_dir = os.path.join(tmp, f"warm-{delay}")
            FrameCache(cache_dir=warm_dir, **opts).load_frames(tl)

            def dataset(cache_dir: str, window: float | None) -> FrameDataset:
                o = dict(opts, cache_dir=cache_dir)
                if window:
                    o["revalidate_after"] = window
                return FrameDataset.over_timelines({tl: range(args.frames)}, cache=o)

            def figures(state: str, cache_dir):
                yield "whole `load_frames(tl)`", lambda: FrameCache(
                    cache_dir=cache_dir(), **opts
                ).load_frames(tl)
                yield f"`load_frames(tl, seqs=range({args.frames}))`", lambda: FrameCache(
                    cache_dir=cache_dir(), **opts
                ).load_frames(tl, seqs=range(args.frames))
                for window in (None, 3600.0):

                    def run(window=window):
                        ds = dataset(cache_dir(), window)
                        for b in batches(args.frames):
                            ds.__getitems__(b)

                    label = "30 `FrameDataset` batches of 8" + (
                        ", window 3600 s" if window else ""
                    )
                    yield label, run

            for state in ("warm", "cold"):
                if state == "warm":
                    cache_dir = lambda: warm_dir  # noqa: E731
                else:
                    cache_dir = lambda: os.path.join(tmp, f"cold-{uuid.uuid4().hex}")  # noqa: E731
                for label, fn in figures(state, cache_dir):
                    times, counts = [], []
                    for _ in range(args.runs):
                        before = garage_requests()
                        t0 = time.perf_counter()
                        fn()
                        times.append(time.perf_counter() - t0)
                        counts.append(garage_requests() - before)
                    row = dict(
                        delay_ms=delay,
                        state=state,
                        figure=label,
                        seconds=round(statistics.median(times), 4),
                        requests=int(statistics.median(counts)),
                    )
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        finally:
            proxy.terminate()
            proxy.wait()
    print("\n| delay | state | figure | time | requests |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['delay_ms']:g} ms | {r['state']} | {r['figure']} | "
            f"{r['seconds'] * 1000:.0f} ms | {r['requests']} |"
        )


if __name__ == "__main__":
    main()
