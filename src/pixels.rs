//! Decoded RGB8 pixels that the cache can hand out without copying them.
//!
//! A frame's pixels live in one of three places, and the type says which:
//! - [`Backing::Owned`]: a heap buffer this value alone owns (a fresh decode);
//! - [`Backing::Shared`]: a read-only buffer shared with the decoded-frame cache and other
//!   callers (a heap buffer or a read-only memory map of a raw disk entry);
//! - [`Backing::Private`]: a private copy-on-write memory map (`MAP_PRIVATE`) of a raw disk
//!   entry: it shares the page cache with every process reading the entry until a page is
//!   written, and the kernel copies just that page then, so writes stay in this value.
//!
//! Writes go through [`Pixels::make_mut`], which copies a shared buffer first (as
//! `Arc::make_mut` does) and never copies an owned or private one; a write therefore never
//! reaches the cache or another caller.
//!
//! # Handing the pixels to another runtime without a copy
//! The buffer's owner is the `Pixels` value itself (it is `Send + Sync` and moves freely), so
//! a binding keeps it alive in an object of its own and builds a view over
//! [`Pixels::as_raw`] (read-only) or [`Pixels::make_mut`] (writable; after the first call the
//! buffer is this value's alone, and its pointer stays valid for as long as the value lives:
//! moving a `Pixels` never moves its buffer).
//! In PyO3 + numpy: wrap it in a `#[pyclass]`, call `make_mut` for a writable array, and make
//! the array with `PyArray::borrow_from_array(&view, owner)` where `view` is an
//! `ArrayViewMut3::from_shape_ptr((h, w, 3), ptr)`; for a read-only array use `as_raw` and
//! clear the array's `WRITEABLE` flag. [`Pixels::into_vec`] moves an owned buffer out
//! instead (`PyArray::from_vec`), copying only when the buffer is shared or mapped.

use bytes::Bytes;
use image::RgbImage;
use memmap2::MmapMut;

/// Where a [`Pixels`] value keeps its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A heap buffer owned by this value alone.
    Owned,
    /// A read-only buffer shared with the cache; writing copies it first.
    Shared,
    /// A private copy-on-write map of a raw disk entry; writing copies single pages.
    Private,
}

enum Data {
    Owned(Vec<u8>),
    Shared(Bytes),
    /// The map and where in it the pixels start (after the entry's header page).
    Private(MmapMut, usize),
}

/// An RGB8 image, row-major, 3 bytes a pixel, no row padding.
pub struct Pixels {
    width: u32,
    height: u32,
    data: Data,
}

impl Pixels {
    /// Wraps an owned buffer; `None` unless it holds exactly `width * height * 3` bytes.
    pub fn from_vec(width: u32, height: u32, rgb: Vec<u8>) -> Option<Self> {
        (rgb.len() == byte_len(width, height)).then_some(Pixels {
            width,
            height,
            data: Data::Owned(rgb),
        })
    }

    /// Wraps a shared read-only buffer; `None` unless it holds exactly `width * height * 3`
    /// bytes.
    pub fn from_shared(width: u32, height: u32, rgb: Bytes) -> Option<Self> {
        (rgb.len() == byte_len(width, height)).then_some(Pixels {
            width,
            height,
            data: Data::Shared(rgb),
        })
    }

    /// Wraps a private (copy-on-write) map whose pixels start at `offset`; `None` unless
    /// they run exactly to its end.
    pub(crate) fn from_private(
        width: u32,
        height: u32,
        map: MmapMut,
        offset: usize,
    ) -> Option<Self> {
        (map.len().checked_sub(offset) == Some(byte_len(width, height))).then_some(Pixels {
            width,
            height,
            data: Data::Private(map, offset),
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// `(width, height)`.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Where the bytes live.
    pub fn backing(&self) -> Backing {
        match self.data {
            Data::Owned(_) => Backing::Owned,
            Data::Shared(_) => Backing::Shared,
            Data::Private(..) => Backing::Private,
        }
    }

    /// The pixels, `width * height * 3` bytes. Free.
    pub fn as_raw(&self) -> &[u8] {
        match &self.data {
            Data::Owned(v) => v,
            Data::Shared(b) => b,
            Data::Private(map, offset) => &map[*offset..],
        }
    }

    /// Writable pixels. Copies once when the buffer is shared with the cache (the copy then
    /// belongs to this value); free when owned or privately mapped.
    pub fn make_mut(&mut self) -> &mut [u8] {
        if let Data::Shared(b) = &self.data {
            self.data = Data::Owned(b.to_vec());
        }
        match &mut self.data {
            Data::Owned(v) => v,
            Data::Private(map, offset) => &mut map[*offset..],
            Data::Shared(_) => unreachable!("replaced above"),
        }
    }

    /// The pixels as a `Vec`: moved when owned, copied otherwise.
    pub fn into_vec(self) -> Vec<u8> {
        match self.data {
            Data::Owned(v) => v,
            _ => self.as_raw().to_vec(),
        }
    }

    /// An `image` crate buffer (copies unless owned).
    pub fn into_rgb_image(self) -> RgbImage {
        let (w, h) = self.dimensions();
        RgbImage::from_raw(w, h, self.into_vec()).expect("length checked at construction")
    }

    /// A copy as an `image` crate buffer.
    pub fn to_rgb_image(&self) -> RgbImage {
        RgbImage::from_raw(self.width, self.height, self.as_raw().to_vec())
            .expect("length checked at construction")
    }
}

fn byte_len(width: u32, height: u32) -> usize {
    width as usize * height as usize * 3
}

impl From<RgbImage> for Pixels {
    fn from(image: RgbImage) -> Self {
        let (width, height) = image.dimensions();
        Pixels {
            width,
            height,
            data: Data::Owned(image.into_raw()),
        }
    }
}

impl Clone for Pixels {
    /// Shares a shared buffer; copies an owned or private one (each value owns its writes).
    fn clone(&self) -> Self {
        let data = match &self.data {
            Data::Shared(b) => Data::Shared(b.clone()),
            _ => Data::Owned(self.as_raw().to_vec()),
        };
        Pixels {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        self.dimensions() == other.dimensions() && self.as_raw() == other.as_raw()
    }
}

impl Eq for Pixels {}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pixels")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("backing", &self.backing())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_to_shared_pixels_copy_first() {
        let cached = Bytes::from(vec![1u8; 2 * 2 * 3]);
        let mut a = Pixels::from_shared(2, 2, cached.clone()).unwrap();
        let b = a.clone();
        assert_eq!(b.backing(), Backing::Shared);
        a.make_mut()[0] = 9;
        assert_eq!(a.backing(), Backing::Owned);
        assert_eq!(a.as_raw()[0], 9);
        assert_eq!(b.as_raw()[0], 1);
        assert_eq!(cached[0], 1);
    }

    #[test]
    fn lengths_are_checked() {
        assert!(Pixels::from_vec(2, 2, vec![0; 11]).is_none());
        assert!(Pixels::from_shared(2, 2, Bytes::from(vec![0; 13])).is_none());
        let p = Pixels::from_vec(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(p.clone().into_rgb_image().get_pixel(1, 0).0, [4, 5, 6]);
        assert_eq!(p.to_rgb_image().dimensions(), (2, 1));
    }
}
