"""The core's log events reach :mod:`logging`: logger ``framecache`` and its children by
Rust module, levels mapped, nothing queued for levels Python would drop, delivered before
the call that caused them returns; an interpreter exits while native threads log."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap

import pytest
from conftest import seed_frames

from framecache import FrameCache, _native

FRAMES_DIR = "cache/timelines/{}/frames"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_on_a_failing_origin(backend, name: str) -> FrameCache:
    """A cache with disk directory `name` on the backend's origin, now failing: the fs root
    moved away and a plain file left in its place, or an S3 endpoint on a closed port."""
    if backend.name == "fs":
        fc = backend.cache(name)
        os.rename(backend.root, backend.root + ".away")
        with open(backend.root, "wb") as f:
            f.write(b"not a directory")
        return fc
    return FrameCache(
        **backend.cache_kwargs(
            name, endpoint=f"http://127.0.0.1:{closed_port()}", retries=0, origin_timeout=10.0
        )
    )


def framecache_records(caplog, level: int | None = None) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if (r.name == "framecache" or r.name.startswith("framecache."))
        and (level is None or r.levelno == level)
    ]


def test_an_offline_load_logs_a_warning(backend, timeline, caplog):
    caplog.set_level(logging.WARNING, logger="framecache")
    fc = backend.cache("box")
    fc.cache_frames(timeline, seed_frames(3))
    assert len(fc.load_frames(timeline)) == 3
    assert framecache_records(caplog) == []

    offline = cache_on_a_failing_origin(backend, "box")
    assert len(offline.load_frames(timeline)) == 3
    assert offline.stats()["offline_loads"] >= 1
    # Delivered before load_frames returned: no flush needed.
    warnings = framecache_records(caplog, logging.WARNING)
    assert warnings, caplog.text
    record = warnings[0]
    assert record.name.startswith("framecache.timeline"), record.name
    assert "origin failed" in record.getMessage() and timeline in record.getMessage()
    assert record.levelname == "WARNING"
    assert record.pathname.endswith(".rs") and record.lineno > 0
    if backend.name == "s3":
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in caplog.text


def test_an_unreadable_manifest_logs_a_warning(backend, timeline, caplog):
    caplog.set_level(logging.WARNING, logger="framecache")
    fc = backend.cache()
    fc.cache_frames(timeline, seed_frames(2))
    key = f"{FRAMES_DIR.format(timeline)}/manifest.json"
    backend.raw.put(key, b"{not json")
    frames = backend.cache("other").load_frames(timeline)
    assert [f.timestamp for f in frames] == [0.0, 0.0]
    warnings = framecache_records(caplog, logging.WARNING)
    assert any(
        key in r.getMessage() and "unreadable manifest" in r.getMessage() for r in warnings
    ), caplog.text
    assert all(r.name.startswith("framecache.") for r in warnings)


def test_levels_follow_the_logging_configuration(tmp_path, timeline, caplog):
    """Debug events (here: one per object of a listing whose name is not a frame's) reach
    `logging` only while a framecache logger is at DEBUG; at WARNING they are never queued."""
    root = tmp_path / "origin"
    fc = FrameCache(backend="fs", root=str(root), cache_dir=str(tmp_path / "disk"))
    fc.cache_frames(timeline, seed_frames(2))
    frames_dir = root / FRAMES_DIR.format(timeline)
    for name in ("notes.txt", "thumbs.db", "frame-x.jpg"):
        (frames_dir / name).write_bytes(b"x")

    caplog.set_level(logging.WARNING, logger="framecache")
    assert _native._log_threshold() == logging.WARNING
    queued = _native._log_counters()["queued"]
    assert len(fc.list_frames(timeline)) == 2
    assert _native._log_counters()["queued"] == queued, "a debug event was queued at WARNING"
    assert framecache_records(caplog) == []

    # A child logger at DEBUG lowers the threshold for everyone, and only its records pass.
    caplog.set_level(logging.DEBUG, logger="framecache.timeline.index")
    assert _native._log_threshold() == logging.DEBUG
    assert len(fc.list_frames(timeline)) == 2
    skipped = [r for r in framecache_records(caplog, logging.DEBUG) if "not a canonical frame name" in r.getMessage()]
    assert sorted(r.getMessage().split('"')[1].rsplit("/", 1)[1] for r in skipped) == [
        "frame-x.jpg",
        "notes.txt",
        "thumbs.db",
    ]
    assert {r.name for r in skipped} == {"framecache.timeline.index"}
    assert _native._log_counters()["waiting"] == 0

    # logging.disable() raises it again.
    logging.disable(logging.CRITICAL)
    try:
        assert _native._log_threshold() > logging.CRITICAL
        before = _native._log_counters()["queued"]
        fc.list_frames(timeline)
        assert _native._log_counters()["queued"] == before
    finally:
        logging.disable(logging.NOTSET)
    assert _native._log_threshold() == logging.DEBUG


def test_the_interpreter_exits_while_native_threads_log(tmp_path, timeline):
    """Threads keep loading (each load logs from the runtime's threads) while the main
    thread returns: the interpreter finalizes, neither hanging nor crashing."""
    root = tmp_path / "origin"
    FrameCache(backend="fs", root=str(root), cache_dir=str(tmp_path / "w")).cache_frames(
        timeline, seed_frames(2)
    )
    frames_dir = root / FRAMES_DIR.format(timeline)
    for i in range(200):
        (frames_dir / f"junk-{i}.txt").write_bytes(b"x")
    script = textwrap.dedent(
        f"""
        import logging, threading
        from framecache import FrameCache
        logging.basicConfig(level=logging.DEBUG)
        fc = FrameCache(backend="fs", root={str(root)!r}, cache_dir={str(tmp_path / "disk")!r})
        started = threading.Barrier(5)
        def loop():
            started.wait()
            while True:
                fc.list_frames({timeline!r})
        for _ in range(4):
            threading.Thread(target=loop, daemon=True).start()
        started.wait()
        fc.list_frames({timeline!r})
        print("main done", flush=True)
        """
    )
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "main done" in proc.stdout
        assert "not a canonical frame name" in proc.stderr
