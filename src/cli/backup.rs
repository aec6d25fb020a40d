//! `gatehouse backup --out FILE` (a running broker through `GET
//! /api/backup`, or a stopped one's store) and `gatehouse restore FILE`
//! (into a stopped broker's data directory, after checking the file).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::output;
use super::{CliError, Ctx, Exit, Result, Target};
use gatehouse::store::backup::{self, BackupError, Summary};

#[derive(clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (mode 0600; it holds password hashes and keys).
    #[arg(long)]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A file written by `gatehouse backup`.
    file: PathBuf,
    /// Replace an existing store (and keys or CA that differ).
    #[arg(long)]
    force: bool,
}

fn failed(e: BackupError) -> CliError {
    CliError::failed(e.to_string())
}

fn describe(summary: &Summary) -> String {
    let tables: Vec<String> = summary
        .tables
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    format!(
        "tables: {}; files: {}",
        tables.join(", "),
        summary.files.join(", ")
    )
}

pub fn backup(ctx: &Ctx, args: BackupArgs) -> Result<()> {
    if args.out.exists() && !args.force {
        return Err(CliError::new(
            Exit::Conflict,
            format!("{} exists (--force replaces it)", args.out.display()),
        ));
    }
    let dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = args.out.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = write_to(ctx, &temp).and_then(|()| {
        // Read back whole: a truncated download or a full disk shows here.
        let summary = backup::verify(&temp).map_err(failed)?;
        std::fs::rename(&temp, &args.out)?;
        Ok(summary)
    });
    let summary = result.inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })?;
    output::line(format!(
        "backup written to {} ({})",
        args.out.display(),
        describe(&summary)
    ))
}

fn write_to(ctx: &Ctx, temp: &Path) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(|e| CliError::failed(format!("creating {}: {e}", temp.display())))?;
    match Target::detect(ctx)? {
        Target::Api(api) => {
            api.download("/api/backup", &mut file)?;
        }
        Target::Local(local) => {
            let config = &ctx.config;
            local
                .store
                .backup(&config.storage.dir, &config.tls.dir, &mut file)
                .map_err(failed)?;
        }
    }
    file.flush()?;
    file.sync_all()?;
    Ok(())
}

/// Creates `dir` 0700 when missing (owned like its parent when run as
/// root).
fn private_dir(dir: &Path) -> Result<()> {
    gatehouse::ownership::create_dirs(dir, 0o700)
        .map_err(|e| CliError::failed(format!("creating {}: {e}", dir.display())))
}

/// Writes `bytes` into a new temporary file beside `path` (0600, owned
/// like the directory when run as root, on the disk) and returns its path.
fn stage(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".restoring");
    let temp = path.with_file_name(name);
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    gatehouse::ownership::adopt_dir_owner(&file, &temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(temp)
}

/// Holds the store file so that no broker can open it while a restore
/// runs; creates an empty one (0600) when there is none (true: created).
/// An existing store needs `--force`.
fn lock_store(store_file: &Path, data_dir: &Path, force: bool) -> Result<(redb::Database, bool)> {
    let created = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(store_file)
    {
        Ok(file) => {
            gatehouse::ownership::adopt_dir_owner(&file, store_file)?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(CliError::failed(format!("{}: {e}", store_file.display()))),
    };
    if !created && !force {
        return Err(CliError::new(
            Exit::Conflict,
            format!(
                "{} exists: restoring replaces everything in it (--force)",
                store_file.display()
            ),
        ));
    }
    match redb::Database::create(store_file) {
        Ok(db) => Ok((db, created)),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(CliError::new(
            Exit::BrokerState,
            format!(
                "the store in {} is in use: stop the broker before restoring",
                data_dir.display()
            ),
        )),
        Err(e) => {
            if created {
                let _ = std::fs::remove_file(store_file);
            }
            Err(CliError::failed(format!("{}: {e}", store_file.display())))
        }
    }
}

/// Restores in two phases. First everything is written to temporary files
/// beside its target (store, keys, CA; each on the disk) while the store
/// is held, so that no broker starts meanwhile; a failure there removes
/// them and changes nothing. Then each is renamed into place, the store
/// last, and the directories are synced.
pub fn restore(ctx: &Ctx, args: RestoreArgs) -> Result<()> {
    let config = &ctx.config;
    let (data_dir, tls_dir) = (&config.storage.dir, &config.tls.dir);
    let summary = backup::verify(&args.file).map_err(|e| match e {
        BackupError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => CliError::new(
            Exit::NotFound,
            format!("{}: no such file", args.file.display()),
        ),
        e => CliError::failed(format!(
            "{}: {e}; nothing was restored",
            args.file.display()
        )),
    })?;
    private_dir(data_dir)?;
    let store_file = data_dir.join("gatehouse.redb");
    let (lock, created) = lock_store(&store_file, data_dir, args.force)?;
    let temp = data_dir.join("gatehouse.redb.restoring");
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let prepared: Result<bool> = (|| {
        let _ = std::fs::remove_file(&temp);
        let files = backup::restore_tables(&args.file, &temp).map_err(failed)?;
        let (writes, new_ca) = plan_files(&files, data_dir, tls_dir, args.force)?;
        if new_ca {
            private_dir(tls_dir)?;
        }
        for (path, bytes) in writes {
            let staged_file = stage(&path, bytes)
                .map_err(|e| CliError::failed(format!("writing {}: {e}", path.display())))?;
            staged.push((staged_file, path));
        }
        Ok(new_ca)
    })();
    let new_ca = match prepared {
        Ok(new_ca) => new_ca,
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            for (staged_file, _) in &staged {
                let _ = std::fs::remove_file(staged_file);
            }
            drop(lock);
            if created {
                let _ = std::fs::remove_file(&store_file);
            }
            return Err(CliError::new(
                e.exit,
                format!("{}; nothing was restored", e.message),
            ));
        }
    };
    // A replaced CA takes its generated server certificate with it, so
    // that the next start issues one from the restored CA.
    if new_ca {
        for generated in ["server.crt", "server.key"] {
            let _ = std::fs::remove_file(tls_dir.join(generated));
        }
    }
    for (staged_file, path) in &staged {
        std::fs::rename(staged_file, path)?;
    }
    std::fs::rename(&temp, &store_file)?;
    gatehouse::ownership::sync_dir(data_dir)?;
    if new_ca {
        gatehouse::ownership::sync_dir(tls_dir)?;
    }
    drop(lock);
    output::line(format!(
        "restored {} into {} ({})",
        args.file.display(),
        data_dir.display(),
        describe(&summary)
    ))
}

/// Files to write: target path and contents.
type Writes<'a> = Vec<(PathBuf, &'a [u8])>;

/// Which of the backup's files to write, and whether the CA is among
/// them. An existing key or CA that differs needs `--force`.
fn plan_files<'a>(
    files: &'a [(String, Vec<u8>)],
    data_dir: &Path,
    tls_dir: &Path,
    force: bool,
) -> Result<(Writes<'a>, bool)> {
    let mut writes = Vec::new();
    let mut new_ca = false;
    for (name, bytes) in files {
        let Some(path) = backup::file_target(name, data_dir, tls_dir) else {
            eprintln!("note: skipping `{name}` from the backup (not a file this version restores)");
            continue;
        };
        match std::fs::read(&path) {
            Ok(existing) if existing == *bytes => continue,
            Ok(_) if !force => {
                return Err(CliError::new(
                    Exit::Conflict,
                    format!(
                        "{} differs from the backup's (--force replaces it)",
                        path.display()
                    ),
                ));
            }
            _ => {}
        }
        new_ca |= name.starts_with("tls/");
        writes.push((path, bytes.as_slice()));
    }
    Ok((writes, new_ca))
}
