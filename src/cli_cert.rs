//! `gatehouse cert ...`: the built-in CA on the store of a stopped broker.

use anyhow::{Context as _, bail};
use clap::Subcommand;
use std::path::PathBuf;

use gatehouse::Config;
use gatehouse::identity::CertificateRecord;
use gatehouse::tls::{CertificateAuthority, write_new};

#[derive(Subcommand)]
pub enum CertCommand {
    /// Make a key and a client certificate for a device.
    Issue {
        /// Common name: the user the certificate logs in as.
        #[arg(long)]
        cn: String,
        /// Validity in days (default `[tls] device_cert_days`).
        #[arg(long)]
        days: Option<u32>,
        /// Directory for CN.crt, CN.key (mode 0600) and ca.crt.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a certificate signing request (as a client certificate).
    Sign {
        #[arg(long)]
        csr: PathBuf,
        #[arg(long)]
        days: Option<u32>,
        /// Common name to use instead of the request's.
        #[arg(long)]
        cn: Option<String>,
        /// Write the certificate here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List issued certificates.
    List,
    /// Revoke a certificate by serial (hex).
    Revoke { serial: String },
}

pub fn cert(config: &Config, command: CertCommand) -> anyhow::Result<()> {
    let store = gatehouse::broker::open_store(config)?;
    let directory = gatehouse::broker::open_directory(config, store)?;
    let ca = || CertificateAuthority::load_or_create(&config.tls.dir);
    let default_days = config.tls.device_cert_days;
    match command {
        CertCommand::Issue { cn, days, out } => {
            let (issued, key_pem) = ca()?.issue(&cn, days.unwrap_or(default_days))?;
            if cn.contains(['/', '\0']) || cn == "." || cn == ".." {
                bail!("a common name used as a file name must not contain '/'");
            }
            let cert_path = out.join(format!("{cn}.crt"));
            let key_path = out.join(format!("{cn}.key"));
            write_new(&key_path, key_pem.as_bytes(), true)
                .with_context(|| format!("writing {}", key_path.display()))?;
            write_new(&cert_path, issued.pem.as_bytes(), false)
                .with_context(|| format!("writing {}", cert_path.display()))?;
            let ca_copy = out.join("ca.crt");
            if !ca_copy.exists() {
                write_new(&ca_copy, ca()?.cert_pem.as_bytes(), false)
                    .with_context(|| format!("writing {}", ca_copy.display()))?;
            }
            directory.record_certificate(CertificateRecord::from(&issued))?;
            println!(
                "issued {} serial {} fingerprint {}",
                cert_path.display(),
                issued.serial,
                issued.fingerprint
            );
            if directory.user(&cn).is_none() {
                eprintln!("note: no user `{cn}` exists yet; create it with --grant certificate");
            }
        }
        CertCommand::Sign { csr, days, cn, out } => {
            let request = std::fs::read_to_string(&csr)
                .with_context(|| format!("reading {}", csr.display()))?;
            let issued = ca()?.sign_csr(&request, cn.as_deref(), days.unwrap_or(default_days))?;
            directory.record_certificate(CertificateRecord::from(&issued))?;
            match out {
                Some(path) => {
                    write_new(&path, issued.pem.as_bytes(), false)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "signed {} for CN {} serial {}",
                        path.display(),
                        issued.common_name,
                        issued.serial
                    );
                }
                None => print!("{}", issued.pem),
            }
        }
        CertCommand::List => {
            for c in directory.certificates() {
                println!(
                    "{}\t{}\t{}\tnot_after={}\t{}",
                    c.serial,
                    c.common_name,
                    c.fingerprint,
                    c.not_after,
                    if c.revoked { "revoked" } else { "valid" }
                );
            }
        }
        CertCommand::Revoke { serial } => {
            let record = directory.revoke_certificate(&serial)?;
            println!("revoked {} ({})", record.serial, record.common_name);
        }
    }
    Ok(())
}
