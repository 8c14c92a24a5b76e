//! How the cache touches local files: private (or group) modes set explicitly, never through
//! a symbolic link, regular files only, and cache directories checked before use (owner,
//! mode, filesystem type). Rules for operators in `docs/operations.md` ("Shared machines").
//!
//! Longer than most files (about 480 lines of code, then its unit tests): each check has a
//! unix body and a twin for other systems, and they stay together so none is missed.

use crate::error::{Error, Result};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Who may use the files and directories the cache creates on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// This user only: directories `0700`, files `0600` (the default).
    #[default]
    Private,
    /// Every user of the group with this id: directories `2770` (setgid, so what is
    /// created inside keeps the group), files `0660`; a cache directory owned by another
    /// user of the group is accepted when its group and mode are these.
    Group(u32),
}

impl Sharing {
    /// The mode of a directory the cache creates.
    pub fn dir_mode(self) -> u32 {
        match self {
            Sharing::Private => 0o700,
            Sharing::Group(_) => 0o2770,
        }
    }

    /// The mode of a file the cache creates.
    pub fn file_mode(self) -> u32 {
        match self {
            Sharing::Private => 0o600,
            Sharing::Group(_) => 0o660,
        }
    }

    fn gid(self) -> Option<u32> {
        match self {
            Sharing::Private => None,
            Sharing::Group(gid) => Some(gid),
        }
    }

    /// Parses a group name or a numeric gid (`FRAMECACHE_SHARE_GROUP`).
    ///
    /// # Errors
    /// A message when no such group exists.
    pub fn parse_group(text: &str) -> std::result::Result<Sharing, String> {
        let t = text.trim();
        if let Ok(gid) = t.parse::<u32>() {
            return Ok(Sharing::Group(gid));
        }
        group_id(t)
            .map(Sharing::Group)
            .ok_or_else(|| format!("no group named {t:?} on this machine (a name or a gid)"))
    }
}

#[cfg(unix)]
fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the buffer's length is passed with it.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut group,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(group.gr_gid)
}

#[cfg(not(unix))]
fn group_id(_name: &str) -> Option<u32> {
    None
}

/// How [`open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    /// Read only; the file must exist.
    Read,
    /// Read and write, creating it (with the sharing's mode) when missing.
    ReadWriteCreate,
    /// Read and write, creating it; fails when it exists.
    CreateNew,
}

/// Opens `path` without following a symbolic link at its last component, and only if it
/// is a regular file (a FIFO or a device is refused without blocking on it). A file this
/// user owns whose mode is not the sharing's is given that mode (files of older versions,
/// or created under a umask).
///
/// # Errors
/// The OS error; a symbolic link or a file that is not regular is
/// [`io::ErrorKind::InvalidInput`], saying so.
pub(crate) fn open(path: &Path, how: How, sharing: Sharing) -> io::Result<File> {
    open_with_meta(path, how, sharing).map(|(file, _)| file)
}

/// As [`open`], with the file's metadata as the open found it (one `fstat` for both).
///
/// # Errors
/// As [`open`].
#[cfg(unix)]
pub(crate) fn open_with_meta(
    path: &Path,
    how: How,
    sharing: Sharing,
) -> io::Result<(File, fs::Metadata)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mut options = fs::OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .mode(sharing.file_mode());
    match how {
        How::Read => {}
        How::ReadWriteCreate => {
            options.write(true).create(true).truncate(false);
        }
        How::CreateNew => {
            options.write(true).create_new(true);
        }
    }
    let file = options.open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            refused("a symbolic link")
        } else {
            e
        }
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused("not a regular file"));
    }
    // `O_NONBLOCK` stays set: it has no effect on a regular file's reads, writes, maps or
    // `flock`s (open(2)), so clearing it would cost two `fcntl`s per open for nothing.
    let fd = file.as_raw_fd();
    if how != How::Read && meta.uid() == euid() {
        if let Some(gid) = sharing.gid().filter(|&gid| gid != meta.gid()) {
            // SAFETY: a plain syscall on an open descriptor; -1 keeps the owner.
            unsafe { libc::fchown(fd, u32::MAX, gid) };
        }
        if meta.mode() & 0o7777 != sharing.file_mode() {
            file.set_permissions(fs::Permissions::from_mode(sharing.file_mode()))?;
        }
    }
    Ok((file, meta))
}

#[cfg(not(unix))]
pub(crate) fn open_with_meta(
    path: &Path,
    how: How,
    _sharing: Sharing,
) -> io::Result<(File, fs::Metadata)> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    match how {
        How::Read => {}
        How::ReadWriteCreate => {
            options.write(true).create(true).truncate(false);
        }
        How::CreateNew => {
            options.write(true).create_new(true);
        }
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused("not a regular file"));
    }
    Ok((file, meta))
}

/// Reads a whole regular file, never through a symbolic link.
pub(crate) fn read(path: &Path) -> io::Result<Vec<u8>> {
    let (file, meta) = open_with_meta(path, How::Read, Sharing::Private)?;
    read_all(&file, meta.len())
}

/// Reads the `len` bytes of a file opened with its metadata: one `read` for a regular
/// file, where `read_to_end` would ask for the size and the position again and then read
/// once more to find the end. A file that has grown since is read up to `len`.
pub(crate) fn read_all(file: &File, len: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

fn refused(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}: the cache opens regular files only, never through a link"),
    )
}

/// This process's effective user id.
#[cfg(unix)]
pub(crate) fn euid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` and its missing parents with the sharing's directory mode, set explicitly
/// (the umask does not narrow it, and `mkdir` would drop the setgid bit). A path component
/// that exists is left as it is.
///
/// # Errors
/// The OS error of the first directory that cannot be created.
pub(crate) fn create_dir_all(dir: &Path, sharing: Sharing) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            // A link to a directory (an operator's choice for the configured path) is
            // followed only here, at the top; anything else is not a directory.
            if fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent, sharing)?;
    }
    match make_dir(dir, sharing) {
        Ok(()) => Ok(()),
        // Another process made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn make_dir(dir: &Path, sharing: Sharing) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .mode(sharing.dir_mode() & 0o777)
        .create(dir)?;
    if let Some(gid) = sharing.gid() {
        let c = cpath(dir)?;
        // SAFETY: a plain syscall on a NUL-terminated path; -1 keeps the owner.
        unsafe { libc::lchown(c.as_ptr(), u32::MAX, gid) };
    }
    // Set after the group: the kernel drops a setgid bit for a group this user is not in.
    fs::set_permissions(dir, fs::Permissions::from_mode(sharing.dir_mode()))
}

#[cfg(not(unix))]
fn make_dir(dir: &Path, _sharing: Sharing) -> io::Result<()> {
    fs::create_dir(dir)
}

#[cfg(unix)]
fn cpath(path: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// Whether `dir` is a directory itself, not a symbolic link to one: walks of the cache's
/// own sub-directories (shards) skip links.
pub(crate) fn is_real_dir(dir: &Path) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
}

/// The base of the per-user fallback directories, used when neither `HOME` nor the XDG
/// variables say where this user's files go: `{tmp}/framecache-{uid}`.
pub(crate) fn fallback_base() -> PathBuf {
    #[cfg(unix)]
    let uid = euid();
    #[cfg(not(unix))]
    let uid = 0;
    std::env::temp_dir().join(format!("framecache-{uid}"))
}

/// Prepares a cache directory for use: creates it with the sharing's mode, then refuses it
/// when another user owns it (in group mode: unless its group and mode are the sharing's),
/// tightens the mode of one this user owns, and refuses a network filesystem unless
/// `allow_network_fs`. A directory under the per-user fallback ([`fallback_base`]) needs
/// that base to be this user's own, mode `0700`, not a link.
///
/// # Errors
/// [`Error::Config`] naming the path, what is wrong and the setting that changes it;
/// [`Error::Io`] when it cannot be created or inspected.
pub(crate) fn prepare_cache_dir(
    dir: &Path,
    sharing: Sharing,
    allow_network_fs: bool,
) -> Result<()> {
    let setting = "FRAMECACHE_CACHE_DIR";
    check_fallback(dir, setting)?;
    if let Err(e) = create_dir_all(dir, sharing) {
        // Not a refusal: a directory that cannot be made is a failing tier, which passes
        // reads through to the origin (counted), as when it fails later.
        tracing::warn!("cache directory {} cannot be created: {e}", dir.display());
        return Ok(());
    }
    check_owner(dir, sharing, "cache directory", setting)?;
    if !allow_network_fs
        && let Some(kind) = network_fs(dir).map_err(|e| Error::io("statfs", dir, e))?
    {
        return Err(Error::Config(format!(
            "cache directory {} is on a network filesystem ({kind}), where file locks may \
                 succeed without locking anything across machines; use a local directory \
                 (FRAMECACHE_CACHE_DIR) or allow it with FRAMECACHE_ALLOW_NETWORK_FS=1",
            dir.display()
        )));
    }
    Ok(())
}

/// Creates the fs origin's root with the sharing's mode (checking the per-user fallback
/// base as [`prepare_cache_dir`] does).
///
/// # Errors
/// As [`prepare_cache_dir`].
pub(crate) fn prepare_fs_root(root: &Path, sharing: Sharing) -> Result<()> {
    // The store may be another user's on purpose (a data set others write): its owner
    // and mode are left as they are; what the cache creates in it follows `sharing`.
    check_fallback(root, "FRAMECACHE_ROOT")?;
    create_dir_all(root, sharing).map_err(|e| Error::io("create", root, e))
}

fn check_fallback(dir: &Path, setting: &str) -> Result<()> {
    let base = fallback_base();
    if dir.starts_with(&base) {
        check_fallback_base(&base, setting)?;
    }
    Ok(())
}

#[cfg(unix)]
fn check_fallback_base(base: &Path, setting: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match fs::DirBuilder::new().mode(0o700).create(base) {
        Ok(()) => {
            fs::set_permissions(base, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("chmod", base, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create", base, e)),
    }
    let meta = fs::symlink_metadata(base).map_err(|e| Error::io("stat", base, e))?;
    let me = euid();
    let wrong = if meta.file_type().is_symlink() {
        Some("is a symbolic link".to_owned())
    } else if !meta.is_dir() {
        Some("is not a directory".to_owned())
    } else if meta.uid() != me {
        Some(format!(
            "is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        ))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!("has mode {:04o}, not 0700", meta.mode() & 0o7777))
    } else {
        None
    };
    match wrong {
        None => Ok(()),
        Some(wrong) => Err(Error::Config(format!(
            "{} {wrong}: neither HOME nor XDG_CACHE_HOME/XDG_DATA_HOME is set, and this \
             per-user fallback directory cannot be trusted; set {setting} (or HOME) to a \
             directory of your own",
            base.display()
        ))),
    }
}

#[cfg(not(unix))]
fn check_fallback_base(base: &Path, _setting: &str) -> Result<()> {
    fs::create_dir_all(base).map_err(|e| Error::io("create", base, e))
}

#[cfg(unix)]
fn check_owner(dir: &Path, sharing: Sharing, what: &str, setting: &str) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Config(format!(
            "{what} {} is not a directory",
            dir.display()
        )));
    }
    let me = euid();
    let mode = meta.mode() & 0o7777;
    if meta.uid() == me {
        // Ours: give it the sharing's group and mode (a directory of an older version, or
        // one whose sharing changed).
        if let Some(gid) = sharing.gid().filter(|&gid| gid != meta.gid()) {
            let c = cpath(dir).map_err(|e| Error::io("chown", dir, e))?;
            // SAFETY: a plain syscall on a NUL-terminated path; -1 keeps the owner.
            if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
                let e = io::Error::last_os_error();
                return Err(Error::Config(format!(
                    "{what} {} cannot be given group {gid} (FRAMECACHE_SHARE_GROUP): {e}; \
                     this user must be a member of the group",
                    dir.display()
                )));
            }
        }
        if mode != sharing.dir_mode() {
            fs::set_permissions(dir, fs::Permissions::from_mode(sharing.dir_mode()))
                .map_err(|e| Error::io("chmod", dir, e))?;
            tracing::info!(
                "{what} {}: mode {mode:04o} set to {:04o}",
                dir.display(),
                sharing.dir_mode()
            );
        }
        return Ok(());
    }
    if let Some(gid) = sharing.gid() {
        if meta.gid() == gid && mode & 0o2070 == 0o2070 && mode & 0o007 == 0 {
            return Ok(());
        }
        return Err(Error::Config(format!(
            "{what} {} is owned by uid {} with group {} and mode {mode:04o}: a directory of \
             another user is used only when its group is the shared one ({gid}, \
             FRAMECACHE_SHARE_GROUP) and its mode 2770; fix it, or use another directory \
             ({setting})",
            dir.display(),
            meta.uid(),
            meta.gid(),
        )));
    }
    Err(Error::Config(format!(
        "{what} {} is owned by uid {}, not by this user (uid {me}): refusing it, as another \
         user could read or plant its files; use a directory of your own ({setting}), or \
         share one with a group (FRAMECACHE_SHARE_GROUP)",
        dir.display(),
        meta.uid(),
    )))
}

#[cfg(not(unix))]
fn check_owner(_dir: &Path, _sharing: Sharing, _what: &str, _setting: &str) -> Result<()> {
    Ok(())
}

/// The network or userspace filesystems on which the cache refuses to run by default, by
/// their `statfs` magic number (`f_type`): their `flock` may succeed without locking
/// across machines, and their caching breaks what the shared ledger assumes.
const NETWORK_FS: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
    (0x6573_5546, "FUSE"),
    (0x00C3_6400, "CephFS"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "AFS"),
    (0x0102_1997, "9P"),
    (0x1983_0326, "BeeGFS"),
    (0x7375_7245, "Coda"),
];

/// The name of the network filesystem whose `statfs` magic number is `f_type`, if it is one.
pub(crate) fn classify_fs(f_type: i64) -> Option<&'static str> {
    // f_type is a signed word on some targets: compare its low 32 bits.
    let low = f_type & 0xFFFF_FFFF;
    NETWORK_FS
        .iter()
        .find(|(magic, _)| *magic == low)
        .map(|(_, name)| *name)
}

/// The network filesystem `dir` is on, if any.
#[cfg(target_os = "linux")]
pub(crate) fn network_fs(dir: &Path) -> io::Result<Option<&'static str>> {
    let c = cpath(dir)?;
    // SAFETY: statfs fills the zeroed struct; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(classify_fs(st.f_type as i64))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn network_fs(_dir: &Path) -> io::Result<Option<&'static str>> {
    Ok(None)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn network_filesystems_are_told_by_their_magic_numbers() {
        assert_eq!(classify_fs(0x6969), Some("NFS"));
        assert_eq!(classify_fs(0xFF53_4D42), Some("CIFS"));
        // As a negative signed word, the way some targets report it.
        assert_eq!(classify_fs(0xFF53_4D42_u32 as i32 as i64), Some("CIFS"));
        assert_eq!(classify_fs(0xFE53_4D42), Some("SMB2"));
        assert_eq!(classify_fs(0x517B), Some("SMB"));
        assert_eq!(classify_fs(0x0BD0_0BD0), Some("Lustre"));
        assert_eq!(classify_fs(0x4750_4653), Some("GPFS"));
        assert_eq!(classify_fs(0x6573_5546), Some("FUSE"));
        // ext4, xfs, btrfs, tmpfs, overlayfs are local.
        for local in [0xEF53, 0x5846_5342, 0x9123_683E, 0x0102_1994, 0x794C_7630] {
            assert_eq!(classify_fs(local), None, "{local:#x}");
        }
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(network_fs(tmp.path()).unwrap(), None);
    }

    #[test]
    fn created_files_and_directories_are_private_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: umask is process-wide; this test only widens what a creation could get.
        let old = unsafe { libc::umask(0) };
        let dir = tmp.path().join("a/b");
        create_dir_all(&dir, Sharing::Private).unwrap();
        let file = dir.join("f");
        drop(open(&file, How::CreateNew, Sharing::Private).unwrap());
        unsafe { libc::umask(old) };
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn group_sharing_makes_setgid_directories_and_group_files() {
        let tmp = tempfile::tempdir().unwrap();
        let gid = fs::metadata(tmp.path()).unwrap().gid();
        let dir = tmp.path().join("shared");
        create_dir_all(&dir, Sharing::Group(gid)).unwrap();
        assert_eq!(mode(&dir), 0o2770);
        let file = dir.join("f");
        drop(open(&file, How::ReadWriteCreate, Sharing::Group(gid)).unwrap());
        assert_eq!(mode(&file), 0o660);
        assert_eq!(fs::metadata(&file).unwrap().gid(), gid);
    }

    #[test]
    fn links_fifos_and_directories_are_never_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        fs::write(&target, b"secret").unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for how in [How::Read, How::ReadWriteCreate] {
            let e = open(&link, how, Sharing::Private).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{how:?}: {e}");
        }
        assert!(read(&link).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"secret");
        let fifo = tmp.path().join("fifo");
        let c = cpath(&fifo).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Would block forever without O_NONBLOCK (no writer), and is no regular file.
        for how in [How::Read, How::ReadWriteCreate] {
            let e = open(&fifo, how, Sharing::Private).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{how:?}: {e}");
        }
        assert!(open(tmp.path(), How::Read, Sharing::Private).is_err());
    }

    #[test]
    fn an_older_files_mode_is_tightened_when_opened_for_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        drop(open(&file, How::Read, Sharing::Private).unwrap());
        assert_eq!(mode(&file), 0o644);
        drop(open(&file, How::ReadWriteCreate, Sharing::Private).unwrap());
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_directory_of_another_user_is_refused_naming_owner_and_setting() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        if euid() != 0 {
            // Only root can give a directory away; the mode part still runs.
            prepare_cache_dir(&dir, Sharing::Private, false).unwrap();
            assert_eq!(mode(&dir), 0o700);
            return;
        }
        let c = cpath(&dir).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 54321, 54321) }, 0);
        let e = prepare_cache_dir(&dir, Sharing::Private, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&dir.display().to_string()), "{e}");
        assert!(e.contains("uid 54321"), "{e}");
        assert!(e.contains("FRAMECACHE_CACHE_DIR"), "{e}");
        assert!(e.contains("FRAMECACHE_SHARE_GROUP"), "{e}");
        // In group mode: refused while its group or mode is not the shared one...
        let e = prepare_cache_dir(&dir, Sharing::Group(54321), false).unwrap_err();
        assert!(e.to_string().contains("2770"), "{e}");
        // ... and accepted once both are.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o2770)).unwrap();
        prepare_cache_dir(&dir, Sharing::Group(54321), false).unwrap();
        assert!(prepare_cache_dir(&dir, Sharing::Group(54322), false).is_err());
        assert!(prepare_cache_dir(&dir, Sharing::Private, false).is_err());
    }

    #[test]
    fn an_own_directory_is_tightened_to_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mine");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        prepare_cache_dir(&dir, Sharing::Private, false).unwrap();
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn group_names_and_ids_parse() {
        assert_eq!(Sharing::parse_group("1234"), Ok(Sharing::Group(1234)));
        assert_eq!(Sharing::parse_group("root"), Ok(Sharing::Group(0)));
        assert!(Sharing::parse_group("no-such-group-here").is_err());
    }
}
