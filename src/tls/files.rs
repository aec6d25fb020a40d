//! Writing key material: never over an existing file, keys mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Creates `path` with `contents`; fails if it exists. `secret` files get
/// mode 0600 from the moment they exist (no window with wider permissions).
/// Run as root, the file (and any directory created for it) gets the
/// owner of the directory it is in (`crate::ownership`).
pub fn write_new(path: &Path, contents: &[u8], secret: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        crate::ownership::create_dirs(parent, 0o755)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    crate::ownership::adopt_dir_owner(&file, path)?;
    file.write_all(contents)?;
    file.sync_all()
}
