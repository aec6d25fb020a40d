//! `gatehouse session ...`: stored sessions on the store of a stopped
//! broker (a running broker ends them through its admin API).

use anyhow::bail;
use clap::Subcommand;

use gatehouse::Config;

#[derive(Subcommand)]
pub enum SessionCommand {
    /// List stored sessions: client id, owner, expiry, queued messages.
    List,
    /// Remove a stored session with its subscriptions and queued messages.
    Rm { client_id: String },
}

pub fn session(config: &Config, command: SessionCommand) -> anyhow::Result<()> {
    let store = gatehouse::broker::open_store(config)?;
    let loaded = store.take_loaded().unwrap_or_default();
    match command {
        SessionCommand::List => {
            for session in &loaded.sessions {
                let (client_id, record) = (&session.client_id, &session.record);
                let expiry = match record.expiry_interval {
                    u32::MAX => "never".to_string(),
                    secs => format!("{secs}s"),
                };
                println!(
                    "{client_id}\towner={}\texpiry={expiry}\tqueued={}",
                    record.owner.as_deref().unwrap_or("-"),
                    session.deliveries.len()
                );
            }
        }
        SessionCommand::Rm { client_id } => {
            if !loaded.sessions.iter().any(|s| s.client_id == client_id) {
                bail!("no stored session for client id `{client_id}`");
            }
            store.delete_session(&client_id);
            store.close();
            println!("session `{client_id}` removed");
        }
    }
    Ok(())
}
