//! `gatehouse backup --out FILE` (a running broker through `GET
//! /api/backup`, or a stopped one's store) and `gatehouse restore FILE`
//! (into a stopped broker's data directory, after checking the file).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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

/// Creates `dir` 0700 when missing.
fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError::failed(format!("creating {}: {e}", dir.display())))
}

/// Replaces `path` with `bytes` (0600), through a temporary file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = path.with_extension("restoring");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

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
    // Held until the new file is in place: a broker cannot start meanwhile.
    let _lock = if store_file.exists() {
        if !args.force {
            return Err(CliError::new(
                Exit::Conflict,
                format!(
                    "{} exists: restoring replaces everything in it (--force)",
                    store_file.display()
                ),
            ));
        }
        match redb::Database::create(&store_file) {
            Ok(db) => Some(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(CliError::new(
                    Exit::BrokerState,
                    format!(
                        "the store in {} is in use: stop the broker before restoring",
                        data_dir.display()
                    ),
                ));
            }
            Err(e) => return Err(CliError::failed(format!("{}: {e}", store_file.display()))),
        }
    } else {
        None
    };
    let temp = data_dir.join("gatehouse.redb.restoring");
    let _ = std::fs::remove_file(&temp);
    let files = backup::restore_tables(&args.file, &temp).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        failed(e)
    })?;
    let placed = place_files(&files, data_dir, tls_dir, args.force);
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    std::fs::rename(&temp, &store_file)?;
    output::line(format!(
        "restored {} into {} ({})",
        args.file.display(),
        data_dir.display(),
        describe(&summary)
    ))
}

/// Checks every file first (an existing key or CA that differs needs
/// `--force`), then writes them. A replaced CA takes its generated server
/// certificate with it, so that the next start issues one from it.
fn place_files(
    files: &[(String, Vec<u8>)],
    data_dir: &Path,
    tls_dir: &Path,
    force: bool,
) -> Result<()> {
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
        writes.push((path, bytes));
    }
    if new_ca {
        private_dir(tls_dir)?;
        for generated in ["server.crt", "server.key"] {
            let _ = std::fs::remove_file(tls_dir.join(generated));
        }
    }
    for (path, bytes) in writes {
        write_private(&path, bytes)?;
    }
    Ok(())
}
