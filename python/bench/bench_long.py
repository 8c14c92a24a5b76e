#!/usr/bin/env python3
"""Long timelines against short ones through the Python package, each figure in a new
process: the time to the first frame of ``iter_frames``, ``load_frame`` from the middle, and
``load_frames(tl, seqs=range(...))`` of 300 frames from the middle, cold (an empty disk
cache) and warm (a second process on the disk the cold one filled). The Python twin of
``benches/long_timeline.rs``; both write and read the same timelines.

    bench_long.py [--long 100000] [--short 1000] [--runs 3] [--root DIR]

The origin is S3 when ``AWS_ENDPOINT_URL`` is set (``scripts/garage.sh start DIR`` and
``source DIR/env``), else the fs directory ``--root``. With ``GARAGE_METRICS_URL`` set, the
requests each figure made at the server are counted from Garage's own metrics. A timeline
the origin already holds complete (from an earlier run of either benchmark) is reused.
Prints one line per figure and a JSON line with everything.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

RANGE = 300


def backend_kwargs(root: str | None) -> dict:
    if os.environ.get("AWS_ENDPOINT_URL"):
        return {"backend": "s3"}
    return {"backend": "fs", "root": root}


def ensure(kwargs: dict, timeline: str, n: int) -> None:
    """Writes ``n`` tiny frames unless the origin already holds them complete."""
    import framecache

    fc = framecache.FrameCache(disk=False, concurrency=64, **kwargs)
    status = fc.status(timeline)
    if status.get("state") == "complete" and status.get("frames") == n:
        return
    start = time.perf_counter()
    jpegs = [
        base64.b64decode(f["jpeg_b64"])
        for f in framecache.frames_to_b64([framecache.synthetic_frame(v, 16, 16) for v in range(16)], 80)
    ]
    frames = ({"seq": seq, "jpeg": jpegs[seq % 16], "timestamp": seq / 30.0} for seq in range(n))
    assert fc.cache_jpegs(timeline, frames) == n
    print(f"  wrote {timeline} ({n} frames) in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def child(what: str, timeline: str, n: int, disk: str, kwargs: dict) -> dict:
    """One figure in this (new) process: seconds from the handle's creation."""
    start = time.perf_counter()
    import framecache

    imported = time.perf_counter() - start
    start = time.perf_counter()
    fc = framecache.FrameCache(cache_dir=disk, **kwargs)
    mid = n // 2
    if what == "first":
        frame = next(iter(fc.iter_frames(timeline)))
        assert frame.sequence == 0
    elif what == "middle":
        assert fc.load_frame(timeline, mid) is not None
    elif what == "range":
        seqs = range(mid - RANGE // 2, mid + RANGE // 2)
        frames = fc.load_frames(timeline, seqs=seqs)
        assert [f.sequence for f in frames] == list(seqs)
    else:
        raise SystemExit(f"unknown figure {what}")
    return {"secs": time.perf_counter() - start, "import": imported}


def garage_counts() -> dict[str, int]:
    url = os.environ.get("GARAGE_METRICS_URL")
    if not url:
        return {}
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    counts: dict[str, int] = {}
    for m in re.finditer(r'^api_s3_request_counter\{api_endpoint="(\w+)"\} (\d+)', text, re.M):
        counts[m.group(1)] = int(m.group(2))
    return counts


def in_child(what: str, timeline: str, n: int, disk: str, kwargs: dict) -> dict:
    before = garage_counts()
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, timeline, str(n), disk, json.dumps(kwargs)],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{what} on {timeline} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = wall
    after = garage_counts()
    result["requests"] = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    return result


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what, timeline, n, disk, kwargs = sys.argv[2:7]
        print(json.dumps(child(what, timeline, int(n), disk, json.loads(kwargs))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--long", type=int, default=100_000)
    parser.add_argument("--short", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--root", default=None, help="fs origin (kept between runs)")
    args = parser.parse_args()
    kwargs = backend_kwargs(args.root)
    if kwargs["backend"] == "fs" and not args.root:
        raise SystemExit("--root DIR is needed without AWS_ENDPOINT_URL")
    short, long = args.short, args.long
    tl = {short: f"bench-long-{short}", long: f"bench-long-{long}"}
    for n, name in tl.items():
        ensure(kwargs, name, n)
    scratch = tempfile.mkdtemp(prefix="fc-bench-long-")
    report = {"backend": kwargs["backend"], "short": short, "long": long, "runs": args.runs, "figures": {}}
    print(f"{kwargs['backend']}: {long} frames against {short}, new process each, median of {args.runs}")
    k = 0
    try:
        for what in ["first", "middle", "range cold", "range warm"]:
            secs: dict[int, list[float]] = {short: [], long: []}
            process: dict[int, list[float]] = {short: [], long: []}
            requests: dict[int, dict] = {}
            for _ in range(args.runs):
                for n in (short, long):
                    k += 1
                    disk = os.path.join(scratch, f"disk-{k}")
                    if what == "range warm":
                        in_child("range", tl[n], n, disk, kwargs)
                        r = in_child("range", tl[n], n, disk, kwargs)
                    elif what == "range cold":
                        r = in_child("range", tl[n], n, disk, kwargs)
                    else:
                        r = in_child(what, tl[n], n, disk, kwargs)
                    shutil.rmtree(disk, ignore_errors=True)
                    secs[n].append(r["secs"])
                    process[n].append(r["process"])
                    requests[n] = r["requests"]
            s, l = median(secs[short]), median(secs[long])
            ps, pl = median(process[short]), median(process[long])
            report["figures"][what] = {
                "short_s": s,
                "long_s": l,
                "ratio": l / s,
                "short_process_s": ps,
                "long_process_s": pl,
                "process_ratio": pl / ps,
                "short_requests": requests[short],
                "long_requests": requests[long],
            }
            print(
                f"  {what:<11} {short:>7}: {s * 1e3:>8.1f} ms  {long:>7}: {l * 1e3:>8.1f} ms  "
                f"ratio {l / s:.2f}x   (whole process {ps * 1e3:.0f} / {pl * 1e3:.0f} ms, {pl / ps:.2f}x)"
            )
            if requests[short] or requests[long]:
                print(f"              requests {short}: {requests[short]}  {long}: {requests[long]}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
