"""Shared fixtures: every backend test runs against the filesystem backend and against the
S3 server that ``scripts/test.sh`` starts (Garage), whose settings come from the
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ... as ``scripts/garage.sh`` writes
them). Without a server the S3 cases are skipped, and fail when ``CI`` is set.

``RawStore`` reads and writes objects directly (files under the fs root, or signed S3
requests), bypassing framecache, to stand for the Python module's side of the bucket.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass, field

import numpy as np
import pytest
from PIL import Image

from framecache import FrameCache, frames
from rawstore import FsStore, RawStore, S3Store

PREFIX = "cache/timelines"


@dataclass
class SeedFrame:
    """The Python module's ``Frame`` dataclass, field for field."""

    sequence: int
    chunk_id: int
    timestamp: float
    image: np.ndarray = field(repr=False)
    perceptual_hash: str = ""


def ci() -> bool:
    return os.environ.get("CI", "") not in ("", "false", "0")


def s3_configured() -> bool:
    return bool(os.environ.get("FRAMECACHE_TEST_S3")) and bool(os.environ.get("AWS_ENDPOINT_URL"))


def require_s3() -> None:
    if not s3_configured():
        if ci():
            pytest.fail("CI is set but no S3 server is configured: run scripts/test.sh")
        pytest.skip("S3 server not configured (run scripts/test.sh)")


@dataclass
class Backend:
    """One origin under test: how to build caches on it and how to reach it raw."""

    name: str
    raw: RawStore
    tmp: str
    root: str | None = None

    def cache(self, name: str = "a", **overrides) -> FrameCache:
        """A cache on this backend with its own disk directory (``name``)."""
        return FrameCache(**self.cache_kwargs(name, **overrides))

    def cache_kwargs(self, name: str = "a", **overrides) -> dict:
        """The ``FrameCache`` keywords of :meth:`cache`: plain data, for other processes."""
        kwargs = dict(
            cache_dir=os.path.join(self.tmp, f"disk-{name}"),
            memory_capacity=256 << 20,
            disk_capacity=1 << 30,
        )
        if self.name == "fs":
            kwargs.update(backend="fs", root=self.root)
        else:
            kwargs.update(
                backend="s3",
                bucket=os.environ.get("S3_BUCKET", "mpr"),
                endpoint=os.environ["AWS_ENDPOINT_URL"],
                region=os.environ.get("AWS_REGION", "us-east-1"),
                access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            )
        kwargs.update(overrides)
        return kwargs

    def env(self, name: str = "env") -> dict[str, str]:
        """Environment variables that configure the drop-in (and the CLI) for this backend."""
        env = dict(os.environ)
        env["FRAMECACHE_CACHE_DIR"] = os.path.join(self.tmp, f"disk-{name}")
        if self.name == "fs":
            env["FRAMECACHE_BACKEND"] = "fs"
            env["FRAMECACHE_ROOT"] = self.root or ""
        else:
            # The drop-in's default backend is S3, as the module's was.
            env.pop("FRAMECACHE_BACKEND", None)
        return env


@pytest.fixture(params=["fs", "s3"])
def backend(request, tmp_path) -> Backend:
    if request.param == "fs":
        root = str(tmp_path / "origin")
        os.makedirs(root)
        return Backend("fs", FsStore(root), str(tmp_path), root=root)
    require_s3()
    return Backend("s3", S3Store.from_env(), str(tmp_path))


@pytest.fixture
def dropin(backend):
    """The drop-in module, its process-wide cache pointed at the backend under test."""
    saved = frames._cache
    frames._cache = backend.cache("dropin")
    try:
        yield frames
    finally:
        frames._cache = saved


@pytest.fixture
def timeline() -> str:
    """A timeline id unique to the test, so tests sharing a bucket never collide."""
    return f"tl-{uuid.uuid4().hex[:12]}"


def synthetic_image(seq: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth, frame-dependent RGB image (JPEG keeps it close)."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[..., 0] = (x * 255 // max(width - 1, 1) + seq * 7) % 256
    image[..., 1] = (y * 255 // max(height - 1, 1) + seq * 13) % 256
    image[..., 2] = (seq * 37) % 256
    return image


def seed_frames(n: int, **kw) -> list[SeedFrame]:
    return [
        SeedFrame(
            sequence=i,
            chunk_id=100 + i // 4,
            timestamp=i / 25,
            image=synthetic_image(i, **kw),
            perceptual_hash=f"ph{i:04x}",
        )
        for i in range(n)
    ]


def pillow_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    """A JPEG as the Python module writes it."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def pillow_decode(data: bytes) -> np.ndarray:
    """A JPEG decoded as the Python module decodes it."""
    return np.array(Image.open(io.BytesIO(data)).convert("RGB"))


def png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(synthetic_image(seed, 8, 8)).save(buf, format="PNG")
    return buf.getvalue()


def close(a: np.ndarray, b: np.ndarray, tolerance: float = 6.0) -> bool:
    """Two decodings of one JPEG (or an image and its JPEG) agree within JPEG noise."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) <= tolerance


def frame_key(timeline: str, seq: int) -> str:
    return f"{PREFIX}/{timeline}/frames/{seq}.jpg"


def overlay_key(timeline: str, job: str, stage: str, seq: int, name: str) -> str:
    return f"{PREFIX}/{timeline}/overlays/{job}/{stage}/{seq}_{name}.png"
