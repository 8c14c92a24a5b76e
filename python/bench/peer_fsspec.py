#!/usr/bin/env python3
"""A peer of framecache's ``load_cached_frames``: what a user might pick instead.

fsspec's ``simplecache`` over s3fs keeps each JPEG in a local directory after its first
download (no metadata, safe across processes); the listing always goes to S3. Pillow decodes
the JPEGs in a thread pool (it releases the GIL while decoding), one thread per core.

    peer_fsspec.py load TIMELINE CACHE_DIR     prints one JSON line: {"phase": "peer", ...}

Runs in a virtualenv of its own with fsspec, s3fs, pillow and numpy (no framecache).
S3 settings come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_BUCKET), as the Python module reads them.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time

start_import = time.perf_counter()
import fsspec  # noqa: E402
import numpy as np  # noqa: E402
import s3fs  # noqa: E402,F401  (fsspec imports it on first use: an import, not timed)
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from PIL import Image  # noqa: E402

IMPORT_S = time.perf_counter() - start_import


def filesystem(cache_dir: str):
    return fsspec.filesystem(
        "simplecache",
        target_protocol="s3",
        target_options={
            "endpoint_url": os.environ.get("AWS_ENDPOINT_URL") or None,
            "key": os.environ.get("AWS_ACCESS_KEY_ID"),
            "secret": os.environ.get("AWS_SECRET_ACCESS_KEY"),
            "client_kwargs": {"region_name": os.environ.get("AWS_REGION", "us-east-1")},
        },
        cache_storage=cache_dir,
    )


def decode(jpeg: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(jpeg))
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def load_cached_frames(fs, pool: ThreadPoolExecutor, timeline: str) -> list[tuple[int, np.ndarray]]:
    """The module's ``load_cached_frames``, as (seq, image) pairs sorted by seq."""
    bucket = os.environ.get("S3_BUCKET", "mpr")
    prefix = f"{bucket}/cache/timelines/{timeline}/frames/"
    paths = [p for p in fs.ls(prefix, detail=False) if p.endswith(".jpg")]
    blobs = fs.cat(paths)  # missing files fetched concurrently by s3fs, the rest read locally
    seqs = [int(p.rsplit("/", 1)[-1][: -len(".jpg")]) for p in paths]
    images = pool.map(decode, (blobs[p] for p in paths))
    return sorted(zip(seqs, images), key=lambda pair: pair[0])


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] != "load":
        raise SystemExit(__doc__)
    timeline, cache_dir = argv[1], argv[2]
    filled = os.path.isdir(cache_dir) and any(os.scandir(cache_dir))
    start = time.perf_counter()
    fs = filesystem(cache_dir)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        frames = load_cached_frames(fs, pool, timeline)
    took = time.perf_counter() - start
    checksum = sum(int(img[img.shape[0] // 2, img.shape[1] // 2].sum()) for _, img in frames)
    print(json.dumps({
        "phase": "peer", "first": "warm" if filled else "cold", "frames": len(frames),
        "s": took, "import_s": IMPORT_S, "checksum": checksum,
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
