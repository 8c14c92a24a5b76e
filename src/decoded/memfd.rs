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
    let file = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    if file.set_len(len as u64).is_err() {
        return Ok(None);
    }
    // Populated: the pages are allocated in one call rather than faulted in one by one as
    // the decoder writes them.
    // SAFETY: a shared map of a file no other process or thread has: nothing else writes
    // it, and it is never resized.
    let Ok(mut map) = (unsafe { MmapOptions::new().len(len).populate().map_mut(&file) }) else {
        return Ok(None);
    };
    codec::decode_into(jpeg, scale, &mut map)?;
    // Never written again: read-only from here, and private maps of it copy what they write.
    let Ok(map) = map.make_read_only() else {
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

/// Without `memfd`, frames go onto the heap.
#[cfg(not(target_os = "linux"))]
pub(super) fn decode(
    _jpeg: &[u8],
    _scale: Scale,
    _max_pixels: u64,
) -> Result<Option<InMemory>, DecodeError> {
    Ok(None)
}
