//! `FrameCache.iter_frames`: a Python iterator (and async iterator) fed by a task that
//! streams the timeline.

use crate::convert::{Decoded, PyValue};
use crate::errors::{other, to_py};
use crate::frame::{PyFrame, frame_to_py};
use crate::runtime;
use futures::StreamExt;
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// Frames decoded ahead of the consumer, at most: bounds the memory a slow consumer costs.
const AHEAD: usize = 8;
/// How long a waiting ``__next__`` stays detached before it checks for signals.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

type Item = framecache::Result<framecache::Frame>;

/// Iterator over a timeline's frames in sequence order (from ``FrameCache.iter_frames``),
/// with ``for`` or ``async for``. Frames are fetched and decoded ahead of the consumer, a
/// few at a time.
#[pyclass(module = "framecache", name = "FrameIterator", frozen)]
pub struct FrameIterator {
    pid: u32,
    access: framecache::Access,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Item>>>,
    task: AbortHandle,
}

impl FrameIterator {
    /// Starts streaming the frames `seqs` names of `timeline` on the package runtime.
    pub fn start(
        cache: framecache::FrameCache,
        timeline: String,
        seqs: framecache::Seqs,
        options: framecache::LoadOptions,
    ) -> PyResult<Self> {
        let (sender, receiver) = mpsc::channel(AHEAD);
        let task = runtime::handle()?.spawn(async move {
            let mut frames = std::pin::pin!(cache.stream_frames(&timeline, seqs, options));
            while let Some(item) = frames.next().await {
                let failed = item.is_err();
                if sender.send(item.map(|(frame, _)| frame)).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(FrameIterator {
            pid: std::process::id(),
            access: options.access,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            task: task.abort_handle(),
        })
    }
}

impl Drop for FrameIterator {
    fn drop(&mut self) {
        if self.pid == std::process::id() {
            self.task.abort();
        }
    }
}

#[pymethods]
impl FrameIterator {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyFrame>>> {
        self.same_process(py)?;
        let handle = runtime::handle()?;
        loop {
            let received = py.detach(|| {
                handle.block_on(async {
                    // Dropping a `recv` that timed out loses nothing: it is cancel safe.
                    tokio::time::timeout(SIGNAL_CHECK_INTERVAL, async {
                        self.receiver.lock().await.recv().await
                    })
                    .await
                })
            });
            crate::logs::deliver(py);
            match received {
                Ok(Some(Ok(frame))) => return frame_to_py(py, frame, self.access).map(Some),
                Ok(Some(Err(e))) => return Err(to_py(e)),
                Ok(None) => return Ok(None),
                Err(_elapsed) => py.check_signals()?,
            }
        }
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.same_process(py)?;
        let receiver = self.receiver.clone();
        let access = self.access;
        runtime::awaitable(py, async move {
            match receiver.lock().await.recv().await {
                Some(Ok(frame)) => Ok(PyValue(Decoded(frame, access))),
                Some(Err(e)) => Err(to_py(e)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }
}

impl FrameIterator {
    fn same_process(&self, py: Python<'_>) -> PyResult<()> {
        if self.pid == std::process::id() {
            return Ok(());
        }
        Err(other(
            py,
            "this iterator was started in another process (before a fork); start a new one"
                .to_owned(),
        ))
    }
}
