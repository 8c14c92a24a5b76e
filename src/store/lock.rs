//! A store's lock files: the directory lock (`flock`ed shared to reserve, commit or
//! remove, exclusive to recount), opened once per process and shared by its threads, and
//! striped lock files (the fetch locks that let one process per machine download a missing
//! key while the others wait for its entry; the decoded tier's decode locks), all opened by
//! [`open_lock_file`]. How the store takes them is in `locking.rs`.
//!
//! All are `flock` locks, which the kernel releases when their holder exits, however it
//! exits: a killed process never leaves a stale lock behind. They are [`LockFile`]s, so a
//! forked child never keeps one, and every wait for them is bounded.

use crate::flock::LockKind;
use crate::flock::{Backoff, LockFile, Mode, Waited, fork_generation};
use crate::localfs::{self, How, Sharing};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// The lock file.
pub(super) const LOCK_FILE: &str = ".lock";
/// Directory of the fetch-lock files.
pub(super) const FETCH_LOCK_DIR: &str = ".fetch";
/// Fetch locks are striped: misses of keys in one stripe take turns, and the directory
/// holds at most this many lock files, never deleted (deleting a lock file others may be
/// waiting on would let two holders in).
pub(super) const FETCH_LOCK_STRIPES: u64 = 4096;

/// Opens (creating) a lock file, never through a link; read-only when it cannot be written
/// (a lock file of another user of the group, or a read-only directory). Every lock file of
/// the cache is opened here.
pub(crate) fn open_lock_file(
    kind: LockKind,
    path: &Path,
    sharing: Sharing,
) -> io::Result<LockFile> {
    LockFile::open(kind, || {
        localfs::open(path, How::ReadWriteCreate, sharing).or_else(|e| {
            if e.kind() == io::ErrorKind::InvalidInput {
                return Err(e);
            }
            localfs::open(path, How::Read, sharing)
        })
    })
}

/// A fixed set of lock files that keys share by their hash: created once and never removed,
/// so taking a key's lock creates no file (on a filesystem churned by deletes, creating and
/// unlinking a lock file per key showed in cold-load profiles as inode allocation). Two
/// keys of one stripe take turns; with a few dozen in flight on a machine, that is rare.
pub(crate) struct Stripes {
    dir: PathBuf,
    count: u64,
    sharing: Sharing,
    kind: LockKind,
}

impl Stripes {
    /// `count` stripes in `dir` (created on first use), locks of `kind`.
    pub(crate) fn new(dir: PathBuf, count: u64, sharing: Sharing, kind: LockKind) -> Self {
        Stripes {
            dir,
            count,
            sharing,
            kind,
        }
    }

    /// The lock file of `key`'s stripe (not opened).
    pub(crate) fn path(&self, key: &str) -> PathBuf {
        let hash = blake3::hash(key.as_bytes());
        let n = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
        self.dir.join(format!("{:03x}", n % self.count))
    }

    /// Opens the stripe lock file at `path` (see [`Stripes::path`]), creating the
    /// directory when it is missing.
    pub(crate) fn open(&self, path: &Path) -> io::Result<LockFile> {
        match open_lock_file(self.kind, path, self.sharing) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                localfs::create_dir_all(&self.dir, self.sharing)?;
                open_lock_file(self.kind, path, self.sharing)
            }
            other => other,
        }
    }
}

/// The directory lock of one store, its file opened once per process (per fork
/// generation) and shared by the process's threads: shared holders count in memory and
/// the kernel lock is taken by the first and let go by the last; an exclusive holder
/// excludes the process's other threads in memory as the kernel excludes other processes.
/// (A descriptor per hold cost two of a cold frame's opens in each tier.)
pub(super) struct DirLock {
    path: PathBuf,
    sharing: Sharing,
    /// This fork generation's state, a `Box` of this lock's (freed on drop; one inherited
    /// from a parent is left as it is, its mutex possibly held by a thread the fork left
    /// behind).
    current: AtomicPtr<DirState>,
}

struct DirState {
    generation: u64,
    file: OnceLock<LockFile>,
    held: Mutex<Held>,
    changed: Condvar,
}

#[derive(Default)]
struct Held {
    /// Threads holding the lock shared (the kernel lock is held shared while this is > 0).
    shared: usize,
    /// A thread holds it exclusively.
    exclusive: bool,
    /// A thread is taking the kernel lock (outside the mutex: a test gate may stop it there).
    taking: bool,
    /// Threads waiting to hold it exclusively: new shared holds wait behind them.
    exclusive_waiting: usize,
}

/// A hold of the directory lock; dropping it lets go.
pub(super) struct DirGuard<'a> {
    state: &'a DirState,
}

impl DirLock {
    pub(super) fn new(path: PathBuf, sharing: Sharing) -> Self {
        DirLock {
            path,
            sharing,
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This generation's state, made on first use.
    fn state(&self) -> &DirState {
        let generation = fork_generation();
        let seen = self.current.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here is a `Box<DirState>` leaked by this lock and freed
        // only in `drop`, which `&self` rules out.
        if let Some(state) = unsafe { seen.as_ref() }
            && state.generation == generation
        {
            return state;
        }
        let fresh = Box::into_raw(Box::new(DirState {
            generation,
            file: OnceLock::new(),
            held: Mutex::new(Held::default()),
            changed: Condvar::new(),
        }));
        match self
            .current
            .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: just published; freed only in `drop`. The state it replaced (an
            // inherited one) is leaked on purpose.
            Ok(_) => unsafe { &*fresh },
            Err(_) => {
                // SAFETY: `fresh` was never published: this thread still owns it.
                drop(unsafe { Box::from_raw(fresh) });
                self.state()
            }
        }
    }

    /// Takes the lock, waiting at most `bound`: `Ok(None)` when the bound passed.
    ///
    /// # Errors
    /// When the lock file cannot be opened or the filesystem refuses locks.
    pub(super) fn take(&self, mode: Mode, bound: Duration) -> io::Result<Option<DirGuard<'_>>> {
        let state = self.state();
        let file = match state.file.get() {
            Some(file) => file,
            None => {
                let opened = open_lock_file(LockKind::Directory, &self.path, self.sharing)?;
                let _ = state.file.set(opened);
                state.file.get().expect("set above")
            }
        };
        let exclusive = mode == Mode::Exclusive;
        let mut backoff = Backoff::new(bound);
        let mut held = state.held();
        if exclusive {
            held.exclusive_waiting += 1;
        }
        let taken = loop {
            let free = !held.exclusive && !held.taking;
            if free && !exclusive && held.shared > 0 && held.exclusive_waiting == 0 {
                held.shared += 1;
                break Ok(true);
            }
            if free && held.shared == 0 {
                held.taking = true;
                drop(held);
                let tried = file.lock_within(mode, backoff.left());
                held = state.held();
                held.taking = false;
                match tried {
                    Ok(Waited::Locked) if exclusive => held.exclusive = true,
                    Ok(Waited::Locked) => held.shared += 1,
                    Ok(Waited::TimedOut) => break Ok(false),
                    Err(e) => break Err(e),
                }
                break Ok(true);
            }
            let Some(pause) = backoff.next_pause() else {
                break Ok(false);
            };
            held = state
                .changed
                .wait_timeout(held, pause)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        if exclusive {
            held.exclusive_waiting -= 1;
        }
        drop(held);
        state.changed.notify_all();
        Ok(taken?.then_some(DirGuard { state }))
    }
}

impl DirState {
    fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for DirGuard<'_> {
    fn drop(&mut self) {
        let state = self.state;
        if state.generation != fork_generation() {
            return; // inherited: the fork handler already closed the child's copy
        }
        let mut held = state.held();
        if held.exclusive {
            held.exclusive = false;
        } else {
            held.shared = held.shared.saturating_sub(1);
        }
        if held.shared == 0
            && !held.exclusive
            && let Some(file) = state.file.get()
        {
            file.unlock();
        }
        drop(held);
        state.changed.notify_all();
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let state = *self.current.get_mut();
        // SAFETY: as in `state`; nothing else can reach it now.
        if let Some(state) = unsafe { state.as_ref() }
            && state.generation == fork_generation()
        {
            // SAFETY: this lock's own box, published once, dropped once here.
            drop(unsafe { Box::from_raw(std::ptr::from_ref(state).cast_mut()) });
        }
    }
}
