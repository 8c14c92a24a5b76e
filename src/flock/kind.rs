//! [`LockKind`]: the kinds of lock the cache takes, named in logs and by the tests that stop
//! a thread holding one (the gate, feature `test-hooks`).

/// The kinds of lock the cache takes (named in logs, and by tests that stop at one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LockKind {
    /// A decode stripe lock of the decoded-frame disk tier.
    Decode = 1,
    /// A fetch lock of the disk tier (one process per machine downloads a key).
    Fetch = 2,
    /// The disk tier directory's lock (shared or exclusive).
    Directory = 3,
    /// A writer's lock on its temp file.
    Temp = 4,
    /// The disk tier's evictor election lock, held for as long as a process evicts.
    Evictor = 5,
    /// Not a lock of its own: the raw-frame writer behind loads, stopped before its next
    /// write (holding that frame's decode stripe lock when its decode held it).
    RawWrite = 6,
}

impl LockKind {
    /// The kind a test names: `decode`, `fetch`, `directory`, `temp`, `evictor` or
    /// `raw-write`.
    pub fn parse(name: &str) -> Option<LockKind> {
        match name {
            "decode" => Some(LockKind::Decode),
            "fetch" => Some(LockKind::Fetch),
            "directory" => Some(LockKind::Directory),
            "temp" => Some(LockKind::Temp),
            "evictor" => Some(LockKind::Evictor),
            "raw-write" => Some(LockKind::RawWrite),
            _ => None,
        }
    }
}
