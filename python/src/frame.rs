//! `framecache.Frame` and the conversions of frames and pixels between numpy and the core.

use crate::errors::invalid;
use framecache::Access;
use numpy::ndarray::{Array3, ArrayView3, ArrayViewMut3};
use numpy::{PyArray3, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;

/// One video frame: the seed module's ``Frame`` fields, with ``image`` an H×W×3 ``uint8``
/// numpy array (RGB) that belongs to this frame alone (or, loaded with ``writeable=False``,
/// a read-only view of the cache's pixels).
#[pyclass(module = "framecache", name = "Frame", get_all, set_all)]
pub struct PyFrame {
    /// Sequence number within the timeline.
    pub sequence: u64,
    /// The video chunk the frame was extracted from.
    pub chunk_id: u64,
    /// Presentation time in seconds.
    pub timestamp: f64,
    /// H×W×3 ``uint8`` RGB pixels.
    pub image: Py<PyAny>,
    /// Perceptual hash, as computed by the extractor.
    pub perceptual_hash: String,
}

#[pymethods]
impl PyFrame {
    #[new]
    #[pyo3(signature = (sequence, chunk_id, timestamp, image, perceptual_hash = String::new()),
        text_signature = "(sequence, chunk_id, timestamp, image, perceptual_hash='')")]
    fn new(
        sequence: u64,
        chunk_id: u64,
        timestamp: f64,
        image: Py<PyAny>,
        perceptual_hash: String,
    ) -> Self {
        PyFrame {
            sequence,
            chunk_id,
            timestamp,
            image,
            perceptual_hash,
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let shape = self
            .image
            .bind(py)
            .getattr("shape")
            .and_then(|s| s.repr())
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "?".to_owned());
        format!(
            "Frame(sequence={}, chunk_id={}, timestamp={:?}, image=<{shape}>, perceptual_hash={:?})",
            self.sequence, self.chunk_id, self.timestamp, self.perceptual_hash
        )
    }

    /// Pickles as its constructor call, so frames cross process boundaries
    /// (``multiprocessing``, ``DataLoader`` workers).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, FrameArgs)> {
        let py = slf.py();
        let this = slf.borrow();
        Ok((
            slf.get_type().into_any(),
            (
                this.sequence,
                this.chunk_id,
                this.timestamp,
                this.image.clone_ref(py),
                this.perceptual_hash.clone(),
            ),
        ))
    }
}

/// `Frame(...)`'s arguments, as `__reduce__` returns them.
type FrameArgs = (u64, u64, f64, Py<PyAny>, String);

/// Hands decoded pixels to numpy. The one place where decoded frames become arrays.
///
/// Writable (the default): an owned buffer moves into the array, a private map is viewed in
/// place, a buffer shared with the cache is copied once. Read-only: the array views the
/// pixels where they are (the cache's own buffer or map for a hit), with numpy's
/// `WRITEABLE` flag cleared, never copied.
pub fn image_to_array(
    py: Python<'_>,
    mut pixels: framecache::Pixels,
    access: Access,
) -> Bound<'_, PyAny> {
    let (width, height) = (pixels.width() as usize, pixels.height() as usize);
    if pixels.backing() == framecache::Backing::Owned {
        let owned = Array3::from_shape_vec((height, width, 3), pixels.into_vec())
            .expect("pixels hold height * width * 3 bytes");
        let array = PyArray3::from_owned_array(py, owned);
        if access == Access::ReadOnly {
            array.readwrite().make_nonwriteable();
        }
        return array.into_any();
    }
    if access == Access::ReadOnly {
        let ptr = pixels.as_raw().as_ptr();
        let owner = pixel_owner(py, pixels);
        // SAFETY: `ptr` addresses the height * width * 3 bytes of the buffer or map `owner`
        // now holds (moving `Pixels` into it moves no heap block or mapping), which stays
        // unchanged while it is shared (the cache never writes a buffer it has handed out),
        // and the array keeps `owner` alive. The array is made read-only before Python sees
        // it, and numpy cannot make it writable again: its memory belongs to a base object
        // that exposes no writable buffer.
        let view = unsafe { ArrayView3::from_shape_ptr((height, width, 3), ptr) };
        let array = unsafe { PyArray3::borrow_from_array(&view, owner) };
        array.readwrite().make_nonwriteable();
        return array.into_any();
    }
    // Shared with the cache: copied once here, so writes never reach it. Privately mapped:
    // not copied; the kernel copies only the pages a caller writes.
    let ptr = pixels.make_mut().as_mut_ptr();
    let owner = pixel_owner(py, pixels);
    // SAFETY: `ptr` addresses the height * width * 3 bytes of the buffer `owner` now holds
    // (moving `Pixels` into it moves no heap block or mapping), nothing else refers to that
    // buffer (a fresh copy or a private map), and the array keeps `owner` alive.
    let view = unsafe { ArrayViewMut3::from_shape_ptr((height, width, 3), ptr) };
    unsafe { PyArray3::borrow_from_array(&view, owner) }.into_any()
}

fn pixel_owner(py: Python<'_>, pixels: framecache::Pixels) -> Bound<'_, PyAny> {
    Bound::new(py, PixelOwner { _pixels: pixels })
        .expect("a plain Rust object can always be allocated")
        .into_any()
}

/// Keeps a frame's pixels alive for the numpy array that views them.
#[pyclass(frozen)]
struct PixelOwner {
    _pixels: framecache::Pixels,
}

/// A core frame as a `framecache.Frame`, its image writable or read-only as `access` says.
pub fn frame_to_py(
    py: Python<'_>,
    frame: framecache::Frame,
    access: Access,
) -> PyResult<Bound<'_, PyFrame>> {
    let image = image_to_array(py, frame.image, access).unbind();
    Bound::new(
        py,
        PyFrame {
            sequence: frame.seq,
            chunk_id: frame.chunk_id,
            timestamp: frame.timestamp,
            image,
            perceptual_hash: frame.perceptual_hash,
        },
    )
}

/// Reads a frame-like object (`sequence`, `chunk_id`, `timestamp`, `image`,
/// `perceptual_hash`) into a core frame, copying its pixels into one contiguous buffer
/// while the interpreter is held (the caller's array may change once it is released).
///
/// # Errors
/// `InvalidInputError` naming the attribute or the image's shape or dtype.
pub fn frame_from_py(obj: &Bound<'_, PyAny>, pixels: Read) -> PyResult<framecache::Frame> {
    let attr = |name: &'static str| {
        obj.getattr(name).map_err(|_| {
            invalid(
                "frame",
                type_name(obj),
                format!("has no attribute {name:?} (frames need sequence, chunk_id, timestamp, image, perceptual_hash)"),
            )
        })
    };
    let sequence = attr("sequence")?;
    let seq: u64 = sequence
        .extract()
        .map_err(|_| invalid("frame sequence", repr(&sequence), UNSIGNED))?;
    let chunk_id = optional(attr("chunk_id")?, "chunk_id of frame", seq, UNSIGNED)?;
    let timestamp = optional(
        attr("timestamp")?,
        "timestamp of frame",
        seq,
        "must be a number",
    )?;
    // Optional, as in the seed's dataclass (default "").
    let perceptual_hash = match obj.getattr("perceptual_hash") {
        Ok(h) => optional(h, "perceptual_hash of frame", seq, "must be a string")?,
        Err(_) => None,
    };
    let image = array_to_image(seq, &attr("image")?, pixels)?;
    Ok(framecache::Frame {
        seq,
        chunk_id: chunk_id.unwrap_or(0),
        timestamp: timestamp.unwrap_or(0.0),
        image,
        perceptual_hash: perceptual_hash.unwrap_or_default(),
    })
}

const UNSIGNED: &str = "must be a non-negative integer";

/// A frame attribute that may be None (then `None`), extracted, or an `InvalidInputError`
/// naming the frame and the value.
fn optional<'py, T: FromPyObjectOwned<'py>>(
    value: Bound<'py, PyAny>,
    what: &'static str,
    seq: u64,
    rule: &'static str,
) -> PyResult<Option<T>> {
    if value.is_none() {
        return Ok(None);
    }
    value
        .extract::<T>()
        .map(Some)
        .map_err(|_| invalid(what, format!("{seq}: {}", repr(&value)), rule))
}

/// Copies an H×W×3 `uint8` array (C-contiguous or not) into one buffer, held as shared
/// pixels: the copy is the frame's own and never written, so the core's writers share it
/// (a clone per encode job costs a reference count, not a copy of the frame).
/// How a call takes the pixels of the numpy arrays it is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// Copied while the interpreter is held: the caller may change its arrays as soon as
    /// the method returns (an awaitable's frames, whose work runs after that).
    Copy,
    /// Read where they are, for a blocking call: each array is kept alive, not copied,
    /// until the call returns. A C-contiguous array only; others are copied.
    InPlace,
}

/// A C-contiguous array's bytes, read where numpy keeps them: the reference held keeps the
/// array (and so its buffer) alive for as long as these bytes are.
struct ArrayBytes {
    _array: Py<PyAny>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the bytes are only read, and stay where they are for as long as `_array` holds
// its reference: numpy never frees or moves the data of an array that is referenced (its
// in-place `resize` refuses then). `Py` itself may be dropped on any thread.
unsafe impl Send for ArrayBytes {}
// SAFETY: as above; shared reads of plain bytes.
unsafe impl Sync for ArrayBytes {}

impl AsRef<[u8]> for ArrayBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` bytes of the array's buffer (see `Send` above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

fn array_to_image(seq: u64, image: &Bound<'_, PyAny>, read: Read) -> PyResult<framecache::Pixels> {
    let untyped = image.cast::<PyUntypedArray>().map_err(|_| {
        invalid(
            "image of frame",
            format!("{seq}: {}", type_name(image)),
            "must be a numpy array of shape (H, W, 3) and dtype uint8",
        )
    })?;
    let shape = untyped.shape().to_vec();
    let dtype = untyped.dtype().to_string();
    let describe = || format!("{seq}: shape {shape:?}, dtype {dtype}");
    let rule = "must be a numpy array of shape (H, W, 3) and dtype uint8";
    let array = image
        .cast::<PyArray3<u8>>()
        .map_err(|_| invalid("image of frame", describe(), rule))?;
    let (height, width) = match shape.as_slice() {
        [h, w, 3] if *h > 0 && *w > 0 => (*h, *w),
        _ => return Err(invalid("image of frame", describe(), rule)),
    };
    let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(invalid("image of frame", describe(), "is too large"));
    };
    let readonly = array
        .try_readonly()
        .map_err(|e| invalid("image of frame", describe(), format!("cannot be read: {e}")))?;
    // `as_slice` also accepts Fortran order, whose memory order is not row-major.
    let pixels = match readonly.as_slice() {
        Ok(contiguous) if untyped.is_c_contiguous() && read == Read::InPlace => {
            // Not copied: a serial copy of every frame under the interpreter's lock would
            // cost a third of a write of 720p frames before any encoder starts.
            bytes::Bytes::from_owner(ArrayBytes {
                _array: image.clone().unbind(),
                ptr: contiguous.as_ptr(),
                len: contiguous.len(),
            })
        }
        Ok(contiguous) if untyped.is_c_contiguous() => bytes::Bytes::from(contiguous.to_vec()),
        _ => bytes::Bytes::from(readonly.as_array().iter().copied().collect::<Vec<u8>>()),
    };
    Ok(framecache::Pixels::from_shared(width, height, pixels)
        .expect("an (H, W, 3) array holds H * W * 3 bytes"))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}
