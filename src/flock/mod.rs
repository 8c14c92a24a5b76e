//! Kernel file locks (`flock`) that a fork never leaves held and no waiter waits on without
//! a bound: the decode stripe locks, the fetch locks, the disk tier directory's lock and
//! writers' temp-file locks all go through [`LockFile`].
//!
//! Two rules, stated in `docs/design.md`:
//! - Every lock file is recorded from the moment it is opened until it is closed, and a
//!   forked child closes its copies of all of them in the fork itself (a `pthread_atfork`
//!   child handler, see the `fork` module), so a child never holds a lock its parent's threads took.
//! - Every wait polls with backoff up to a bound (the `lock_wait` setting); past
//!   it the waiter goes on without the lock and the caller counts it. Everything done
//!   under these locks stays correct without them (entries are written to a temp file and
//!   linked into place); the locks only save duplicate work and keep the ledger exact.

#[cfg(unix)]
mod fork;
#[cfg(not(unix))]
mod fork {
    //! Without `fork`, nothing to record.
    use std::fs::File;

    pub(super) fn generation() -> u64 {
        0
    }

    pub(super) fn inherited_locks_closed() -> u64 {
        0
    }

    pub(super) fn register(open: impl FnOnce() -> std::io::Result<File>) -> std::io::Result<File> {
        open()
    }

    pub(super) fn unregister<T>(file: File, then: impl FnOnce(File) -> T) -> T {
        then(file)
    }
}
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod gate;
mod kind;

pub use kind::LockKind;

use std::fs::{File, TryLockError};
use std::io;
use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

/// The default bound of a lock wait (the `lock_wait` setting).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);

/// First pause between two tries of a busy lock; pauses double up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(1);
/// Longest pause between two tries: a decode or a small fetch takes a few milliseconds,
/// so a waiter notices the release soon after without spinning.
const MAX_POLL: Duration = Duration::from_millis(16);

/// This process's fork generation: 0 in the process that loaded the library, one more in
/// each forked child. State built at an older generation was inherited through a fork.
pub fn fork_generation() -> u64 {
    fork::generation()
}

/// Lock descriptors that forked children closed because their parent had them open at the
/// fork (counted in each child, so a worker reports what it inherited).
pub fn inherited_locks_closed() -> u64 {
    fork::inherited_locks_closed()
}

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Shared,
    Exclusive,
}

/// What a bounded wait for a lock ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The lock is held through the [`LockFile`].
    Locked,
    /// The bound passed: the caller goes on without the lock (and counts it).
    TimedOut,
}

/// An open lock file, recorded for the fork handler until it is closed (dropping it
/// closes it, which releases its lock).
pub struct LockFile {
    file: ManuallyDrop<File>,
    kind: LockKind,
    /// The fork generation that opened it: in a child, an inherited handle's descriptor
    /// was already replaced by the fork handler and is not this handle's to close.
    generation: u64,
}

impl std::fmt::Debug for LockFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockFile")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl LockFile {
    /// Opens a lock file with `open`, recording its descriptor before any fork can copy it.
    ///
    /// # Errors
    /// `open`'s.
    pub(crate) fn open(
        kind: LockKind,
        open: impl FnOnce() -> io::Result<File>,
    ) -> io::Result<Self> {
        let file = fork::register(open)?;
        Ok(LockFile {
            file: ManuallyDrop::new(file),
            kind,
            generation: fork_generation(),
        })
    }

    /// The open file (a writer writes its temp file through it).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Takes the lock if it is free; `Ok(false)` when another open file holds it.
    ///
    /// # Errors
    /// When the filesystem refuses locks.
    pub(crate) fn try_lock(&self, mode: Mode) -> io::Result<bool> {
        let tried = match mode {
            Mode::Shared => self.file.try_lock_shared(),
            Mode::Exclusive => self.file.try_lock(),
        };
        match tried {
            Ok(()) => {
                #[cfg(feature = "test-hooks")]
                gate::reached(self.kind, Some(&self.file));
                Ok(true)
            }
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// Takes the lock, trying again with growing pauses while another holder has it, for
    /// at most `bound`.
    ///
    /// # Errors
    /// When the filesystem refuses locks.
    pub(crate) fn lock_within(&self, mode: Mode, bound: Duration) -> io::Result<Waited> {
        let mut backoff = Backoff::new(bound);
        loop {
            if self.try_lock(mode)? {
                return Ok(Waited::Locked);
            }
            match backoff.next_pause() {
                Some(pause) => std::thread::sleep(pause),
                None => return Ok(Waited::TimedOut),
            }
        }
    }

    /// Releases the lock this file holds, keeping the file open for the next one (a lock
    /// file held open by its process). A no-op on a handle inherited through a fork, whose
    /// descriptor the fork handler replaced.
    pub(crate) fn unlock(&self) {
        if self.generation == fork_generation() {
            let _ = self.file.unlock();
        }
    }

    /// Releases the lock and hands the file over as a plain file, no longer a lock file (a
    /// writer's temp file, once linked into place as an entry).
    pub(crate) fn into_file(self) -> File {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the file is moved out once.
        let file = unsafe { ManuallyDrop::take(&mut this.file) };
        if this.generation != fork_generation() {
            // Inherited: the fork handler replaced the descriptor, nothing to release.
            return file;
        }
        // Unlocking is right here: this process took the lock and is done with it.
        fork::unregister(file, |file| {
            let _ = file.unlock();
            file
        })
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once; the file is not used after this.
        let file = unsafe { ManuallyDrop::take(&mut self.file) };
        if self.generation != fork_generation() {
            // Inherited: the fork handler already replaced the descriptor (or closed it,
            // when /dev/null could not be opened, in which case its number may belong to
            // another file of this process by now): not this handle's to close.
            std::mem::forget(file);
            return;
        }
        fork::unregister(file, drop);
    }
}

/// Pauses between tries of a busy lock: doubling from [`FIRST_POLL`] to [`MAX_POLL`],
/// ending at the bound.
pub(crate) struct Backoff {
    deadline: Instant,
    next: Duration,
}

impl Backoff {
    /// A wait of at most `bound` from now.
    pub(crate) fn new(bound: Duration) -> Self {
        Backoff {
            deadline: Instant::now().checked_add(bound).unwrap_or_else(far_future),
            next: FIRST_POLL,
        }
    }

    /// What is left of the bound.
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// The next pause, or `None` once the bound has passed.
    pub(crate) fn next_pause(&mut self) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let pause = self.next.min(left);
        self.next = (self.next * 2).min(MAX_POLL);
        Some(pause)
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[cfg(all(test, unix))]
pub(crate) mod tests;
