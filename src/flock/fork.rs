//! The descriptors of this process's lock files, and the `pthread_atfork` handlers that
//! keep a forked child from holding any of them.
//!
//! A `flock` lock belongs to the open file description, which `fork` shares between
//! parent and child: a child made while one of the parent's threads held a lock holds it
//! too, for as long as it keeps its copy of the descriptor. The child has no copy of the
//! thread that would have released it, so the lock would stay held until the child exits,
//! and every process waiting for it (the parent included) would wait as long. So the child
//! drops its copy of every lock descriptor at once, in the fork itself: closing a copy
//! releases nothing the parent holds, while unlocking it (`LOCK_UN`) would release the
//! parent's lock too, which is why the child closes and never unlocks.
//!
//! The registry holds every lock file from the moment it is opened, not only locked ones:
//! a descriptor copied into a child before its parent locks it shares that lock as well.

use std::cell::RefCell;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

/// Lock files open in this process. Held across `fork` by the thread that forks (see
/// [`prepare`]), so that no descriptor is opened or closed, unrecorded, while it is copied.
static OPEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Forks this process has been the child of (0 in a process that was not forked, or that
/// forked others only): state tagged with an older generation was inherited.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Lock descriptors closed in forked children of this process's lineage, this one included.
static DROPPED: AtomicU64 = AtomicU64::new(0);

static HANDLERS: Once = Once::new();

thread_local! {
    /// The registry's lock, held by the forking thread from `prepare` until the fork is
    /// done (the same thread runs all three handlers, in the child too).
    static HELD: RefCell<Option<MutexGuard<'static, Vec<RawFd>>>> = const { RefCell::new(None) };
}

/// This process's fork generation: how many forks separate it from the process that
/// loaded the library. Something built at another generation was inherited through a fork.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// How many inherited lock descriptors forked children closed, counted in the children
/// (a parent's count is what it inherited itself).
pub fn inherited_locks_closed() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn registry() -> MutexGuard<'static, Vec<RawFd>> {
    OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `open` and records the descriptor it returns, with no fork in between; installs
/// the fork handlers on first use.
pub(super) fn register(open: impl FnOnce() -> std::io::Result<File>) -> std::io::Result<File> {
    install();
    let mut open_fds = registry();
    let file = open()?;
    open_fds.push(file.as_raw_fd());
    Ok(file)
}

/// Forgets `file`'s descriptor and hands the file to `then` (which closes it, or unlocks
/// it and keeps it as a plain file), with no fork in between: a child either has the
/// descriptor recorded or gets no locked copy of it.
pub(super) fn unregister<T>(file: File, then: impl FnOnce(File) -> T) -> T {
    let fd = file.as_raw_fd();
    let mut open_fds = registry();
    if let Some(at) = open_fds.iter().position(|&f| f == fd) {
        open_fds.swap_remove(at);
    }
    let done = then(file);
    drop(open_fds);
    done
}

fn install() {
    HANDLERS.call_once(|| {
        // SAFETY: the handlers are `extern "C"` functions that never unwind; registering
        // them has no other precondition.
        let failed = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if failed != 0 {
            tracing::warn!(
                "cannot register fork handlers (error {failed}): a process forked while \
                 framecache holds a lock would keep it until the child exits (waits for \
                 it stay bounded)"
            );
        }
    });
}

extern "C" fn prepare() {
    let open_fds = registry();
    let _ = HELD.try_with(|held| *held.borrow_mut() = Some(open_fds));
}

extern "C" fn parent() {
    let _ = HELD.try_with(|held| held.borrow_mut().take());
}

/// Runs in the child, which has one thread: async-signal-safe calls only, no allocation.
extern "C" fn child() {
    let _ = HELD.try_with(|held| {
        if let Some(open_fds) = held.borrow_mut().as_mut() {
            drop_inherited(open_fds);
        }
        held.borrow_mut().take();
    });
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Replaces each inherited lock descriptor with one on `/dev/null`: that closes the
/// child's copy of the lock file's description (the parent's lock stands), and keeps the
/// descriptor number taken, so that an inherited handle dropped later in the child never
/// closes a file the child opened since under the same number.
fn drop_inherited(open_fds: &mut Vec<RawFd>) {
    // SAFETY: open, dup3/dup2, fcntl and close are async-signal-safe; the path is a
    // NUL-terminated literal; each descriptor is one this process had open.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        for &fd in open_fds.iter() {
            if null < 0 || !cover(null, fd) {
                libc::close(fd);
            }
        }
        if null >= 0 {
            libc::close(null);
        }
    }
    DROPPED.fetch_add(open_fds.len() as u64, Ordering::Relaxed);
    // Keeps the allocation: freeing here is not async-signal-safe.
    open_fds.clear();
}

/// Makes `fd` a close-on-exec copy of `null`.
///
/// # Safety
/// Both must be open descriptors of this process.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
unsafe fn cover(null: RawFd, fd: RawFd) -> bool {
    // SAFETY: as the caller promises.
    unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) == fd }
}

/// Makes `fd` a close-on-exec copy of `null`.
///
/// # Safety
/// Both must be open descriptors of this process.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
unsafe fn cover(null: RawFd, fd: RawFd) -> bool {
    // SAFETY: as the caller promises.
    unsafe { libc::dup2(null, fd) == fd && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0 }
}
