//! Lock files across a real `fork`, close-on-exec, and bounded waits.

use super::*;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn open(path: &Path) -> LockFile {
    LockFile::open(LockKind::Decode, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    })
    .unwrap()
}

/// Ends the child with `ok`'s verdict, never returning into the test harness.
pub(crate) fn exit_child(ok: impl FnOnce() -> bool) -> ! {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(ok)).unwrap_or(false);
    // SAFETY: ends the forked child at once.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// The child's exit code; kills it and returns `None` if it runs past `bound`.
pub(crate) fn wait_child(pid: libc::pid_t, bound: Duration) -> Option<i32> {
    let deadline = Instant::now() + bound;
    loop {
        let mut status = 0;
        // SAFETY: our own child; a valid out pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        if Instant::now() >= deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_child_forked_while_a_thread_holds_a_lock_does_not_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stripe");
    let (held_tx, held_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            let lock = open(&path);
            assert!(lock.try_lock(Mode::Exclusive).unwrap());
            held_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(60));
            drop(lock);
        })
    };
    held_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // `to_child` tells the child the parent let go; `to_parent` tells the parent the child
    // looked while the lock was still held.
    let (mut to_child, mut to_parent) = ([0; 2], [0; 2]);
    // SAFETY: valid two-descriptor arrays.
    unsafe {
        assert_eq!(libc::pipe(to_child.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(to_parent.as_mut_ptr()), 0);
    }
    let generation = fork_generation();
    // SAFETY: the child only runs `exit_child`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        exit_child(|| {
            // The parent's lock stands: closing the child's copy released nothing.
            let still_held = !open(&path).try_lock(Mode::Exclusive).unwrap();
            let mut byte = [0u8; 1];
            // SAFETY: one-byte transfers on our ends of the pipes. The read returns 0 if
            // the parent died.
            unsafe {
                libc::write(to_parent[1], [1u8].as_ptr().cast(), 1);
                libc::read(to_child[0], byte.as_mut_ptr().cast(), 1);
            }
            // Free now, although the child was forked while it was held: the child did
            // not keep it (an inherited copy would conflict with this new one).
            let free = open(&path).try_lock(Mode::Exclusive).unwrap();
            still_held
                && free
                && fork_generation() == generation + 1
                && inherited_locks_closed() >= 1
        });
    }
    let mut byte = [0u8; 1];
    // SAFETY: closes the parent's copy of the child's write end (so a dead child reads as
    // end of file), then waits for the child's one byte.
    unsafe {
        libc::close(to_parent[1]);
        libc::read(to_parent[0], byte.as_mut_ptr().cast(), 1);
    }
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    // The child is alive (it waits on the pipe) and must not hold the lock.
    let mine = open(&path);
    let free = mine.try_lock(Mode::Exclusive).unwrap();
    drop(mine);
    // SAFETY: writes one byte to the child, then closes the remaining ends.
    unsafe {
        libc::write(to_child[1], [1u8].as_ptr().cast(), 1);
        libc::close(to_child[0]);
        libc::close(to_child[1]);
        libc::close(to_parent[0]);
    }
    let status = wait_child(pid, Duration::from_secs(30));
    assert!(
        free,
        "the forked child kept the lock its parent's thread held"
    );
    assert_eq!(status, Some(0), "the child's view (None: it hung)");
    assert_eq!(fork_generation(), generation, "the parent is not a child");
}

#[test]
fn lock_files_are_closed_on_exec() {
    let dir = tempfile::tempdir().unwrap();
    let lock = open(&dir.path().join("l"));
    let fd = std::os::fd::AsRawFd::as_raw_fd(lock.file());
    // SAFETY: queries the flags of a descriptor we hold open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0);
}

#[test]
fn a_wait_gives_up_at_its_bound_and_shared_locks_share() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let holder = open(&path);
    assert_eq!(
        holder.lock_within(Mode::Exclusive, Duration::ZERO).unwrap(),
        Waited::Locked
    );
    let waiter = open(&path);
    assert_eq!(
        waiter
            .lock_within(Mode::Shared, Duration::from_millis(30))
            .unwrap(),
        Waited::TimedOut
    );
    drop(holder);
    assert_eq!(
        waiter.lock_within(Mode::Shared, Duration::ZERO).unwrap(),
        Waited::Locked
    );
    let other = open(&path);
    assert_eq!(
        other.lock_within(Mode::Shared, Duration::ZERO).unwrap(),
        Waited::Locked
    );
    // Handed over as a plain file, the lock is released.
    let _plain = other.into_file();
    drop(waiter);
    assert!(open(&path).try_lock(Mode::Exclusive).unwrap());
}

#[test]
fn backoff_doubles_up_to_its_cap_and_ends_at_the_bound() {
    let mut backoff = Backoff::new(Duration::from_secs(3600));
    let pauses: Vec<_> = (0..7).map(|_| backoff.next_pause().unwrap()).collect();
    assert_eq!(pauses[0], FIRST_POLL);
    assert_eq!(pauses[1], FIRST_POLL * 2);
    assert_eq!(*pauses.last().unwrap(), MAX_POLL);
    assert_eq!(Backoff::new(Duration::ZERO).next_pause(), None);
}
