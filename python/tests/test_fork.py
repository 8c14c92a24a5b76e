"""Forking in the middle of a cold load, as PyTorch's DataLoader, gunicorn and Celery do.

Two scenarios, each over several rounds. In the first, a thread of the parent holds one of
the disk cache's locks while the process forks workers with ``os.fork`` or
``multiprocessing`` (fork context): another process holds a cache directory's lock
(``fcntl.flock``, as any process of the machine may), so the parent's load stops in the
middle, its thread holding a key's fetch lock (or a frame's decode lock) while it waits to
write the entry; the process forks once ``/proc/locks`` shows the parent holding that lock,
without sleeps and without a hook in the wheel. Each worker opens its own cache on the same
directory and loads the whole timeline, after taking the very lock the parent's thread held
at the fork (released by then). The fork at a held directory lock itself, and every lock
kind, are covered in Rust (``tests/locks.rs``, with the ``test-hooks`` lock gate). In the second, nothing is stopped: a cold ``iter_frames`` with default
settings streams in a thread while the process forks four workers, each of which loads the
timeline through a cache of its own and through the cache it inherited.

A third scenario forks while the parent's threads log: the core's debug events, emitted on
the runtime's threads and delivered to ``logging`` by the threads that called and by the main
thread, keep flowing; each worker logs through ``logging`` too, its own events only.

Every worker and the parent's load must finish. Each scenario runs in an interpreter of its
own (this file run as a script): a deadlock that holds the interpreter's lock stops every
timeout of the process it happens in, so the test process only watches, and kills the
scenario's whole process group once it has run ``BOUND`` seconds; the scenario's
``faulthandler`` prints every thread's stack first, so a hang fails with where it hung and
never hangs the suite."""

from __future__ import annotations

import faulthandler
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import seed_frames

from framecache import FrameCache, _native

FRAMES = 120
# Workers forked per round: at a held lock, and during a cold iteration (as many as a
# DataLoader's usual num_workers).
WORKERS = 3
COLD_WORKERS = 4
ROUNDS = 2
# One wait inside a scenario (a worker, the parent's load, the gate).
HANG = 60.0
# A whole scenario, all rounds: the test process kills it past this.
BOUND = 300.0


def digest(loaded) -> str:
    h = hashlib.sha256()
    for f in loaded:
        h.update(f"{f.sequence}:{f.chunk_id}:{f.timestamp}:{f.perceptual_hash}".encode())
        h.update(np.ascontiguousarray(f.image).tobytes())
    return h.hexdigest()


def settings(root: str, cache_dir: str) -> dict:
    return dict(
        backend="fs",
        root=root,
        cache_dir=cache_dir,
        memory_capacity=64 << 20,
        disk_capacity=1 << 30,
        concurrency=4,
        # Far above HANG: a test passes only if nobody waited for an inherited lock, never
        # because a wait gave up.
        lock_wait=600.0,
    )


# Per kind of lock the parent's thread is stopped holding: the directory (under the cache
# directory) whose lock another process holds, and the directory of the lock files the
# parent's thread then holds while it waits for that lock.
STOPS = {
    # The JPEG disk tier's lock: a fetch waits to write its entry, holding the key's fetch
    # lock (and, loading through the decoded tiers, the frame's decode lock).
    "fetch": ("v1", os.path.join("v1", ".fetch")),
    # The decoded disk tier's lock: the raw frame writer waits to write, holding the frame's
    # decode lock.
    "decode": (os.path.join("decoded", "v1"), os.path.join("decoded", "locks")),
}


class Blocker:
    """Another process holding ``{dir}/.lock`` exclusively, as the cache's recount does,
    until :meth:`release` kills it (the kernel then drops its lock)."""

    def __init__(self, directory: str) -> None:
        # The cache creates its lock file when it opens (its evictor takes it): one that
        # never appears means the layout moved and this test must follow.
        path = os.path.join(directory, ".lock")
        deadline = time.monotonic() + HANG
        while not os.path.exists(path):
            assert time.monotonic() < deadline, f"no lock file {path}"
            time.sleep(0.01)
        code = (
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(3600)\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, path],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()


def flock_held_by(pid: int, directory: str) -> str | None:
    """A lock file under ``directory`` that process ``pid`` holds a ``flock`` on, as
    ``/proc/locks`` tells, or None. Matched by inode alone: on an overlay filesystem the
    device ``/proc/locks`` names is the layer's, not the one ``stat`` reports."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return None
    inodes = {}
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        inodes[st.st_ino] = path
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields:  # a waiter, not a holder
                continue
            if len(fields) < 6 or fields[1] != "FLOCK" or fields[4] != str(pid):
                continue
            found = inodes.get(int(fields[5].rsplit(":", 1)[1]))
            if found:
                return found
    return None


def wait_held(pid: int, directory: str, timeout: float) -> str | None:
    """Polls ``/proc/locks`` until ``pid`` holds a lock under ``directory``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = flock_held_by(pid, directory)
        if held:
            return held
        time.sleep(0.005)
    return None


def lock_comes_free(path: str, deadline: float) -> bool:
    """Takes (then releases) an exclusive lock on ``path`` from a descriptor of our own: the
    lock the parent's thread held at the fork comes free once the parent lets go, whatever
    this process inherited."""
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
    finally:
        os.close(fd)


def gated_work(kwargs: dict, timeline: str, expected: str, held: str) -> int:
    """A worker forked while a lock was held: the lock its parent's thread held, then its
    own cache on the shared directory and the whole timeline, twice."""
    if not lock_comes_free(held, time.monotonic() + HANG):
        print(f"worker: {held} stayed locked", file=sys.stderr)
        return 4
    fc = FrameCache(**kwargs)
    loaded = digest(fc.load_frames(timeline))
    iterated = digest(list(fc.iter_frames(timeline)))
    if not loaded == iterated == expected:
        return 3
    stats = fc.stats()
    timeouts = stats["decode_lock_timeouts"] + stats["fetch_lock_timeouts"] + stats["dir_lock_timeouts"]
    return 0 if timeouts == 0 and stats["inherited_locks_closed"] >= 1 else 5


def cold_work(kwargs: dict, timeline: str, expected: str, inherited: FrameCache) -> int:
    """A worker forked during a cold iteration: the timeline through a cache of its own,
    then through the one it inherited (rebuilt for this process on first use)."""
    own = digest(FrameCache(**kwargs).load_frames(timeline))
    theirs = digest(inherited.load_frames(timeline))
    return 0 if own == theirs == expected else 3


def start_workers(how: str, count: int, work, args: tuple) -> list:
    """``count`` processes forked now, each running ``work(*args)`` and exiting with what it
    returns (2 when it raises)."""

    def run() -> None:
        code = 1
        try:
            code = work(*args)
        except BaseException:  # noqa: BLE001 - the parent sees the status
            import traceback

            traceback.print_exc()
            code = 2
        finally:
            sys.stderr.flush()
            os._exit(code)

    with warnings.catch_warnings():
        # Python >= 3.12 warns when a process with threads forks: that is the point here.
        warnings.simplefilter("ignore", DeprecationWarning)
        if how == "os.fork":
            pids = []
            for _ in range(count):
                pid = os.fork()
                if pid == 0:
                    run()
                pids.append(pid)
            return pids
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=run) for _ in range(count)]
        for p in workers:
            p.start()
        return workers


def dump_stacks(pid: int) -> None:
    """Prints to stderr where a worker still running at its deadline is: every native
    thread's stack (gdb, when installed), else what the kernel shows of each thread; then
    its Python threads' stacks, which the worker's own faulthandler prints on SIGUSR1 (set up
    by the scenario, inherited through the fork)."""
    print(f"worker {pid} still running at its deadline; its stacks:", file=sys.stderr, flush=True)
    gdb = shutil.which("gdb")
    shown = False
    if gdb:
        try:
            out = subprocess.run(
                [gdb, "-batch", "-nx", "-p", str(pid), "-ex", "thread apply all bt"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
            )
            text = out.stdout + out.stderr
            shown = "Thread " in text or "#0 " in text
            print(text, file=sys.stderr, flush=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"(gdb: {e})", file=sys.stderr, flush=True)
    if not shown:
        task = f"/proc/{pid}/task"
        for tid in sorted(os.listdir(task)) if os.path.isdir(task) else []:
            parts = []
            for what in ("comm", "wchan", "syscall", "stack"):
                try:
                    with open(f"{task}/{tid}/{what}") as f:
                        parts.append(f"{what}: {f.read().strip()}")
                except OSError as e:
                    parts.append(f"{what}: ({e})")
            print(f"--- thread {tid}\n" + "\n".join(parts), file=sys.stderr, flush=True)
    try:
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1.0)
    except ProcessLookupError:
        pass


def join_workers(workers: list, deadline: float) -> list[int | None]:
    """Each worker's exit code, None for one still running at the deadline (its stacks are
    printed, then it is killed)."""
    codes: list[int | None] = []
    for w in workers:
        if isinstance(w, int):
            while True:
                done, status = os.waitpid(w, os.WNOHANG)
                if done:
                    codes.append(os.waitstatus_to_exitcode(status))
                    break
                if time.monotonic() > deadline:
                    dump_stacks(w)
                    os.kill(w, signal.SIGKILL)
                    os.waitpid(w, 0)
                    codes.append(None)
                    break
                time.sleep(0.05)
        else:
            w.join(max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                dump_stacks(w.pid)
                w.kill()
                w.join()
                codes.append(None)
            else:
                codes.append(w.exitcode)
    return codes


def gated(root: str, name: str, expected: str, base: str, kind: str, how: str, call: str) -> None:
    for round_ in range(ROUNDS):
        box = os.path.join(base, f"box-{round_}")
        kwargs = settings(root, box)
        parent = FrameCache(**kwargs)
        result: list[str] = []
        # Another process takes the directory lock before the load starts (a load that ran
        # ahead could otherwise be done before it holds the lock): the parent's load then
        # stops at it, its thread holding a lock of this kind.
        locked, holding = STOPS[kind]
        blocker = Blocker(os.path.join(box, locked))

        def load() -> None:
            if call == "load_frames":
                result.append(digest(parent.load_frames(name)))
            else:
                result.append(digest(list(parent.iter_frames(name))))

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            held = wait_held(os.getpid(), os.path.join(box, holding), HANG)
            assert held, f"round {round_}: no {kind} lock was held"
            workers = start_workers(how, WORKERS, gated_work, (kwargs, name, expected, held))
        finally:
            blocker.release()
        deadline = time.monotonic() + HANG
        codes = join_workers(workers, deadline)
        assert codes == [0] * WORKERS, (
            f"round {round_}: workers forked while a {kind} lock was held: {codes} "
            "(None: still running after the bound)"
        )
        loader.join(max(0.0, deadline - time.monotonic()))
        assert not loader.is_alive(), f"round {round_}: the parent's {call} hung"
        assert result == [expected]


def cold(root: str, name: str, expected: str, base: str, how: str, rounds: int) -> None:
    for round_ in range(rounds):
        kwargs = dict(backend="fs", root=root, cache_dir=os.path.join(base, f"box-{round_}"))
        parent = FrameCache(**kwargs)
        it = parent.iter_frames(name)
        first = [next(it) for _ in range(3)]
        streaming = threading.Event()
        result: list[str] = []

        def load() -> None:
            loaded = list(first)
            for frame in it:
                loaded.append(frame)
                if len(loaded) == 8:
                    streaming.set()
            streaming.set()
            result.append(digest(loaded))

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        assert streaming.wait(HANG), f"round {round_}: the iteration never got going"
        workers = start_workers(how, COLD_WORKERS, cold_work, (kwargs, name, expected, parent))
        deadline = time.monotonic() + HANG
        codes = join_workers(workers, deadline)
        assert codes == [0] * COLD_WORKERS, (
            f"round {round_}: workers forked during a cold iteration: {codes} "
            "(None: still running after the bound)"
        )
        loader.join(max(0.0, deadline - time.monotonic()))
        assert not loader.is_alive(), f"round {round_}: the parent's iteration hung"
        assert result == [expected]


class Collect(logging.Handler):
    """Keeps the messages of framecache's "not a canonical frame name" debug events."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.flowing = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "not a canonical frame name" in message:
            self.messages.append(message)
            self.flowing.set()


def logging_work(kwargs: dict, timeline: str, junk: int, collect: Collect, inherited: FrameCache) -> int:
    """A worker forked while its parent's threads logged: each listing's debug events (one
    per junk name) reach its logging, through a cache of its own and the one it inherited."""
    collect.messages.clear()
    for fc in (FrameCache(**kwargs), inherited):
        before = len(collect.messages)
        if len(fc.list_frames(timeline)) != 2:
            return 3
        if len(collect.messages) - before != junk:
            print(f"worker: {len(collect.messages) - before} of {junk} records", file=sys.stderr)
            return 4
    return 0 if _native._log_counters()["dropped"] == 0 else 5


def logging_during_fork(root: str, name: str, junk: int, base: str, how: str, rounds: int) -> None:
    collect = Collect()
    logger = logging.getLogger("framecache")
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    for round_ in range(rounds):
        kwargs = dict(backend="fs", root=root, cache_dir=os.path.join(base, f"box-{round_}"))
        parent = FrameCache(**kwargs)
        stop = threading.Event()
        listed: list[int] = []

        def lister() -> None:
            while not stop.is_set():
                listed.append(len(parent.list_frames(name)))

        # Two threads deliver their own events; a daemon thread leaves its to the main thread.
        threads = [threading.Thread(target=lister, daemon=d) for d in (False, False, True)]
        for t in threads:
            t.start()
        assert collect.flowing.wait(HANG), f"round {round_}: no record reached logging"
        workers = start_workers(how, COLD_WORKERS, logging_work, (kwargs, name, junk, collect, parent))
        deadline = time.monotonic() + HANG
        codes = join_workers(workers, deadline)
        assert codes == [0] * COLD_WORKERS, (
            f"round {round_}: workers forked while threads logged: {codes} "
            "(None: still running after the bound)"
        )
        stop.set()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            assert not t.is_alive(), f"round {round_}: a listing thread hung"
        _native._flush_logs()
        assert listed and set(listed) == {2}
        # Every origin listing's events arrived whole (concurrent listings may be shared).
        got = len(collect.messages)
        assert got % junk == 0 and 0 < got <= junk * len(listed), (got, junk, len(listed))
        assert _native._log_counters()["dropped"] == 0
        collect.messages.clear()


def run_scenario(scenario: str, **args) -> None:
    """Runs ``scenario(**args)`` in an interpreter of its own; fails with its output when it
    fails or is still running after BOUND seconds (its process group is killed then)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, json.dumps({"scenario": scenario, **args})],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=BOUND + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{scenario}{args}: still running after {BOUND + 30:.0f} s:\n{out[-12000:]}")
    finally:
        try:
            # Workers of a scenario that exited early must not outlive the test.
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"{scenario}{args}: exit {proc.returncode}:\n{out[-12000:]}"


@pytest.fixture(scope="module")
def timeline(tmp_path_factory):
    """A timeline of FRAMES frames on an fs origin, and the digest of its frames."""
    tmp = tmp_path_factory.mktemp("fork")
    root = str(tmp / "origin")
    os.makedirs(root)
    name = "tl-fork"
    writer = FrameCache(backend="fs", root=root, cache_dir=str(tmp / "writer"))
    writer.cache_frames(name, seed_frames(FRAMES))
    reference = FrameCache(backend="fs", root=root, cache_dir=str(tmp / "reference"))
    return root, name, digest(reference.load_frames(name))


@pytest.mark.parametrize("call", ["load_frames", "iter_frames"])
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
@pytest.mark.parametrize("kind", sorted(STOPS))
def test_workers_forked_while_a_lock_is_held_finish(tmp_path, timeline, kind, how, call):
    root, name, expected = timeline
    run_scenario("gated", root=root, name=name, expected=expected, base=str(tmp_path), kind=kind, how=how, call=call)


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_workers_forked_during_a_cold_iteration_finish(tmp_path, timeline, how):
    root, name, expected = timeline
    run_scenario("cold", root=root, name=name, expected=expected, base=str(tmp_path), how=how, rounds=ROUNDS)


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_workers_forked_while_threads_log_finish(tmp_path, how):
    root = str(tmp_path / "origin")
    name, junk = "tl-logs", 40
    FrameCache(backend="fs", root=root, cache_dir=str(tmp_path / "writer")).cache_frames(name, seed_frames(2))
    frames_dir = os.path.join(root, "cache", "timelines", name, "frames")
    for i in range(junk):
        with open(os.path.join(frames_dir, f"junk-{i}.txt"), "wb") as f:
            f.write(b"x")
    run_scenario("logging", root=root, name=name, junk=junk, base=str(tmp_path), how=how, rounds=ROUNDS)


if __name__ == "__main__":
    # A scenario in a process of its own (see run_scenario). Past BOUND, every thread's
    # stack is printed and the process exits: faulthandler's watchdog needs no interpreter
    # lock, so it works even when a deadlock holds it.
    args = json.loads(sys.argv[1])
    faulthandler.dump_traceback_later(BOUND, exit=True)
    # A worker that hangs prints its Python stacks on SIGUSR1 (see dump_stacks).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    scenario = {"gated": gated, "cold": cold, "logging": logging_during_fork}[args.pop("scenario")]
    scenario(**args)
