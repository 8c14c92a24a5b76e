//! The package's own tokio runtime, one per process: a forked child builds a new one and
//! never touches its parent's, whose worker threads did not survive the fork.
//!
//! The slot is the core's [`framecache::PerProcess`]: one atomic pointer, no lock, so a fork
//! at any moment (from any thread, with or without Python's at-fork hooks) leaves nothing
//! for the child to wait for, and no thread waits for the slot while it holds the
//! interpreter. Lock files are the core's business too: its `pthread_atfork` handler closes
//! the child's copies.

use crate::errors::to_py;
use framecache::PerProcess;
use pyo3::exceptions::PyRuntimeError;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

/// How long a blocking call waits, detached from the interpreter, before it looks for
/// pending signals (Ctrl-C) and goes back to waiting.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The runtime of the calling process.
static RUNTIME: PerProcess<Runtime> = PerProcess::new();

/// The calling process's runtime, built on first use and again after a fork.
///
/// # Errors
/// When the OS refuses the runtime's threads.
pub fn handle() -> PyResult<Handle> {
    let runtime = RUNTIME.get_or_try_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("framecache")
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start framecache's runtime: {e}")))
    })?;
    Ok(runtime.handle().clone())
}

/// Runs `future` to completion on the package's runtime with the interpreter released,
/// waking every [`SIGNAL_CHECK_INTERVAL`] to run Python's signal handlers: a `KeyboardInterrupt`
/// (or any exception a handler raises) cancels the future and is raised.
pub fn block_on<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = framecache::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let handle = handle()?;
    let mut task = handle.spawn(future);
    loop {
        let waited = py.detach(|| {
            handle.block_on(async { tokio::time::timeout(SIGNAL_CHECK_INTERVAL, &mut task).await })
        });
        // What the future logged so far reaches `logging` from this thread, before it
        // returns (or while it waits, every interval).
        crate::logs::deliver(py);
        match waited {
            Ok(Ok(result)) => return result.map_err(to_py),
            Ok(Err(join)) => return Err(join_error(join)),
            Err(_elapsed) => {
                if let Err(interrupt) = py.check_signals() {
                    task.abort();
                    return Err(interrupt);
                }
            }
        }
    }
}

fn join_error(join: tokio::task::JoinError) -> PyErr {
    if join.is_panic() {
        let payload = join.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        PanicException::new_err(format!("framecache panicked: {message}"))
    } else {
        PyRuntimeError::new_err("framecache's task was cancelled")
    }
}

/// Turns a future into a Python awaitable (an asyncio future) that runs on the package's
/// runtime; cancelling the awaitable drops the future.
pub fn awaitable<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    // Build (or rebuild, after a fork) the runtime here, where errors can be raised.
    handle()?;
    pyo3_async_runtimes::generic::future_into_py::<PackageRuntime, F, T>(py, future)
}

/// [`pyo3_async_runtimes`]' view of the package runtime.
struct PackageRuntime;

tokio::task_local! {
    static TASK_LOCALS: std::cell::OnceCell<pyo3_async_runtimes::TaskLocals>;
}

fn current() -> Handle {
    handle().expect("the runtime was built before any awaitable was created")
}

impl pyo3_async_runtimes::generic::Runtime for PackageRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        current().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        current().spawn_blocking(f)
    }
}

impl pyo3_async_runtimes::generic::ContextExt for PackageRuntime {
    fn scope<F, R>(
        locals: pyo3_async_runtimes::TaskLocals,
        fut: F,
    ) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = std::cell::OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<pyo3_async_runtimes::TaskLocals> {
        TASK_LOCALS
            .try_with(|cell| cell.get().cloned())
            .unwrap_or_default()
    }
}
