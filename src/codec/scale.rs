//! [`Scale`]: the output size of a decode, full or scaled down through the DCT.

/// Output size of a decode: full, or scaled down through the DCT, which costs much less
/// than a full decode and a resize. Scaled sizes round up (`ceil(width / n)`), as libjpeg's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scale {
    /// Every pixel.
    #[default]
    Full,
    /// 1/2 of the width and height.
    Half,
    /// 1/4.
    Quarter,
    /// 1/8.
    Eighth,
}

impl Scale {
    /// The divisor: 1, 2, 4 or 8.
    pub fn denominator(self) -> u32 {
        match self {
            Scale::Full => 1,
            Scale::Half => 2,
            Scale::Quarter => 4,
            Scale::Eighth => 8,
        }
    }

    /// The scale with divisor `n` (1, 2, 4 or 8).
    pub fn from_denominator(n: u32) -> Option<Scale> {
        match n {
            1 => Some(Scale::Full),
            2 => Some(Scale::Half),
            4 => Some(Scale::Quarter),
            8 => Some(Scale::Eighth),
            _ => None,
        }
    }

    /// `(width, height)` scaled, rounded up.
    pub fn apply(self, (width, height): (u32, u32)) -> (u32, u32) {
        let n = self.denominator();
        (width.div_ceil(n), height.div_ceil(n))
    }
}
