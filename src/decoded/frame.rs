//! One decoded frame as the decoded tiers hold it, what it is about ([`DecodedKey`]) and how a
//! load wants it (`LoadOptions`): its pixels on the heap, in a verified raw entry mapped
//! from disk, or in an in-memory file; handed out shared, or as a private copy-on-write map
//! when the caller may write.

use super::{format, memfd};
use crate::codec::{self, Scale};
use crate::pixels::Pixels;
use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};
use std::fs::File;

/// How loaded frames share their pixels with the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Access {
    /// Frames the caller may write without copying: a private copy-on-write map of the
    /// decoded disk entry when there is one (see [`crate::Backing::Private`]), else the
    /// shared buffer, which [`Pixels::make_mut`] copies on the first write.
    #[default]
    Writable,
    /// Read-only views of the cached buffers ([`crate::Backing::Shared`]): the cheapest, no
    /// mapping per load.
    ReadOnly,
}

/// What a decoded entry is about: a frame's key, its JPEG's blake3 and the scale.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DecodedKey {
    pub(crate) key: String,
    pub(crate) jpeg: [u8; 32],
    pub(crate) scale: Scale,
}

impl DecodedKey {
    pub(crate) fn new(key: &str, jpeg: blake3::Hash, scale: Scale) -> Self {
        DecodedKey {
            key: key.to_owned(),
            jpeg: *jpeg.as_bytes(),
            scale,
        }
    }

    /// The entry's name on disk, echoed in its header; starts with the frame key, so a
    /// prefix clear finds it.
    pub(crate) fn name(&self) -> String {
        crate::layout::decoded_entry_name(
            &self.key,
            &blake3::Hash::from_bytes(self.jpeg),
            self.scale.denominator(),
        )
    }
}

/// One decoded frame as the tiers hold it.
pub(crate) struct Decoded {
    width: u32,
    height: u32,
    buffer: Buffer,
}

enum Buffer {
    /// A heap buffer (where no in-memory file could be made).
    Heap(Bytes),
    /// A file mapped read-only: a verified raw entry (the pixels after its header page), or
    /// an in-memory file (`memfd`) a decode wrote.
    Mapped {
        /// What private maps are made from.
        source: MapSource,
        pixels: Bytes,
        offset: usize,
        /// Counts an in-memory file among the process's open ones while it is kept.
        _memfd: Option<memfd::Slot>,
    },
}

impl Decoded {
    pub(super) fn heap(pixels: Pixels) -> Self {
        let (width, height) = pixels.dimensions();
        Decoded {
            width,
            height,
            buffer: Buffer::Heap(Bytes::from(pixels.into_vec())),
        }
    }

    pub(super) fn mapped(width: u32, height: u32, entry: EntryFile, map: Mmap) -> Self {
        Decoded {
            width,
            height,
            buffer: Buffer::Mapped {
                source: MapSource::Entry(entry),
                pixels: Bytes::from_owner(map).slice(format::HEADER_LEN..),
                offset: format::HEADER_LEN,
                _memfd: None,
            },
        }
    }

    pub(crate) fn pixel_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    pub(crate) fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The pixels, read-only.
    pub(crate) fn raw(&self) -> &[u8] {
        match &self.buffer {
            Buffer::Heap(b) | Buffer::Mapped { pixels: b, .. } => b,
        }
    }

    /// The pixels for one caller: shared, or privately mapped when writable.
    pub(crate) fn pixels(&self, access: Access) -> Pixels {
        let (w, h) = (self.width, self.height);
        let shared = |b: &Bytes| Pixels::from_shared(w, h, b.clone()).expect("sized at build");
        match (&self.buffer, access) {
            (Buffer::Heap(b), _) | (Buffer::Mapped { pixels: b, .. }, Access::ReadOnly) => {
                shared(b)
            }
            (
                Buffer::Mapped {
                    source,
                    pixels,
                    offset,
                    ..
                },
                Access::Writable,
            ) => {
                let reopened;
                let file = match source {
                    MapSource::Memfd(file) => file,
                    MapSource::Entry(entry) => match entry.reopen() {
                        Some(file) => {
                            reopened = file;
                            &reopened
                        }
                        // Evicted or replaced since: the shared map, copied on write.
                        None => return shared(pixels),
                    },
                };
                // The whole file: its length is known (memmap2 would ask the file for it).
                let len = *offset + pixels.len();
                // SAFETY: a private mapping: writes go to this process's own copies of the
                // pages and never reach the file. An entry file is never modified after
                // being linked (see `DecodedDisk::read`), and an in-memory file never after
                // its decode (see `memfd::decode`), so unwritten pages keep reading the bytes
                // this entry was built with.
                match unsafe { MmapOptions::new().len(len).map_copy(file) } {
                    Ok(map) => {
                        Pixels::from_private(w, h, map, *offset).unwrap_or_else(|| shared(pixels))
                    }
                    Err(_) => shared(pixels),
                }
            }
        }
    }
}

/// What a mapped frame's private maps are made from.
enum MapSource {
    /// An in-memory file: kept open (counted, see `memfd::Slot`), as nothing else names it.
    Memfd(File),
    /// A raw entry on disk: its descriptor is closed once mapped (a tier of many small
    /// frames would hold tens of thousands open), and the entry opened again for a private
    /// map, if it is still the very file mapped (entries are never modified in place).
    Entry(EntryFile),
}

/// A raw entry file by path and identity.
pub(crate) struct EntryFile {
    path: std::path::PathBuf,
    id: (u64, u64),
}

impl EntryFile {
    pub(crate) fn new(path: std::path::PathBuf, meta: &std::fs::Metadata) -> Self {
        EntryFile {
            path,
            id: file_id(meta),
        }
    }

    /// The entry opened again, if it is still the file first mapped.
    fn reopen(&self) -> Option<File> {
        let (file, meta) = crate::localfs::open_with_meta(
            &self.path,
            crate::localfs::How::Read,
            Default::default(),
        )
        .ok()?;
        (file_id(&meta) == self.id).then_some(file)
    }
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.len(), 0)
}

/// Decodes `jpeg` into memory, refusing a frame over `max_pixels` from its header: into an
/// in-memory file where the system has them, so that writable frames handed out later are
/// private copy-on-write maps of it (free until written), else onto the heap (a writable
/// frame then copies it).
pub(super) fn decode_in_memory(
    jpeg: &[u8],
    scale: codec::Scale,
    max_pixels: u64,
) -> std::result::Result<Decoded, codec::DecodeError> {
    if let Some(m) = memfd::decode(jpeg, scale, max_pixels)? {
        return Ok(Decoded {
            width: m.width,
            height: m.height,
            buffer: Buffer::Mapped {
                source: MapSource::Memfd(m.file),
                pixels: Bytes::from_owner(m.map),
                offset: 0,
                _memfd: Some(m.slot),
            },
        });
    }
    codec::decode_jpeg_limited(jpeg, scale, max_pixels).map(Decoded::heap)
}
