//! [`PerProcess`]: a value built once per process, which a forked child rebuilds instead of
//! using its parent's, held in one atomic pointer so that no fork can leave it locked.
//!
//! Tokio runtimes, connection pools and [`crate::FrameCache`] handles belong to the process
//! that built them: their threads do not exist in a forked child. A `Mutex<Option<T>>` slot
//! would be rebuilt correctly, but only if nothing held its mutex at the fork; a thread of
//! the parent that held it then would leave the child's copy locked forever, and holding it
//! across the fork from an at-fork hook instead deadlocks with any thread that blocks on it
//! while holding something the forking thread needs next (an interpreter's lock, say). A
//! single pointer, swapped with compare-and-swap, has no such state.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A value built on first use in each process: lock-free, fork-safe.
///
/// [`get_or_try_init`](Self::get_or_try_init) returns the value the calling process built, or
/// builds one. A value inherited through `fork` is never used, nor dropped (dropping a
/// runtime or a cache would wait for threads the child does not have): it is leaked, once per
/// fork that inherits one. Threads racing to the first use in a process may each build a
/// value; one is kept and the others are dropped at once, never published.
///
/// Dropping the `PerProcess` drops the value if the current process built it, and leaks it
/// otherwise.
pub struct PerProcess<T> {
    slot: AtomicPtr<Owned<T>>,
    /// Owns a `T` (built in one thread, dropped in another); `Send`/`Sync` are stated below.
    _owns: PhantomData<*mut Owned<T>>,
}

// SAFETY: the value is reached only through `&T` (shared, hence `Sync`), and is built and
// dropped on whichever thread calls or drops (hence `Send`), as with `std::sync::OnceLock`.
unsafe impl<T: Send> Send for PerProcess<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for PerProcess<T> {}

struct Owned<T> {
    owner: Owner,
    value: T,
}

/// The process a value was built in: its id, and its fork generation (a pid alone could
/// come back, in a container, to a descendant of the process that used it first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    generation: u64,
}

impl Owner {
    fn current() -> Self {
        Owner {
            pid: std::process::id(),
            generation: crate::flock::fork_generation(),
        }
    }
}

impl<T> PerProcess<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        PerProcess {
            slot: AtomicPtr::new(std::ptr::null_mut()),
            _owns: PhantomData,
        }
    }

    /// The value the calling process built, if it built one.
    pub fn get(&self) -> Option<&T> {
        self.owned_by(Owner::current(), self.slot.load(Ordering::Acquire))
    }

    /// The id of the process that built the value held now (another one's, in a forked
    /// child that has not used it yet).
    pub fn built_in(&self) -> Option<u32> {
        // SAFETY: see `owned_by`.
        unsafe { self.slot.load(Ordering::Acquire).as_ref() }.map(|owned| owned.owner.pid)
    }

    /// The calling process's value, built with `build` if it has none yet (first use, or
    /// first use after a fork).
    ///
    /// # Errors
    /// `build`'s; the slot is left as it was.
    pub fn get_or_try_init<E>(&self, build: impl FnOnce() -> Result<T, E>) -> Result<&T, E> {
        let me = Owner::current();
        let mut seen = self.slot.load(Ordering::Acquire);
        if let Some(value) = self.owned_by(me, seen) {
            return Ok(value);
        }
        let fresh = Box::into_raw(Box::new(Owned {
            owner: me,
            value: build()?,
        }));
        loop {
            match self
                .slot
                .compare_exchange(seen, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // What was there (nothing, or another process's value) is left to leak.
                // SAFETY: `fresh` is published and lives until `self` is dropped.
                Ok(_) => return Ok(unsafe { &(*fresh).value }),
                Err(now) => {
                    if let Some(value) = self.owned_by(me, now) {
                        // Another thread of this process got there first: keep its value.
                        // SAFETY: `fresh` was never published; this is its only owner.
                        drop(unsafe { Box::from_raw(fresh) });
                        return Ok(value);
                    }
                    seen = now;
                }
            }
        }
    }

    fn owned_by(&self, me: Owner, ptr: *mut Owned<T>) -> Option<&T> {
        // SAFETY: a published pointer is freed only by `drop`, which takes `&mut self`; until
        // then it points to a live `Owned`, whichever process built it (a child's memory is
        // a copy of its parent's).
        let owned = unsafe { ptr.as_ref() }?;
        (owned.owner == me).then_some(&owned.value)
    }
}

impl<T> Default for PerProcess<T> {
    fn default() -> Self {
        PerProcess::new()
    }
}

impl<T> Drop for PerProcess<T> {
    fn drop(&mut self) {
        let ptr = *self.slot.get_mut();
        if ptr.is_null() {
            return;
        }
        // SAFETY: the pointer came from `Box::into_raw` and is released only here.
        let owned = unsafe { Box::from_raw(ptr) };
        if owned.owner != Owner::current() {
            // Inherited: its threads and tasks are not in this process.
            std::mem::forget(owned);
        }
    }
}

impl<T> std::fmt::Debug for PerProcess<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerProcess")
            .field("built_in", &self.built_in())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::PerProcess;
    use crate::flock::tests::{exit_child, wait_child};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts drops, so a test sees which values were dropped and which leaked.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn builds_once_per_process_and_drops_its_own() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = PerProcess::new();
        assert!(slot.get().is_none());
        let built = AtomicUsize::new(0);
        let build = || {
            built.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(Counted(drops.clone()))
        };
        let first: *const Counted = slot.get_or_try_init(build).unwrap();
        let again: *const Counted = slot.get_or_try_init(build).unwrap();
        assert_eq!(first, again);
        assert_eq!(built.load(Ordering::SeqCst), 1);
        assert_eq!(slot.built_in(), Some(std::process::id()));
        drop(slot);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failed_build_leaves_the_slot_empty() {
        let slot: PerProcess<u32> = PerProcess::new();
        assert_eq!(slot.get_or_try_init(|| Err("no")), Err("no"));
        assert!(slot.get().is_none());
        assert_eq!(slot.get_or_try_init(|| Ok::<_, ()>(7)), Ok(&7));
    }

    #[test]
    fn racing_threads_share_one_value_and_drop_the_rest() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = PerProcess::new();
        let barrier = std::sync::Barrier::new(4);
        let kept: Vec<usize> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let value = slot
                            .get_or_try_init(|| Ok::<_, ()>(Counted(drops.clone())))
                            .unwrap();
                        value as *const Counted as usize
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert!(kept.windows(2).all(|w| w[0] == w[1]), "{kept:?}");
        let losers = drops.load(Ordering::SeqCst);
        drop(slot);
        assert_eq!(drops.load(Ordering::SeqCst), losers + 1);
    }

    /// A forked child builds a value of its own and leaves its parent's alone (leaked, not
    /// dropped); the parent keeps using its own.
    #[test]
    fn a_forked_child_builds_its_own_and_leaks_the_parents() {
        let drops = Arc::new(AtomicUsize::new(0));
        let slot = PerProcess::new();
        let parents: *const Counted = slot
            .get_or_try_init(|| Ok::<_, ()>(Counted(drops.clone())))
            .unwrap();
        // SAFETY: the child only uses this slot and its counter, then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            exit_child(|| {
                let fresh = slot.get().is_none()
                    && slot.built_in() != Some(std::process::id())
                    && slot
                        .get_or_try_init(|| Ok::<_, ()>(Counted(drops.clone())))
                        .is_ok_and(|own| !std::ptr::eq(own, parents))
                    && slot.built_in() == Some(std::process::id());
                drop(slot);
                // Its own value dropped, the parent's leaked.
                fresh && drops.load(Ordering::SeqCst) == 1
            });
        }
        assert_eq!(wait_child(pid, Duration::from_secs(60)), Some(0));
        assert!(std::ptr::eq(slot.get().unwrap(), parents));
        assert_eq!(drops.load(Ordering::SeqCst), 0);
    }
}
