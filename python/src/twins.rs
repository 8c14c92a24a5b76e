//! Blocking methods and their `_async` twins from one definition: [`pymethods_with_twins!`]
//! writes both Python methods from one body that returns the core's future, and [`reply`]
//! hands that future back either way.

use crate::convert::{PyValue, ToPython};
use crate::errors::to_py;
use crate::runtime::{awaitable, block_on};
use pyo3::prelude::*;
use std::future::Future;

/// How a method hands back the core's result.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// Waits for it on the package runtime with the interpreter released (Ctrl-C cancels).
    Blocking,
    /// Returns an asyncio awaitable that resolves to it.
    Awaitable,
}

/// Runs `future` on the package runtime and hands back its value as `how` says: the value
/// itself, or an awaitable of it. Either way the value is built by [`ToPython`], so a
/// blocking method and its twin return the same thing.
pub fn reply<'py, F, T>(py: Python<'py>, how: Reply, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = framecache::Result<T>> + Send + 'static,
    T: ToPython,
{
    match how {
        Reply::Blocking => block_on(py, future)?.to_python(py),
        Reply::Awaitable => awaitable(py, async move { future.await.map(PyValue).map_err(to_py) }),
    }
}

/// One `#[pymethods]` block (PyO3 allows one per class, and expands no macro inside it):
/// the `plain` methods as written, and for each entry of `twins` a blocking method and an
/// `_async` twin.
///
/// A twin entry is written like a method whose body checks and converts its arguments
/// (the interpreter is held) and ends in the core's future:
///
/// ```ignore
/// /// Docstring of the blocking method (the twin's points to it).
/// #[pyo3(signature = (timeline, *, scale=1))]
/// fn name / name_async(&self, timeline: String, scale: u32) {
///     let fc = self.core()?;
///     async move { fc.something(&timeline, scale).await }
/// }
/// ```
///
/// The future's value is converted by [`ToPython`] (`()` becomes `None`); argument types
/// borrowing from Python write their lifetime as `'_`.
// The two templates below differ only in name, docstring and `Reply`: a macro called inside
// them would reach `#[pymethods]` unexpanded, so each is written out.
macro_rules! pymethods_with_twins {
    (
        impl $class:ident { $($plain:tt)* }
        twins {
            $(
                $(#[doc = $doc:literal])*
                $(#[pyo3($($option:tt)*)])?
                fn $name:ident / $name_async:ident
                    (&$self:ident $(, $arg:ident : $ty:ty)* $(,)?) $body:block
            )*
        }
    ) => {
        #[pyo3::pymethods]
        impl $class {
            $($plain)*

            $(
                $(#[doc = $doc])*
                $(#[pyo3($($option)*)])?
                fn $name<'py>(
                    &$self,
                    py: pyo3::Python<'py>,
                    $($arg: $ty),*
                ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                    $crate::twins::reply(py, $crate::twins::Reply::Blocking, $body)
                }

                #[doc = concat!("Awaitable :meth:`", stringify!($name), "`.")]
                $(#[pyo3($($option)*)])?
                fn $name_async<'py>(
                    &$self,
                    py: pyo3::Python<'py>,
                    $($arg: $ty),*
                ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                    $crate::twins::reply(py, $crate::twins::Reply::Awaitable, $body)
                }
            )*
        }
    };
}

pub(crate) use pymethods_with_twins;
