//! The core's `tracing` events, delivered to Python's `logging` (logger `framecache` and its
//! children, one per module: `framecache.timeline.read`, ...).
//!
//! No thread ever waits for the interpreter to log. An event at a level Python would drop
//! costs one atomic load ([`THRESHOLD`], the least severe level any `framecache` logger lets
//! through, which the package refreshes whenever Python's logging levels change). An event
//! that passes is formatted and queued in this process's [`Bridge`], and reaches `logging`
//! from a thread that already holds the interpreter: the thread whose call produced it, when
//! that call returns or looks for signals (every 50 ms), or else the main thread at its next
//! instruction (a `Py_AddPendingCall`, which needs no interpreter lock to schedule; daemon
//! threads always leave their events to the main thread, see [`deliver`]). So a
//! tokio worker that logs while holding one of the core's locks never waits for a thread that
//! holds the interpreter and wants that lock.
//!
//! The bridge is per process ([`PerProcess`]): a forked child drops its events until Python's
//! after-fork hook (or its first call into framecache) builds its own, so nothing in the
//! at-fork window touches the interpreter or a lock a parent's thread held. At exit (an
//! `atexit` hook, before the interpreter finalizes) the queue is delivered and the bridge
//! closed: later events are dropped.
//!
//! One bridge in one file (about 440 lines): its fork, exit and reentrancy rules depend on
//! each other and are easier to check side by side.

use framecache::PerProcess;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber, span};

/// Python's number for the least severe level delivered (`logging.WARNING` until the package
/// sets it from its logging configuration).
static THRESHOLD: AtomicU32 = AtomicU32::new(30);

/// Set at exit: no event is queued or scheduled any more.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Threads between their look at [`CLOSED`] and the end of their `Py_AddPendingCall`: closing
/// waits for them, so that none schedules a call into an interpreter that is finalizing.
static SCHEDULING: AtomicUsize = AtomicUsize::new(0);

/// The calling process's queue of events.
static BRIDGE: PerProcess<Bridge> = PerProcess::new();

/// Events queued at most; more are dropped (and counted) until the queue is delivered.
const CAPACITY: usize = 4096;

/// The longest exit waits for threads still scheduling a delivery (a few microseconds each).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

thread_local! {
    /// Set while this thread delivers: a handler that calls framecache delivers nothing more.
    static DELIVERING: Cell<bool> = const { Cell::new(false) };
}

/// One event, formatted, waiting for the interpreter.
struct Record {
    level: u32,
    target: &'static str,
    file: Option<&'static str>,
    line: Option<u32>,
    message: String,
}

/// This process's queue, and its counters.
struct Bridge {
    queue: Mutex<VecDeque<Record>>,
    /// A delivery is scheduled on the main thread and has not started yet.
    scheduled: AtomicBool,
    queued: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Dropped since the last delivery said so.
    unreported: AtomicU64,
}

impl Bridge {
    fn new() -> Self {
        Bridge {
            queue: Mutex::new(VecDeque::new()),
            scheduled: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Record>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, record: Record) {
        {
            let mut queue = self.queue();
            if queue.len() >= CAPACITY {
                drop(queue);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.unreported.fetch_add(1, Ordering::Relaxed);
                return;
            }
            queue.push_back(record);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            self.schedule();
        }
    }

    /// Asks the main thread to deliver at its next instruction.
    fn schedule(&self) {
        SCHEDULING.fetch_add(1, Ordering::SeqCst);
        let scheduled = !CLOSED.load(Ordering::SeqCst)
            // SAFETY: `Py_AddPendingCall` needs neither an attached thread nor the interpreter's
            // lock; the interpreter is initialized (this process's bridge is built by the
            // package) and not finalizing (`CLOSED` is set before, and waits for us).
            && unsafe { ffi::Py_AddPendingCall(Some(deliver_pending), std::ptr::null_mut()) } == 0;
        SCHEDULING.fetch_sub(1, Ordering::SeqCst);
        if !scheduled {
            // The queue waits for the next call that returns, or the next event.
            self.scheduled.store(false, Ordering::Release);
        }
    }
}

/// The pending call: runs on the main thread, attached, between two instructions.
extern "C" fn deliver_pending(_: *mut c_void) -> c_int {
    if let Some(bridge) = BRIDGE.get() {
        bridge.scheduled.store(false, Ordering::Release);
    }
    if !CLOSED.load(Ordering::SeqCst) {
        // Never unwinds into the interpreter; a panic only loses these records.
        let _ = std::panic::catch_unwind(|| Python::attach(deliver_now));
    }
    0
}

/// Hands this process's queued events to `logging`, from a thread that holds the
/// interpreter: a blocking call's, as it returns or waits. A daemon thread (or one Python did
/// not start) leaves them to the main thread: the interpreter ends such a thread in place
/// (`pthread_exit`) if it wakes while the interpreter finalizes, which must not happen
/// under our frames, inside a handler.
pub fn deliver(py: Python<'_>) {
    if CLOSED.load(Ordering::Relaxed) || DELIVERING.get() {
        return;
    }
    let Some(bridge) = BRIDGE.get() else {
        // A forked child whose after-fork hook did not run (a fork outside `os.fork`) gets
        // its bridge here, where the interpreter is usable.
        let _ = BRIDGE.get_or_try_init(|| Ok::<_, ()>(Bridge::new()));
        return;
    };
    if bridge.queue().is_empty() && bridge.unreported.load(Ordering::Relaxed) == 0 {
        return;
    }
    let daemon = py
        .import("threading")
        .and_then(|t| t.call_method0("current_thread"))
        .and_then(|t| t.getattr("daemon"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true);
    if !daemon {
        deliver_now(py);
    }
}

/// Hands every queued event of this process to `logging` on the calling thread.
fn deliver_now(py: Python<'_>) {
    if CLOSED.load(Ordering::Relaxed) || DELIVERING.get() {
        return;
    }
    let Ok(bridge) = BRIDGE.get_or_try_init(|| Ok::<_, ()>(Bridge::new())) else {
        return;
    };
    let records = std::mem::take(&mut *bridge.queue());
    let unreported = bridge.unreported.swap(0, Ordering::Relaxed);
    if records.is_empty() && unreported == 0 {
        return;
    }
    let _delivering = Delivering::enter();
    if unreported > 0 {
        let _ = emit(
            py,
            &Record {
                level: 30,
                target: "framecache",
                file: None,
                line: None,
                message: format!(
                    "{unreported} log records dropped: more than {CAPACITY} were waiting for \
                     the interpreter"
                ),
            },
        );
    }
    for record in &records {
        // `logging` reports its handlers' failures itself; an error here (logging torn
        // down, say) only loses the record.
        let _ = emit(py, record);
    }
    bridge
        .delivered
        .fetch_add(records.len() as u64, Ordering::Relaxed);
}

/// Marks the current thread as delivering until dropped (a panic included).
struct Delivering;

impl Delivering {
    fn enter() -> Self {
        DELIVERING.set(true);
        Delivering
    }
}

impl Drop for Delivering {
    fn drop(&mut self) {
        DELIVERING.set(false);
    }
}

/// Passes one record to its logger, as `Logger.log` would (`isEnabledFor`, `makeRecord`,
/// `handle`), with the Rust source file and line as the record's location.
fn emit(py: Python<'_>, record: &Record) -> PyResult<()> {
    let name = logger_name(record.target);
    let logger = py
        .import("logging")?
        .call_method1("getLogger", (name.as_str(),))?;
    if !logger
        .call_method1("isEnabledFor", (record.level,))?
        .is_truthy()?
    {
        return Ok(());
    }
    let made = logger.call_method1(
        "makeRecord",
        (
            name.as_str(),
            record.level,
            record.file.unwrap_or("(rust)"),
            record.line.unwrap_or(0),
            record.message.as_str(),
            PyTuple::empty(py),
            py.None(),
        ),
    )?;
    logger.call_method1("handle", (made,))?;
    Ok(())
}

/// `framecache::timeline::read` → `framecache.timeline.read`.
fn logger_name(target: &str) -> String {
    target.replace("::", ".")
}

/// Events of the core crate only: its dependencies' (hyper, reqwest, ...) stay out.
fn ours(target: &str) -> bool {
    target == "framecache" || target.starts_with("framecache::")
}

/// Python's number for a `tracing` level (`TRACE` has none: 5, below `DEBUG`).
fn python_level(level: &Level) -> u32 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

/// The process's `tracing` subscriber: events to the bridge, spans ignored.
struct ToPython;

impl Subscriber for ToPython {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_event() && ours(meta.target()) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        python_level(meta.level()) >= THRESHOLD.load(Ordering::Relaxed)
            && meta.is_event()
            && ours(meta.target())
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        if CLOSED.load(Ordering::Relaxed) {
            return;
        }
        // None in a forked child until its interpreter is ready for it: dropped.
        let Some(bridge) = BRIDGE.get() else {
            return;
        };
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        bridge.push(Record {
            level: python_level(meta.level()),
            target: meta.target(),
            file: meta.file(),
            line: meta.line(),
            message: redact(text.finish()),
        });
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// An event's message, then its other fields as ` name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(self) -> String {
        let Text {
            mut message,
            fields,
        } = self;
        if message.is_empty() {
            return fields.trim_start().to_owned();
        }
        message.push_str(&fields);
        message
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// Replaces the S3 credentials of the environment wherever an event would show them, as
/// the command line's log does.
fn redact(mut text: String) -> String {
    for name in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
    ] {
        if let Ok(secret) = std::env::var(name)
            && secret.len() >= 4
            && text.contains(&secret)
        {
            text = text.replace(&secret, "<redacted>");
        }
    }
    text
}

/// Makes [`ToPython`] the subscriber of this module's `tracing` (the core's events included:
/// it is linked into this library) and builds the process's bridge.
pub fn install() {
    let _ = BRIDGE.get_or_try_init(|| Ok::<_, ()>(Bridge::new()));
    // Fails only if a subscriber is already set (the module initialized twice): keep it.
    let _ = tracing::subscriber::set_global_default(ToPython);
}

/// Sets the least severe level delivered, as a Python level number (``logging.DEBUG``, ...);
/// the package calls it whenever Python's logging levels change.
#[pyfunction]
pub fn _set_log_threshold(level: u32) {
    THRESHOLD.store(level, Ordering::Relaxed);
}

/// The least severe level delivered, as a Python level number.
#[pyfunction]
pub fn _log_threshold() -> u32 {
    THRESHOLD.load(Ordering::Relaxed)
}

/// This process's log counters: events ``queued`` for the interpreter, ``delivered`` to
/// `logging`, ``dropped`` (queue full), and ``waiting``.
#[pyfunction]
pub fn _log_counters(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let counters = PyDict::new(py);
    if let Some(bridge) = BRIDGE.get() {
        counters.set_item("queued", bridge.queued.load(Ordering::Relaxed))?;
        counters.set_item("delivered", bridge.delivered.load(Ordering::Relaxed))?;
        counters.set_item("dropped", bridge.dropped.load(Ordering::Relaxed))?;
        counters.set_item("waiting", bridge.queue().len())?;
    }
    Ok(counters)
}

/// Delivers the events queued so far to `logging` now.
#[pyfunction]
pub fn _flush_logs(py: Python<'_>) {
    deliver_now(py);
}

/// Python's after-fork hook in a child: builds the child's bridge, so its events are queued
/// again (those between the fork and now were dropped).
#[pyfunction]
pub fn _logs_after_fork() {
    let _ = BRIDGE.get_or_try_init(|| Ok::<_, ()>(Bridge::new()));
}

/// At exit, before the interpreter finalizes: delivers what is queued, then drops every
/// later event.
#[pyfunction]
pub fn _close_logs(py: Python<'_>) {
    deliver_now(py);
    CLOSED.store(true, Ordering::SeqCst);
    let start = Instant::now();
    while SCHEDULING.load(Ordering::SeqCst) != 0 && start.elapsed() < CLOSE_WAIT {
        std::thread::yield_now();
    }
}
