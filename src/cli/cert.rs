//! `gatehouse cert ...`: the built-in CA on the store of a stopped broker
//! (the admin API has no certificate routes: issuing records the
//! certificate in the store, revoking changes the CRL the broker loads).

use clap::Subcommand;
use std::path::PathBuf;

use super::{CliError, Ctx, Exit, Result, Target, output};
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

fn fail(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> CliError {
    CliError::failed(format!("{what} {}: {e}", path.display()))
}

pub fn cert(ctx: &Ctx, command: CertCommand) -> Result<()> {
    let config = &ctx.config;
    let local = Target::local_only(ctx, "`gatehouse cert`")?;
    let directory = &local.directory;
    let ca = || {
        CertificateAuthority::load_or_create(&config.tls.dir)
            .map_err(|e| CliError::failed(format!("the CA in {}: {e}", config.tls.dir.display())))
    };
    let default_days = config.tls.device_cert_days;
    match command {
        CertCommand::Issue { cn, days, out } => {
            if cn.contains(['/', '\0']) || cn == "." || cn == ".." {
                return Err(CliError::new(
                    Exit::Usage,
                    "a common name used as a file name must not contain '/'",
                ));
            }
            let (issued, key_pem) = ca()?
                .issue(&cn, days.unwrap_or(default_days))
                .map_err(|e| CliError::failed(e.to_string()))?;
            let cert_path = out.join(format!("{cn}.crt"));
            let key_path = out.join(format!("{cn}.key"));
            write_new(&key_path, key_pem.as_bytes(), true)
                .map_err(|e| fail("writing", &key_path, e))?;
            write_new(&cert_path, issued.pem.as_bytes(), false)
                .map_err(|e| fail("writing", &cert_path, e))?;
            let ca_copy = out.join("ca.crt");
            if !ca_copy.exists() {
                write_new(&ca_copy, ca()?.cert_pem.as_bytes(), false)
                    .map_err(|e| fail("writing", &ca_copy, e))?;
            }
            directory.record_certificate(CertificateRecord::from(&issued))?;
            output::line(format!(
                "issued {} serial {} fingerprint {}",
                cert_path.display(),
                issued.serial,
                issued.fingerprint
            ))?;
            if directory.user(&cn).is_none() {
                eprintln!("note: no user `{cn}` exists yet; create it with --grant certificate");
            }
        }
        CertCommand::Sign { csr, days, cn, out } => {
            let request = std::fs::read_to_string(&csr).map_err(|e| fail("reading", &csr, e))?;
            let issued = ca()?
                .sign_csr(&request, cn.as_deref(), days.unwrap_or(default_days))
                .map_err(|e| CliError::failed(e.to_string()))?;
            directory.record_certificate(CertificateRecord::from(&issued))?;
            match out {
                Some(path) => {
                    write_new(&path, issued.pem.as_bytes(), false)
                        .map_err(|e| fail("writing", &path, e))?;
                    eprintln!(
                        "signed {} for CN {} serial {}",
                        path.display(),
                        issued.common_name,
                        issued.serial
                    );
                }
                None => output::raw(&issued.pem)?,
            }
        }
        CertCommand::List => {
            let certificates = directory.certificates();
            if ctx.json {
                let list = serde_json::to_value(&certificates).unwrap_or_default();
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = certificates
                .iter()
                .map(|c| {
                    vec![
                        c.serial.clone(),
                        c.common_name.clone(),
                        c.fingerprint.clone(),
                        c.not_after.to_string(),
                        if c.revoked { "revoked" } else { "valid" }.into(),
                    ]
                })
                .collect();
            output::table(
                &["SERIAL", "CN", "FINGERPRINT", "NOT AFTER", "STATUS"],
                &rows,
            )?;
        }
        CertCommand::Revoke { serial } => {
            let record = directory.revoke_certificate(&serial)?;
            output::line(format!(
                "revoked {} ({})",
                record.serial, record.common_name
            ))?;
        }
    }
    Ok(())
}
