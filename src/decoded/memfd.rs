//! Decoded frames in anonymous in-memory files (Linux `memfd`), so that the memory tier
//! hands out writable frames as private copy-on-write maps instead of copies.

use super::{Decoded, Store};
use crate::codec::{self, DecodeError, Scale};

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
) -> Result<Option<Decoded>, DecodeError> {
    use bytes::Bytes;
    use memmap2::MmapOptions;
    use std::fs::File;
    use std::os::fd::{FromRawFd, OwnedFd};

    let (width, height) = codec::checked_dimensions(jpeg, scale, max_pixels)?;
    let len = width as usize * height as usize * 3;
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
    Ok(Some(Decoded {
        width,
        height,
        store: Store::Mapped {
            file,
            pixels: Bytes::from_owner(map),
            offset: 0,
        },
    }))
}

/// Without `memfd`, frames go onto the heap.
#[cfg(not(target_os = "linux"))]
pub(super) fn decode(
    _jpeg: &[u8],
    _scale: Scale,
    _max_pixels: u64,
) -> Result<Option<Decoded>, DecodeError> {
    Ok(None)
}
