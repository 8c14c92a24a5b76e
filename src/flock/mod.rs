//! Kernel file locks (`flock`) as the disk tiers use them.

#[doc(hidden)]
pub mod gate;
