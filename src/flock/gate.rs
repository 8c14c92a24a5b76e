//! A test gate: the next thread to take a lock of one kind stops while it holds it, so a
//! test can fork (or look at the lock files) at that exact moment instead of guessing
//! with sleeps.
//!
//! Disarmed it costs one relaxed atomic load per lock taken. Built only with the
//! `test-hooks` feature (the tests turn it on); release builds have no gate.

use super::kind::LockKind;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The armed kind, 0 when disarmed.
static ARMED: AtomicU8 = AtomicU8::new(0);

#[derive(Default)]
struct State {
    /// A thread stopped holding a lock of the armed kind.
    held: bool,
    /// The lock file it holds, where the system tells (`/proc/self/fd`).
    path: Option<PathBuf>,
    /// The test let it go.
    released: bool,
    /// Only a lock file under this directory stops a thread (see [`arm_under`]).
    under: Option<PathBuf>,
}

static STATE: Mutex<State> = Mutex::new(State {
    held: false,
    path: None,
    released: false,
    under: None,
});
static CHANGED: Condvar = Condvar::new();

/// Longest a stopped thread waits for [`release`]: a test that forgets to release (or
/// fails first) must not leave the process hanging.
const STOP_BOUND: Duration = Duration::from_secs(120);

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Arms the gate: the next thread to take a lock of `kind` stops holding it until
/// [`release`].
pub fn arm(kind: LockKind) {
    *state() = State::default();
    ARMED.store(kind as u8, Ordering::SeqCst);
}

/// Arms the gate for the locks of one cache directory only: the next thread to take a lock
/// of `kind` whose file is under `dir` stops holding it until [`release`]
/// ([`LockKind::RawWrite`], which has no file, stops as with [`arm`]).
///
/// What a fork test needs: every thread of the process takes locks, among them threads of
/// other tests running beside it and the evictor threads of caches it has just dropped
/// (which go on for a moment, on their own directories). Armed for any directory, the gate
/// may stop one of those instead of the load the test started, so that the fork lands at
/// a moment the test did not choose and the lock the child checks is another directory's,
/// possibly deleted by then.
pub fn arm_under(kind: LockKind, dir: &std::path::Path) {
    // Compared with the paths the system gives for open files: symbolic links resolved.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    *state() = State {
        under: Some(dir),
        ..State::default()
    };
    ARMED.store(kind as u8, Ordering::SeqCst);
}

/// Waits up to `timeout` for a thread to stop at the gate; whether one did.
pub fn wait_held(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut state = state();
    while !state.held {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        state = CHANGED
            .wait_timeout(state, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    true
}

/// The lock file the stopped thread holds, once one stopped (where the system tells).
pub fn held_path() -> Option<PathBuf> {
    state().path.clone()
}

/// Lets the stopped thread go on (and disarms the gate if nothing stopped at it).
pub fn release() {
    ARMED.store(0, Ordering::SeqCst);
    let mut state = state();
    state.released = true;
    // A later wait must see a later stop, never this one.
    state.held = false;
    CHANGED.notify_all();
}

/// Called by a thread that just took a lock of `kind` on `file` (none for
/// [`LockKind::RawWrite`]): stops here if the gate is armed for that kind and no other
/// thread stopped first.
pub(crate) fn reached(kind: LockKind, file: Option<&File>) {
    if ARMED.load(Ordering::Relaxed) != kind as u8 {
        return;
    }
    let path = file.and_then(path_of);
    let under = state().under.clone();
    if let (Some(dir), Some(_)) = (&under, file)
        && !path.as_ref().is_some_and(|p| p.starts_with(dir))
    {
        return;
    }
    if ARMED
        .compare_exchange(kind as u8, 0, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return;
    }
    let deadline = Instant::now() + STOP_BOUND;
    let mut state = state();
    state.held = true;
    state.path = path;
    CHANGED.notify_all();
    while !state.released {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::error!("lock gate: never released; going on");
            return;
        }
        state = CHANGED
            .wait_timeout(state, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(target_os = "linux")]
fn path_of(file: &File) -> Option<PathBuf> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

#[cfg(not(target_os = "linux"))]
fn path_of(_file: &File) -> Option<PathBuf> {
    None
}
