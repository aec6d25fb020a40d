//! Backups: one redb read transaction (a consistent snapshot while the
//! broker runs) written as a self-describing stream, and its restore into
//! a fresh store file.
//!
//! Format 1, all integers big-endian:
//!
//! ```text
//! "GHBACKUP" u16 version=1  u32 n  n bytes of JSON header {broker, createdAt}
//! sections:  0x01 table: u16 name_len name  u8 key_kind  u64 entries
//!                         entries × (u32 key_len key  u32 value_len value)
//!            0x02 file:  u16 name_len name  u32 len  bytes   ("data/..." or "tls/...")
//!            0x00 end:   32-byte BLAKE3 of every byte before the 0x00
//! ```
//!
//! Tables are found by listing the database, not by name, so tables added
//! later are included; key kinds: 1 = `&str`, 2 = `(&str, u64)` (the
//! `u64` big-endian, then the string). The files are the data
//! directory's keys (token signing, MFA secrets) and the CA, without which
//! tokens, MFA and device certificates would not survive a move.

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::{Store, StoreError};

pub const MAGIC: &[u8; 8] = b"GHBACKUP";
pub const VERSION: u16 = 1;
const TABLE: u8 = 1;
const FILE: u8 = 2;
const END: u8 = 0;
const KEY_STR: u8 = 1;
const KEY_STR_U64: u8 = 2;
/// Files larger than this in the data directory are not keys: left out.
const MAX_FILE: u64 = 1 << 20;
/// The CA's files, restored beside the broker's `[tls] dir`.
pub const CA_FILES: &[&str] = &["ca.crt", "ca.key"];

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a Gatehouse backup (bad magic)")]
    Magic,
    #[error("backup format {0} is not supported (this broker reads format {VERSION})")]
    Version(u16),
    #[error("the backup is corrupt: its checksum does not match (damaged or truncated file)")]
    Checksum,
    #[error("the backup is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("table `{0}` has key or value types a backup cannot carry yet ({1})")]
    TableType(String, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn db_err(e: impl Into<redb::Error>) -> BackupError {
    BackupError::Store(StoreError::Db(e.into()))
}

/// Hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn put_bytes<W: Write>(out: &mut W, len_u16: bool, bytes: &[u8]) -> std::io::Result<()> {
    if len_u16 {
        out.write_all(&(bytes.len() as u16).to_be_bytes())?;
    } else {
        out.write_all(&(bytes.len() as u32).to_be_bytes())?;
    }
    out.write_all(bytes)
}

fn str_u64_key(s: &str, n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + s.len());
    key.extend_from_slice(&n.to_be_bytes());
    key.extend_from_slice(s.as_bytes());
    key
}

/// What a backup held, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `(table, entries)`.
    pub tables: Vec<(String, u64)>,
    pub files: Vec<String>,
}

impl Store {
    /// Writes a backup of the whole store (one read transaction) and of
    /// the key files in `data_dir` and the CA in `tls_dir`.
    pub fn backup(
        &self,
        data_dir: &Path,
        tls_dir: &Path,
        out: &mut dyn Write,
    ) -> Result<Summary, BackupError> {
        let db = self.db()?;
        write_backup(&db, data_dir, tls_dir, out)
    }
}

fn write_backup(
    db: &Database,
    data_dir: &Path,
    tls_dir: &Path,
    out: &mut dyn Write,
) -> Result<Summary, BackupError> {
    let mut out = Hashing {
        inner: std::io::BufWriter::with_capacity(64 * 1024, out),
        hasher: blake3::Hasher::new(),
    };
    let mut summary = Summary::default();
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_be_bytes())?;
    let header = serde_json::json!({
        "broker": format!("gatehouse {}", env!("CARGO_PKG_VERSION")),
        "createdAt": crate::router::now_millis(),
    });
    put_bytes(&mut out, false, header.to_string().as_bytes())?;
    let txn = db.begin_read().map_err(db_err)?;
    if txn.list_multimap_tables().map_err(db_err)?.next().is_some() {
        return Err(BackupError::TableType(
            "(multimap)".into(),
            "multimap tables".into(),
        ));
    }
    let mut names: Vec<String> = txn
        .list_tables()
        .map_err(db_err)?
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    names.sort();
    for name in names {
        out.write_all(&[TABLE])?;
        put_bytes(&mut out, true, name.as_bytes())?;
        let by_str: TableDefinition<&str, &[u8]> = TableDefinition::new(&name);
        let entries = match txn.open_table(by_str) {
            Ok(table) => {
                out.write_all(&[KEY_STR])?;
                out.write_all(&table.len().map_err(db_err)?.to_be_bytes())?;
                let mut n = 0;
                for entry in table.iter().map_err(db_err)? {
                    let (k, v) = entry.map_err(db_err)?;
                    put_bytes(&mut out, false, k.value().as_bytes())?;
                    put_bytes(&mut out, false, v.value())?;
                    n += 1;
                }
                n
            }
            Err(redb::TableError::TableTypeMismatch { .. }) => {
                let pairs: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new(&name);
                let table = txn
                    .open_table(pairs)
                    .map_err(|e| BackupError::TableType(name.clone(), e.to_string()))?;
                out.write_all(&[KEY_STR_U64])?;
                out.write_all(&table.len().map_err(db_err)?.to_be_bytes())?;
                let mut n = 0;
                for entry in table.iter().map_err(db_err)? {
                    let (k, v) = entry.map_err(db_err)?;
                    let (s, id) = k.value();
                    put_bytes(&mut out, false, &str_u64_key(s, id))?;
                    put_bytes(&mut out, false, v.value())?;
                    n += 1;
                }
                n
            }
            Err(e) => return Err(db_err(e)),
        };
        summary.tables.push((name, entries));
    }
    drop(txn);
    for (prefix, dir, names) in key_files(data_dir, tls_dir)? {
        for name in names {
            let bytes = std::fs::read(dir.join(&name))?;
            let logical = format!("{prefix}/{name}");
            out.write_all(&[FILE])?;
            put_bytes(&mut out, true, logical.as_bytes())?;
            put_bytes(&mut out, false, &bytes)?;
            summary.files.push(logical);
        }
    }
    out.write_all(&[END])?;
    let sum = out.hasher.finalize();
    out.inner.write_all(sum.as_bytes())?;
    out.inner.flush()?;
    Ok(summary)
}

/// `(prefix, directory, file names)`: the data directory's small files
/// (keys) and the CA.
fn key_files<'a>(
    data_dir: &'a Path,
    tls_dir: &'a Path,
) -> std::io::Result<Vec<(&'static str, &'a Path, Vec<String>)>> {
    let mut data = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        if meta.is_file() && meta.len() <= MAX_FILE && !name.starts_with("gatehouse.redb") {
            data.push(name);
        }
    }
    data.sort();
    let ca: Vec<String> = CA_FILES
        .iter()
        .filter(|f| tls_dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    Ok(vec![("data", data_dir, data), ("tls", tls_dir, ca)])
}

/// One item of a backup, as read back.
pub enum Item {
    Table {
        name: String,
        kind: u8,
        entries: u64,
    },
    Entry(Vec<u8>, Vec<u8>),
    File(String, Vec<u8>),
}

/// Reads a backup item by item, hashing as it goes.
pub struct Reader<R> {
    inner: R,
    hasher: blake3::Hasher,
    left: u64,
    pub header: serde_json::Value,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Result<Reader<R>, BackupError> {
        let mut reader = Reader {
            inner,
            hasher: blake3::Hasher::new(),
            left: 0,
            header: serde_json::Value::Null,
        };
        let mut magic = [0; 8];
        reader.exact(&mut magic).map_err(|_| BackupError::Magic)?;
        if &magic != MAGIC {
            return Err(BackupError::Magic);
        }
        let version = reader.u16()?;
        if version != VERSION {
            return Err(BackupError::Version(version));
        }
        let header = reader.bytes(false)?;
        reader.header =
            serde_json::from_slice(&header).map_err(|_| BackupError::Corrupt("header"))?;
        Ok(reader)
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), BackupError> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BackupError::Checksum,
            _ => BackupError::Io(e),
        })?;
        self.hasher.update(buf);
        Ok(())
    }

    fn u16(&mut self) -> Result<u16, BackupError> {
        let mut b = [0; 2];
        self.exact(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, BackupError> {
        let mut b = [0; 4];
        self.exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn bytes(&mut self, len_u16: bool) -> Result<Vec<u8>, BackupError> {
        let len = if len_u16 {
            usize::from(self.u16()?)
        } else {
            self.u32()? as usize
        };
        // Read in steps so that a corrupt length cannot allocate 4 GiB up front.
        let mut out = Vec::with_capacity(len.min(1 << 20));
        let mut chunk = [0u8; 8192];
        while out.len() < len {
            let n = (len - out.len()).min(chunk.len());
            self.exact(&mut chunk[..n])?;
            out.extend_from_slice(&chunk[..n]);
        }
        Ok(out)
    }

    fn string(&mut self) -> Result<String, BackupError> {
        String::from_utf8(self.bytes(true)?).map_err(|_| BackupError::Corrupt("a name"))
    }

    /// The next item; `None` after the end, once the checksum matched.
    pub fn next_item(&mut self) -> Result<Option<Item>, BackupError> {
        if self.left > 0 {
            self.left -= 1;
            let key = self.bytes(false)?;
            let value = self.bytes(false)?;
            return Ok(Some(Item::Entry(key, value)));
        }
        let mut tag = [0];
        self.exact(&mut tag)?;
        match tag[0] {
            TABLE => {
                let name = self.string()?;
                let mut kind = [0];
                self.exact(&mut kind)?;
                if kind[0] != KEY_STR && kind[0] != KEY_STR_U64 {
                    return Err(BackupError::Corrupt("unknown key kind"));
                }
                let mut n = [0; 8];
                self.exact(&mut n)?;
                self.left = u64::from_be_bytes(n);
                Ok(Some(Item::Table {
                    name,
                    kind: kind[0],
                    entries: self.left,
                }))
            }
            FILE => {
                let name = self.string()?;
                let bytes = self.bytes(false)?;
                Ok(Some(Item::File(name, bytes)))
            }
            END => {
                let expected = self.hasher.finalize();
                let mut sum = [0; 32];
                self.inner
                    .read_exact(&mut sum)
                    .map_err(|_| BackupError::Checksum)?;
                let mut rest = [0; 1];
                let trailing = self.inner.read(&mut rest)?;
                let same =
                    aws_lc_rs::constant_time::verify_slices_are_equal(&sum, expected.as_bytes());
                if same.is_err() || trailing != 0 {
                    return Err(BackupError::Checksum);
                }
                Ok(None)
            }
            _ => Err(BackupError::Corrupt("unknown section")),
        }
    }
}

/// Reads a whole backup without keeping it: version, structure, checksum.
pub fn verify(path: &Path) -> Result<Summary, BackupError> {
    let file = std::fs::File::open(path)?;
    let mut reader = Reader::new(std::io::BufReader::new(file))?;
    let mut summary = Summary::default();
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Table { name, entries, .. } => summary.tables.push((name, entries)),
            Item::File(name, _) => summary.files.push(name),
            Item::Entry(..) => {}
        }
    }
    Ok(summary)
}

/// Writes the backup's tables into a new store file `target` (which must
/// not exist) and returns its files (`data/...`, `tls/...`) with their
/// contents. Call [`verify`] first: this trusts the checksum it checks
/// only at the end.
pub fn restore_tables(backup: &Path, target: &Path) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)?;
    let db = Database::create(target).map_err(db_err)?;
    let mut reader = Reader::new(std::io::BufReader::new(std::fs::File::open(backup)?))?;
    let mut files = Vec::new();
    let txn = db.begin_write().map_err(db_err)?;
    let mut current: Option<(String, u8)> = None;
    while let Some(item) = reader.next_item()? {
        match item {
            Item::Table { name, kind, .. } => {
                match kind {
                    KEY_STR => {
                        txn.open_table(TableDefinition::<&str, &[u8]>::new(&name))
                            .map_err(db_err)?;
                    }
                    _ => {
                        txn.open_table(TableDefinition::<(&str, u64), &[u8]>::new(&name))
                            .map_err(db_err)?;
                    }
                }
                current = Some((name, kind));
            }
            Item::Entry(key, value) => {
                let Some((name, kind)) = &current else {
                    return Err(BackupError::Corrupt("an entry outside a table"));
                };
                if *kind == KEY_STR {
                    let key = std::str::from_utf8(&key).map_err(|_| BackupError::Corrupt("key"))?;
                    let mut t = txn
                        .open_table(TableDefinition::<&str, &[u8]>::new(name))
                        .map_err(db_err)?;
                    t.insert(key, value.as_slice()).map_err(db_err)?;
                } else {
                    if key.len() < 8 {
                        return Err(BackupError::Corrupt("key"));
                    }
                    let n = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
                    let s =
                        std::str::from_utf8(&key[8..]).map_err(|_| BackupError::Corrupt("key"))?;
                    let mut t = txn
                        .open_table(TableDefinition::<(&str, u64), &[u8]>::new(name))
                        .map_err(db_err)?;
                    t.insert((s, n), value.as_slice()).map_err(db_err)?;
                }
            }
            Item::File(name, bytes) => files.push((name, bytes)),
        }
    }
    txn.commit().map_err(db_err)?;
    Ok(files)
}

/// Where a backup's file goes: `data/NAME` into the data directory,
/// `tls/NAME` (the CA) into the TLS directory; `None` for anything else.
pub fn file_target(name: &str, data_dir: &Path, tls_dir: &Path) -> Option<PathBuf> {
    let (prefix, file) = name.split_once('/')?;
    if file.is_empty() || file.contains('/') || file == "." || file == ".." {
        return None;
    }
    match prefix {
        "data" if !file.starts_with("gatehouse.redb") => Some(data_dir.join(file)),
        "tls" if CA_FILES.contains(&file) => Some(tls_dir.join(file)),
        _ => None,
    }
}
