//! Decoded frames in anonymous in-memory files (Linux `memfd`), so that the memory tier
//! hands out writable frames as private copy-on-write maps instead of copies.

use crate::codec::{self, DecodeError, Scale};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// In-memory files this process keeps open for decoded frames.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Each in-memory file holds a descriptor for as long as the memory tier keeps its frame:
/// past a quarter of the process's descriptor limit (at most 4,096) frames go onto the heap
/// instead, so that a memory tier of many small frames never starves sockets and files.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out pointer for the process's own limit.
        let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
        } else {
            1024
        };
        (soft / 4).min(4096)
    })
}

/// A frame decoded into an in-memory file: the file (for private maps) and its read-only map.
pub(super) struct InMemory {
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) file: std::fs::File,
    pub(super) map: memmap2::Mmap,
    /// Counts the file among the process's open ones while it is kept.
    pub(super) slot: Slot,
}

/// One of the process's in-memory files, counted until dropped.
pub(super) struct Slot(());

impl Slot {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn take() -> Option<Slot> {
        let taken = LIVE.fetch_add(1, Ordering::Relaxed);
        if taken >= limit() {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Decodes `jpeg` into a fresh in-memory file; `Ok(None)` where none can be made (another
/// system, or out of descriptors): the caller decodes onto the heap then.
///
/// # Errors
/// The decoder's, or a frame over `max_pixels` (refused from its header).
#[cfg(target_os = "linux")]
pub(super) fn decode(
    jpeg: &[u8],
    scale: Scale,
    max_pixels: u64,
) -> Result<Option<InMemory>, DecodeError> {
    use memmap2::MmapOptions;
    use std::fs::File;
    use std::os::fd::{FromRawFd, OwnedFd};

    let (width, height) = codec::checked_dimensions(jpeg, scale, max_pixels)?;
    let len = width as usize * height as usize * 3;
    let Some(slot) = Slot::take() else {
        return Ok(None);
    };
    // SAFETY: the name is a NUL-terminated literal; the flags are plain integers.
    let raw = unsafe { libc::memfd_create(c"framecache-frame".as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Ok(None);
    }
    // SAFETY: `raw` is a descriptor memfd_create just returned, owned by nothing else.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    // Decoded into a reused buffer, then written into the file: no page of this process is
    // faulted in or zeroed for it, and no map of it is made writable, populated, then made
    // read-only. Each of those holds the process's memory-map lock, which the threads
    // decoding beside this one wait for to map and unmap their own frames: cold loads of
    // 300 720p frames took 1.06 s against 1.35 s this way (docs/performance.md).
    let written = with_scratch(len, |scratch| {
        codec::decode_into(jpeg, scale, scratch)?;
        Ok::<bool, DecodeError>(std::io::Write::write_all(&mut file, scratch).is_ok())
    })?;
    if !written {
        return Ok(None);
    }
    // SAFETY: a read-only map of a file no other process or thread has and that is never
    // written or resized again (private maps of it copy what they write).
    let Ok(map) = (unsafe { MmapOptions::new().len(len).map(&file) }) else {
        return Ok(None);
    };
    Ok(Some(InMemory {
        width,
        height,
        file,
        map,
        slot,
    }))
}

/// Decode buffers kept for reuse: at most one per core (as many as decode at once), none
/// over [`SCRATCH_KEPT_MAX`] bytes.
#[cfg(target_os = "linux")]
static SCRATCH: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// The largest decode buffer kept (a 4K frame needs 25 MB): a rare huge frame's buffer is
/// freed after its decode.
#[cfg(target_os = "linux")]
const SCRATCH_KEPT_MAX: usize = 32 << 20;

/// Runs `f` on a buffer of `len` bytes taken from [`SCRATCH`] (or made), then keeps the
/// buffer for the next decode if there is room. Only `try_lock`: a thread that finds the
/// pool busy makes a buffer of its own, and a process forked while another thread held
/// the lock (which then stays held in the child) never waits for it.
#[cfg(target_os = "linux")]
fn with_scratch<T>(len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    // Asked once: the standard library reads the cgroup's CPU quota files at each call.
    static KEEP: OnceLock<usize> = OnceLock::new();
    let keep = *KEEP.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let taken = SCRATCH.try_lock().ok().and_then(|mut pool| pool.pop());
    let mut buf = taken.unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let out = f(&mut buf[..len]);
    if buf.len() <= SCRATCH_KEPT_MAX
        && let Ok(mut pool) = SCRATCH.try_lock()
        && pool.len() < keep
    {
        pool.push(buf);
    }
    out
}

/// Without `memfd`, frames go onto the heap.
#[cfg(not(target_os = "linux"))]
pub(super) fn decode(
    _jpeg: &[u8],
    _scale: Scale,
    _max_pixels: u64,
) -> Result<Option<InMemory>, DecodeError> {
    Ok(None)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::codec::DEFAULT_MAX_FRAME_PIXELS;

    fn jpeg(seq: u64, width: u32, height: u32) -> Vec<u8> {
        let frame = crate::synthetic_frame(seq, width, height);
        codec::encode_jpeg(&frame.image, 85).unwrap()
    }

    /// Decode buffers are reused: each frame reads as its own decode, whatever size and
    /// content the buffer held before, and a failed decode leaves nothing behind.
    #[test]
    fn frames_decoded_one_after_another_are_each_their_own() {
        let inputs = [
            jpeg(1, 320, 240),
            jpeg(2, 64, 48),
            b"\xFF\xD8\xFFnot a jpeg".to_vec(),
            jpeg(3, 320, 240),
            jpeg(4, 160, 90),
        ];
        for _ in 0..2 {
            for input in &inputs {
                let expected = codec::decode_jpeg(input);
                let got = decode(input, Scale::Full, DEFAULT_MAX_FRAME_PIXELS);
                match expected {
                    Ok(pixels) => {
                        let got = got.unwrap().expect("an in-memory file on Linux");
                        assert_eq!((got.width, got.height), pixels.dimensions());
                        assert_eq!(&got.map[..], pixels.as_raw());
                    }
                    Err(_) => assert!(got.is_err()),
                }
            }
        }
    }
}
