"""The cache shared with a group (``share_group=``): its directories and files take the
group's modes; a group that does not exist is refused, naming it."""

from __future__ import annotations

import os
import stat
import uuid

import pytest
from conftest import seed_frames

from framecache import InvalidInputError


def modes(top: str) -> tuple[dict[str, int], dict[str, int]]:
    """The permission bits (setgid included) of every directory and file under ``top``."""
    dirs = {top: stat.S_IMODE(os.lstat(top).st_mode)}
    files = {}
    for here, subdirs, names in os.walk(top):
        for d in subdirs:
            path = os.path.join(here, d)
            dirs[path] = stat.S_IMODE(os.lstat(path).st_mode)
        for n in names:
            path = os.path.join(here, n)
            files[path] = stat.S_IMODE(os.lstat(path).st_mode)
    return dirs, files


def test_share_group_gives_the_cache_directory_the_groups_modes(backend, timeline):
    gid = os.getgid()
    backend.cache("writer").cache_frames(timeline, seed_frames(3))
    fc = backend.cache("shared", share_group=gid)
    assert len(fc.load_frames(timeline)) == 3
    assert fc.flush_raw_writes()
    cache_dir = backend.cache_kwargs("shared")["cache_dir"]
    dirs, files = modes(cache_dir)
    # Entries of both disk tiers, their ledgers and referenced bits were written.
    assert any(p.endswith(".recent") for p in files), sorted(files)
    assert any(os.sep + "decoded" + os.sep in p for p in files), sorted(files)
    assert {p: m for p, m in dirs.items() if m != 0o2770} == {}
    assert {p: m for p, m in files.items() if m != 0o660} == {}
    assert os.lstat(cache_dir).st_gid == gid
    # Without the keyword the cache stays private.
    private = backend.cache("private")
    private.load_frames(timeline)
    assert private.flush_raw_writes()
    dirs, files = modes(backend.cache_kwargs("private")["cache_dir"])
    assert set(dirs.values()) == {0o700}
    assert set(files.values()) == {0o600}


def test_an_unknown_share_group_is_refused_naming_it(backend):
    name = f"no-such-group-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InvalidInputError) as caught:
        backend.cache("bad", share_group=name)
    assert isinstance(caught.value, ValueError)
    assert caught.value.what == "share_group"
    assert caught.value.value == name
    assert name in str(caught.value)
