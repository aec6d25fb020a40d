//! Files that a command run as root (`sudo gatehouse restore`, a key the
//! command line creates) puts into a directory owned by the service user
//! get that directory's owner and group, so that the broker, running as
//! that user, can open them. systemd's `StateDirectory=` re-owns the tree
//! only when the top directory's owner is wrong, so a root-owned 0600 key
//! inside a correctly owned data directory would stop the broker.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// When running as root: gives `file` (just created at `path`) the owner
/// and group of the directory it is in. Otherwise nothing.
pub fn adopt_dir_owner(file: &std::fs::File, path: &Path) -> io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir)?;
    std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()))
}

/// [`adopt_dir_owner`] for a file given by path (opened to change it).
pub fn adopt_dir_owner_of(path: &Path) -> io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let file = std::fs::File::open(path)?;
    adopt_dir_owner(&file, path)
}

/// Creates `dir` and any missing parents with `mode`; when running as
/// root each directory created gets the owner and group of the one it
/// was created in.
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, mode)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    adopt_dir_owner_of(dir)
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_files_and_directories_take_the_directory_owner_as_root() {
        let top = tempfile::tempdir().unwrap();
        let owned = top.path().join("owned");
        std::fs::create_dir(&owned).unwrap();
        if running_as_root() {
            std::os::unix::fs::chown(&owned, Some(65534), Some(65534)).unwrap();
        }
        let expected = std::fs::metadata(&owned).unwrap();
        create_dirs(&owned.join("a/b"), 0o700).unwrap();
        let path = owned.join("a/b/key");
        let file = std::fs::File::create(&path).unwrap();
        adopt_dir_owner(&file, &path).unwrap();
        for p in [owned.join("a"), owned.join("a/b"), path] {
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (expected.uid(), expected.gid()),
                "{p:?}"
            );
        }
        assert_eq!(
            std::fs::metadata(owned.join("a")).unwrap().mode() & 0o777,
            0o700
        );
    }
}
