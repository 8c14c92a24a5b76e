//! The evictor: one per cache directory per machine, elected through a kernel lock that
//! dies with its holder, keeps usage between the low and the high watermark in the
//! background, repairs the shard a dead process left half changed, and sweeps shards at a
//! slow pace for dead writers' leftovers. Every process opening the directory runs a
//! candidate thread that tries the lock now and then, never waiting on it.

use super::engine::Store;
use super::ledger::{LAYOUT, now_ms, word};
use crate::flock::LockKind;
use crate::flock::{LockFile, Mode};
use crate::metrics::EvictionStatus;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// The election lock file.
pub(super) const EVICTOR_LOCK_FILE: &str = ".evictor";
/// How often a candidate tries the election lock.
const CANDIDATE_EVERY: Duration = Duration::from_millis(500);
/// How often the evictor compares usage with the high watermark.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How often the evictor sweeps one shard for dead writers' leftovers: the whole
/// directory every 256 × this (about 4 minutes).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// An evictor whose heartbeat is older than this is reported as not running.
const STALE_AFTER: Duration = Duration::from_secs(5);

/// What the candidate thread holds while it is the evictor.
struct Elected {
    /// The election lock, held until this process exits or drops the tier.
    _lock: LockFile,
}

impl Store {
    /// Stands for election as the machine's evictor for this directory: a background
    /// thread tries a lock now and then; the process elected rebuilds counters that were
    /// never set, evicts, and finds dead writers' leftovers. The thread ends when the store
    /// is dropped (the sender in its `Inner` goes away).
    pub(crate) fn stand_for_evictor(self) -> Self {
        self.start_candidate();
        self
    }

    fn start_candidate(&self) {
        let Some(stop) = self.inner.stopped.lock().ok().and_then(|mut s| s.take()) else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let _ = std::thread::Builder::new()
            .name("framecache-evictor".into())
            .spawn(move || candidate(&weak, &stop));
    }

    /// Tries, without waiting, to take the election lock.
    fn try_elect(&self) -> Option<Elected> {
        let path = self.inner.dir.join(EVICTOR_LOCK_FILE);
        // Through the fork registry: a child forked while this process evicts closes its
        // copy at once instead of holding the election for as long as it lives.
        let sharing = self.inner.sharing;
        let file = super::lock::open_lock_file(LockKind::Evictor, &path, sharing).ok()?;
        match file.try_lock(Mode::Exclusive) {
            Ok(true) => Some(Elected { _lock: file }),
            Ok(false) | Err(_) => None,
        }
    }

    /// Takes office: records this process, repairs what a predecessor left half done and
    /// rebuilds counters that were never set.
    fn take_office(&self) {
        let ledger = &self.inner.ledger;
        ledger.set(word::EVICTOR_PID, u64::from(std::process::id()));
        ledger.set(word::HEARTBEAT_MS, now_ms());
        ledger.bump(word::TAKEOVERS);
        let busy = ledger.word(word::BUSY_SHARD).swap(0, Ordering::AcqRel);
        if !ledger.counted() {
            self.rebuild();
        } else if busy != 0 {
            // The previous evictor died in the middle of this shard.
            self.recount_shard((busy - 1) as u8);
            ledger.bump(word::REPAIRED_SHARDS);
        }
    }

    /// Recounts every shard, each under the exclusive lock for its own scan only, so
    /// writers wait at most one shard's scan; then marks the counters trustworthy.
    fn rebuild(&self) {
        let started = Instant::now();
        let ledger = &self.inner.ledger;
        for shard in 0..=u8::MAX {
            ledger.set(word::BUSY_SHARD, u64::from(shard) + 1);
            self.recount_shard(shard);
            ledger.set(word::BUSY_SHARD, 0);
            ledger.set(word::HEARTBEAT_MS, now_ms());
        }
        ledger.set(word::LAYOUT, LAYOUT);
        ledger.set(word::LAST_REBUILD_US, started.elapsed().as_micros() as u64);
        ledger.bump(word::REBUILDS);
    }

    /// One turn of the evictor's loop: a round if usage is above the high watermark, else
    /// maybe one shard of the slow sweep.
    fn duty(&self, last_sweep: &mut Instant) {
        let ledger = &self.inner.ledger;
        ledger.set(word::HEARTBEAT_MS, now_ms());
        // The filesystem, sampled on every turn: one `statvfs` every 20 ms on one thread of
        // the machine, so that the limit follows what other programs (and the other tiers
        // on the filesystem) take or give back.
        self.sample_space();
        let (low, high, _) = self.watermarks();
        if ledger.used() > high {
            self.round(low);
        } else if last_sweep.elapsed() >= SWEEP_EVERY {
            *last_sweep = Instant::now();
            self.sweep_one();
        }
    }

    /// Evicts shard after shard from the hand on until usage is at most `low`.
    fn round(&self, low: u64) {
        let ledger = &self.inner.ledger;
        let started = Instant::now();
        let pass = self.evict_to(low, u64::MAX, true);
        ledger.set(word::LAST_ROUND_US, started.elapsed().as_micros() as u64);
        ledger.set(word::LAST_ROUND_ENTRIES, pass.removed);
        ledger.set(word::LAST_ROUND_BYTES, pass.freed);
        ledger.bump(word::ROUNDS);
    }

    /// Looks at one shard for dead writers' temp files (names only) and recounts it if
    /// it holds any; the sweep's own cursor is the hand's opposite side, so it does not
    /// depend on evictions.
    fn sweep_one(&self) {
        let ledger = &self.inner.ledger;
        let shard = (self.inner.sweep.fetch_add(1, Ordering::Relaxed) % 256) as u8;
        let mut dead = false;
        super::evict::for_each_temp(&self.inner.dir, shard, |path, temp, meta| {
            // The lock probe alone: a live writer's temp file has two links for a moment
            // (see `evict_shard`).
            dead |= self.is_dead(path, temp, meta);
        });
        if dead {
            ledger.set(word::BUSY_SHARD, u64::from(shard) + 1);
            if self.recount_shard(shard).temp_files_removed > 0 {
                ledger.bump(word::REPAIRED_SHARDS);
            }
            ledger.set(word::BUSY_SHARD, 0);
        }
    }

    /// Whether the lock is held but its holder has stopped evicting: a child `fork()`ed
    /// from the evictor inherits the lock's descriptor, and keeps the lock after the
    /// evictor's process is gone, with no evictor thread of its own. Candidates then do the
    /// evictor's duty without the lock (its operations are safe to run twice at once)
    /// until the lock is free again.
    fn evictor_stalled(&self) -> bool {
        let heartbeat = self.inner.ledger.get(word::HEARTBEAT_MS);
        heartbeat != 0
            && self.inner.ledger.counted()
            && now_ms().saturating_sub(heartbeat) > 2 * STALE_AFTER.as_millis() as u64
    }

    /// How eviction stands, from the shared ledger: no scan.
    pub fn eviction_status(&self) -> EvictionStatus {
        let ledger = &self.inner.ledger;
        let sampled = self.sample_space();
        let (low, high, hard) = self.watermarks();
        let heartbeat = ledger.get(word::HEARTBEAT_MS);
        let pid = ledger.get(word::EVICTOR_PID);
        let running =
            heartbeat != 0 && now_ms().saturating_sub(heartbeat) <= STALE_AFTER.as_millis() as u64;
        EvictionStatus {
            evictor_running: running,
            evictor_here: self.inner.elected.load(Ordering::Acquire),
            evictor_pid: pid,
            used_bytes: ledger.used(),
            low_watermark: low,
            high_watermark: high,
            hard_limit: hard,
            capacity: self.inner.capacity,
            limited_by: sampled.limited_by,
            fs_size: sampled.fs_size,
            fs_free: sampled.fs_free,
            min_free: sampled.min_free,
            full_writes: ledger.get(word::FULL_WRITES),
            counted: ledger.counted(),
            rounds: ledger.get(word::ROUNDS),
            last_round_us: ledger.get(word::LAST_ROUND_US),
            last_round_entries: ledger.get(word::LAST_ROUND_ENTRIES),
            last_round_bytes: ledger.get(word::LAST_ROUND_BYTES),
            writer_batches: ledger.get(word::WRITER_BATCHES),
            repaired_shards: ledger.get(word::REPAIRED_SHARDS),
            rebuilds: ledger.get(word::REBUILDS),
            last_rebuild_us: ledger.get(word::LAST_REBUILD_US),
            takeovers: ledger.get(word::TAKEOVERS),
        }
    }
}

/// The candidate thread: tries the election lock every [`CANDIDATE_EVERY`]; once elected,
/// evicts until the tier is dropped. Holds the tier only for the length of one turn.
fn candidate(weak: &Weak<super::engine::Inner>, stop: &Receiver<()>) {
    let mut office = None;
    let mut last_sweep = Instant::now();
    loop {
        let wait = if office.is_some() {
            POLL_EVERY
        } else {
            CANDIDATE_EVERY
        };
        {
            let Some(inner) = weak.upgrade() else { return };
            let tier = Store { inner };
            if !tier.inner.ledger.is_shared() {
                return; // no directory to share: this process's own writers evict
            }
            if office.is_none() {
                office = tier.try_elect();
                if office.is_some() {
                    lower_priority();
                    tier.take_office();
                    tier.inner.elected.store(true, Ordering::Release);
                }
            }
            if office.is_some() || tier.evictor_stalled() {
                tier.duty(&mut last_sweep);
            }
        }
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Lowers the calling thread's I/O priority (Linux: per thread) to the lowest level of the
/// best-effort class: its reads of shard directories queue behind the readers' and
/// writers' I/O. Best effort: a refusal leaves the thread as it was.
///
/// Its CPU priority stays: a niced evictor was measured to make other writers' slowest
/// writes worse on a busy machine, as it gets preempted inside an unlink or rename while
/// holding the shard directory's inode lock, which a writer of that shard then waits for
/// (a priority inversion); pacing (see `evict::pace`) bounds its CPU share instead.
#[cfg(target_os = "linux")]
fn lower_priority() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_BE: libc::c_long = 2;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: a plain syscall on this thread's own id; nothing is shared.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            libc::c_long::from(tid),
            (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}
