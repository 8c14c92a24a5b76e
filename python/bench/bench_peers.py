#!/usr/bin/env python3
"""framecache against the Python frame cache module and an fsspec peer, each step a new
process; ``scripts/bench-peers.sh`` runs them in interleaved rounds on one S3 server and
computes every ratio from the medians.

Subcommands (one JSON line each):

    prepare STATE TIMELINE N W H    N synthetic W×H frames into STATE/frames.npy, and the
                                    timeline every load reads, written by the drop-in
    load TIMELINE CACHE_DIR         the drop-in's load_cached_frames in a new process: cold
                                    when CACHE_DIR is empty, warm when filled; then hot
    bytes TIMELINE CACHE_DIR        the JPEGs alone (``load_jpegs``), cold: what a cold load
                                    must fetch
    decode TIMELINE CACHE_DIR       the same JPEGs (read untimed from a warm CACHE_DIR) decoded
                                    on every core: framecache's decoder (an fs origin,
                                    decoded tiers off) and Pillow in threads
    write STATE TIMELINE CACHE_DIR  the drop-in's cache_frames of STATE's frames; then their
                                    encode alone on every core (``frames_to_b64``) and their
                                    upload alone (``cache_jpegs`` of the encoded JPEGs)
    export BIN TIMELINE CACHE_DIR OUT   ``framecache export`` as a new process, timed whole
    seed-load SEED TIMELINE         the module: load_cached_frames twice (it has no cache; its
                                    best counts) and load_cached_frames_b64 (its interpreter)
    seed-write SEED STATE TIMELINE  the module's cache_frames of STATE's frames (its interpreter)

S3 settings come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, S3_BUCKET, ...).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

started = time.perf_counter()


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def cpu_now() -> tuple[float, float]:
    """CPU seconds used so far by this process (every thread) and by the S3 server
    (``GARAGE_PID``, when set): on a machine whose cores the server shares, what a step
    costs in CPU says more than its time."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    server = 0.0
    pid = os.environ.get("GARAGE_PID")
    if pid:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own.ru_utime + own.ru_stime, server


def timed_cpu(fn, *args, **kwargs):
    """As `timed`, with the CPU seconds of this process and of the server during the call."""
    own0, server0 = cpu_now()
    took, out = timed(fn, *args, **kwargs)
    own1, server1 = cpu_now()
    return took, own1 - own0, server1 - server0, out


def checksum(images) -> int:
    """Touches every frame, as a caller would, and makes the loads comparable."""
    return sum(int(img[img.shape[0] // 2, img.shape[1] // 2].sum()) for img in images)


def frames_file(state: str) -> str:
    return os.path.join(state, "frames.npy")


def load_images(state: str):
    """The benchmark's frames, in memory (read before any timing)."""
    import numpy as np

    return np.load(frames_file(state))


def dropin_env(cache_dir: str) -> None:
    os.environ["FRAMECACHE_CACHE_DIR"] = cache_dir
    os.environ.setdefault("FRAMECACHE_BACKEND", "s3")


def import_dropin():
    took, _ = timed(__import__, "framecache.frames")
    from framecache import frames

    return took, frames


def prepare(state: str, timeline: str, n: int, width: int, height: int) -> dict:
    import numpy as np

    dropin_env(os.path.join(state, "prepare-disk"))
    import framecache
    from framecache import frames

    images = np.stack([framecache.synthetic_frame(s, width, height).image for s in range(n)])
    np.save(frames_file(state), images)
    made = [framecache.Frame(s, 0, s / 30.0, images[s]) for s in range(n)]
    took, count = timed(frames.cache_frames, timeline, made, replace=True)
    assert count == n
    return {"phase": "prepare", "frames": n, "width": width, "height": height, "cache_frames_s": took}


def load(timeline: str, cache_dir: str) -> dict:
    dropin_env(cache_dir)
    filled = os.path.isdir(cache_dir) and any(os.scandir(cache_dir))
    import_s, frames = import_dropin()
    first_s, first = timed(frames.load_cached_frames, timeline)
    stats = frames._fc().stats()
    hot_s, second = timed(frames.load_cached_frames, timeline)
    sums = checksum(f.image for f in first)
    assert len(first) == len(second) and sums == checksum(f.image for f in second)
    out = {
        "phase": "load", "first": "warm" if filled else "cold", "frames": len(first),
        "import_s": import_s, "s": first_s, "hot_s": hot_s, "checksum": sums,
        "decodes": stats.get("decodes"), "decoded_disk_hits": stats["decoded_disk"]["hits"],
    }
    if not filled:
        # A cold load writes its raw frames behind it; they must be on disk for the warm one.
        flush_s, flushed = timed(frames._fc().flush_raw_writes, 120.0)
        assert flushed
        out["flush_s"] = flush_s
    return out


def fetch_bytes(timeline: str, cache_dir: str) -> dict:
    dropin_env(cache_dir)
    assert not (os.path.isdir(cache_dir) and any(os.scandir(cache_dir))), "bytes must be cold"
    import framecache

    took, jpegs = timed(lambda: framecache.FrameCache().load_jpegs(timeline))
    return {"phase": "bytes", "frames": len(jpegs), "s": took,
            "bytes": sum(len(j["jpeg"]) for j in jpegs)}


def decode(timeline: str, cache_dir: str) -> dict:
    import io
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    import framecache

    jpegs = framecache.FrameCache(backend="s3", cache_dir=cache_dir).load_jpegs(timeline)
    assert all(j["source"] != "origin" for j in jpegs), "decode reads a warm disk"
    # An origin on the local filesystem (its files in the page cache once written), the
    # JPEGs also in the memory tier: every load decodes, as the decoded tiers are off.
    memory = framecache.FrameCache(
        backend="fs", root=cache_dir + "-origin", disk=False, memory_capacity=1 << 30,
        decoded_memory_capacity=0, decoded_disk_capacity=0,
    )
    memory.cache_jpegs(timeline, [{"seq": j["seq"], "jpeg": j["jpeg"]} for j in jpegs])
    runs = [timed(memory.load_frames, timeline)[0] for _ in range(3)]

    def pil(jpeg: bytes):
        image = Image.open(io.BytesIO(jpeg))
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        pillow = [timed(lambda: list(pool.map(pil, (j["jpeg"] for j in jpegs))))[0] for _ in range(3)]
    return {"phase": "decode", "frames": len(jpegs), "s": sorted(runs)[1],
            "pillow_s": sorted(pillow)[1], "decoder": "framecache"}


def write(state: str, timeline: str, cache_dir: str) -> dict:
    dropin_env(cache_dir)
    images = load_images(state)
    import_s, frames = import_dropin()
    import framecache

    made = [framecache.Frame(s, 0, s / 30.0, images[s]) for s in range(len(images))]
    took, cpu, server_cpu, count = timed_cpu(frames.cache_frames, timeline, made)
    assert count == len(made)
    # The two halves of a write alone: the encode on every core, the upload of its JPEGs.
    encode_s, encode_cpu, _, encoded = timed_cpu(framecache.frames_to_b64, made, 85)
    jpegs = [{"seq": e["seq"], "jpeg": base64.b64decode(e["jpeg_b64"])} for e in encoded]
    fc = framecache.FrameCache(cache_dir=cache_dir + "-jpegs")
    upload_s, upload_cpu, upload_server_cpu, uploaded = timed_cpu(
        fc.cache_jpegs, timeline + "-jpegs", jpegs
    )
    assert uploaded == len(made)
    fc.clear(timeline + "-jpegs")
    frames.clear_cache(timeline)
    return {"phase": "write", "frames": count, "import_s": import_s, "s": took,
            "cpu_s": cpu, "server_cpu_s": server_cpu,
            "encode_s": encode_s, "encode_cpu_s": encode_cpu,
            "upload_s": upload_s, "upload_cpu_s": upload_cpu,
            "upload_server_cpu_s": upload_server_cpu,
            "jpeg_bytes": sum(len(j["jpeg"]) for j in jpegs)}


def export(binary: str, timeline: str, cache_dir: str, out: str) -> dict:
    env = dict(os.environ, FRAMECACHE_CACHE_DIR=cache_dir, FRAMECACHE_BACKEND="s3")
    took, done = timed(subprocess.run, [binary, "export", timeline, out], env=env,
                       stdout=subprocess.DEVNULL)
    done.check_returncode()
    count = sum(1 for name in os.listdir(out) if name.endswith(".jpg"))
    return {"phase": "export", "frames": count, "s": took}


def seed_module(seed_dir: str):
    sys.path.insert(0, seed_dir)
    os.environ.setdefault("S3_ENDPOINT_URL", os.environ.get("AWS_ENDPOINT_URL", ""))
    took, _ = timed(__import__, "core.detect.checkpoint.frames")
    from core.detect.checkpoint import frames  # the module, as its users import it

    return took, frames


def seed_load(seed_dir: str, timeline: str) -> dict:
    import_s, frames = seed_module(seed_dir)
    first_s, first = timed(frames.load_cached_frames, timeline)
    second_s, second = timed(frames.load_cached_frames, timeline)
    b64_s, b64 = timed(frames.load_cached_frames_b64, timeline)
    assert len(first) == len(second) == len(b64)
    return {"phase": "seed-load", "frames": len(first), "import_s": import_s,
            "s": min(first_s, second_s), "first_s": first_s, "second_s": second_s,
            "b64_s": b64_s, "checksum": checksum(f.image for f in first)}


def seed_write(seed_dir: str, state: str, timeline: str) -> dict:
    images = load_images(state)
    import_s, frames = seed_module(seed_dir)
    from core.detect.models import Frame

    made = [Frame(sequence=s, chunk_id=0, timestamp=s / 30.0, image=images[s]) for s in range(len(images))]
    took, count = timed(frames.cache_frames, timeline, made)
    assert count == len(made)
    frames.clear_cache(timeline)
    return {"phase": "seed-write", "frames": count, "import_s": import_s, "s": took}


def main(argv: list[str]) -> None:
    command, a = argv[0], argv[1:]
    commands = {
        "prepare": lambda: prepare(a[0], a[1], int(a[2]), int(a[3]), int(a[4])),
        "load": lambda: load(a[0], a[1]),
        "bytes": lambda: fetch_bytes(a[0], a[1]),
        "decode": lambda: decode(a[0], a[1]),
        "write": lambda: write(a[0], a[1], a[2]),
        "export": lambda: export(a[0], a[1], a[2], a[3]),
        "seed-load": lambda: seed_load(a[0], a[1]),
        "seed-write": lambda: seed_write(a[0], a[1], a[2]),
    }
    if command not in commands:
        raise SystemExit(f"unknown command {command!r}\n{__doc__}")
    out = commands[command]()
    out["process_s"] = time.perf_counter() - started
    if not command.startswith("seed"):
        # Which build of the package ran (scripts/bench-peers.sh --variant).
        out["variant"] = os.environ.get("FRAMECACHE_BENCH_VARIANT", "framecache")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
