//! Assembles the broker from its parts; tests and `main` both start it here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::auth::{AnonymousOnly, Authenticator, DirectoryAuthenticator};
use crate::config::Config;
use crate::identity::registry::ClientRegistry;
use crate::identity::services::{AdminError, INITIAL_ADMIN_PASSWORD, IdentityServices};
use crate::identity::{Directory, IdentityError, SettingsError, StartupSettings};
use crate::metrics::Metrics;
use crate::net::{self, Shared, Transport};
use crate::protocol::ReasonCode;
use crate::router::Router;
use crate::session::{Registry, Services, WillCheck};
use crate::store::{Store, StoreError};
use crate::tls::{TlsContext, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("identity settings: {0}")]
    Settings(#[from] SettingsError),
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("admin API services: {0}")]
    Admin(#[from] AdminError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot create the hibernation epoll set: {0}")]
    Hibernation(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started broker. Dropping it does not stop it; call [`shutdown`].
///
/// [`shutdown`]: RunningBroker::shutdown
pub struct RunningBroker {
    pub mqtt_addr: Option<SocketAddr>,
    pub ws_addr: Option<SocketAddr>,
    pub mqtts_addr: Option<SocketAddr>,
    pub wss_addr: Option<SocketAddr>,
    /// The admin HTTP API.
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    tls: Option<Arc<TlsContext>>,
    registry: Arc<Registry>,
    directory: Option<Arc<Directory>>,
    identity: Option<Arc<IdentityServices>>,
    shutdown: watch::Sender<bool>,
    limits: Vec<(Arc<Semaphore>, u32)>,
}

/// Opens the store of `config` (also used by the CLI on a stopped broker).
pub fn open_store(config: &Config) -> Result<Arc<Store>, StoreError> {
    Ok(Arc::new(Store::open(
        &config.storage.dir,
        config.storage.durability,
        Duration::from_millis(config.storage.commit_interval_ms),
    )?))
}

/// Opens the identity directory in `store`, seeding it on first start.
pub fn open_directory(config: &Config, store: Arc<Store>) -> Result<Arc<Directory>, StartError> {
    let settings = StartupSettings::from_env(&config.auth)?;
    Ok(Arc::new(Directory::open(
        store,
        settings.policy,
        &settings.initial_admin_password,
        settings.admin_enabled,
    )?))
}

/// Starts the broker with users, roles and ACLs from the identity directory.
pub async fn start(config: Config) -> Result<RunningBroker, StartError> {
    let store = open_store(&config)?;
    let directory = open_directory(&config, store.clone())?;
    let auth = DirectoryAuthenticator::new(directory.clone(), &config.auth);
    let registry = ClientRegistry::new(
        &config.registry,
        config.tls.dir.clone(),
        config.tls.device_cert_days,
    );
    let identity = IdentityServices::open(
        directory.clone(),
        store.clone(),
        &config.storage.dir,
        &config.http,
        &config.oauth,
        registry,
    )?;
    auth.accept_tokens(identity.tokens.clone());
    auth.record_unknown_users_in(identity.implicit_registrations());
    warn_initial_admin_password(&directory);
    let wills: Arc<dyn WillCheck> = auth.clone();
    let parts = Parts {
        directory: Some(directory),
        will_check: Some(wills),
        identity: Some(identity),
    };
    launch(config, store, auth, parts).await
}

/// Warns at every start while `admin` still has its initial password
/// (which then works only from loopback addresses).
fn warn_initial_admin_password(directory: &Arc<Directory>) {
    let Some(hash) = directory
        .user(crate::identity::directory::ADMIN_USER)
        .and_then(|u| u.password_hash)
    else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        if crate::identity::password::verify_password(INITIAL_ADMIN_PASSWORD.as_bytes(), &hash) {
            tracing::warn!(
                "user `admin` still has its initial password `admin`: it may log in only from \
                 loopback addresses until it is changed (PUT /api/users/me/password)"
            );
        }
    });
}

/// Starts the broker core with the anonymous-only authenticator and no
/// ACLs (everything allowed once connected).
pub async fn start_core(config: Config) -> Result<RunningBroker, StartError> {
    let store = open_store(&config)?;
    let auth = Arc::new(AnonymousOnly {
        allow_anonymous: config.auth.allow_anonymous,
    });
    launch(config, store, auth, Parts::default()).await
}

/// What a broker with identities adds to the core.
#[derive(Default)]
struct Parts {
    directory: Option<Arc<Directory>>,
    will_check: Option<Arc<dyn WillCheck>>,
    identity: Option<Arc<IdentityServices>>,
}

async fn launch(
    config: Config,
    store: Arc<Store>,
    auth: Arc<dyn Authenticator>,
    parts: Parts,
) -> Result<RunningBroker, StartError> {
    let Parts {
        directory,
        will_check,
        identity,
    } = parts;
    let loaded = store.take_loaded();
    let services = Arc::new(Services {
        config: config.clone(),
        router: Router::new(),
        store,
        metrics: Metrics::default(),
        will_check,
    });
    services
        .store
        .set_commit_histogram(services.metrics.exporter.commit_histogram());
    let registry = Registry::new(services.clone());
    if let Some(directory) = &directory {
        end_sessions_of_deleted_users(directory, &registry);
    }
    if let Some(mut loaded) = loaded {
        if let Some(directory) = &directory {
            // A session of a user deleted while the broker was stopped
            // ends with the user (a new user of the name must not resume it).
            loaded.sessions.retain(|s| match &s.record.owner {
                Some(owner) if directory.user(owner).is_none() => {
                    tracing::info!(
                        client_id = s.client_id,
                        owner,
                        "stored session of a deleted user removed"
                    );
                    services.store.delete_session(&s.client_id);
                    false
                }
                _ => true,
            });
        }
        for message in loaded.retained {
            services.router.retained().set(&Arc::new(message));
        }
        tracing::info!(
            retained = services.router.retained().len(),
            sessions = loaded.sessions.len(),
            "restored from store"
        );
        registry.restore(loaded.sessions);
    }

    let https = identity.is_some() && config.listeners.https.is_some();
    let tls = if config.listeners.mqtts.is_some() || config.listeners.wss.is_some() || https {
        let revoked = directory
            .as_ref()
            .map(|d| d.revoked_serials())
            .unwrap_or_default();
        let context = TlsContext::prepare(&config.tls, config.tls.mutual_from_env(), &revoked)?;
        if let Some(directory) = &directory {
            tokio::spawn(follow_revocations(
                context.clone(),
                Arc::downgrade(directory),
            ));
        }
        Some(context)
    } else {
        None
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        registry: registry.clone(),
        auth,
        shutdown: shutdown_rx.clone(),
        tls: tls.clone(),
        parker: net::Parker::start(shutdown_rx.clone()).map_err(StartError::Hibernation)?,
        admission: (config.limits.max_pending_connects > 0).then(|| {
            let places = config
                .limits
                .max_pending_connects
                .min(Semaphore::MAX_PERMITS);
            Arc::new(Semaphore::new(places))
        }),
    });
    let mut broker = RunningBroker {
        mqtt_addr: None,
        ws_addr: None,
        mqtts_addr: None,
        wss_addr: None,
        http_addr: None,
        https_addr: None,
        tls,
        registry: registry.clone(),
        directory,
        identity: identity.clone(),
        shutdown: shutdown_tx,
        limits: Vec::new(),
    };
    let listeners = [
        (config.listeners.mqtt, Transport::Tcp),
        (config.listeners.ws, Transport::WebSocket),
        (config.listeners.mqtts, Transport::Tls),
        (config.listeners.wss, Transport::WebSocketTls),
    ];
    for (addr, transport) in listeners {
        let Some(addr) = addr else { continue };
        let listener = listen(addr).map_err(|source| StartError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        match transport {
            Transport::Tcp => broker.mqtt_addr = Some(local),
            Transport::WebSocket => broker.ws_addr = Some(local),
            Transport::Tls => broker.mqtts_addr = Some(local),
            Transport::WebSocketTls => broker.wss_addr = Some(local),
        }
        tracing::info!(?transport, %local, "listening");
        let max = config.limits.max_connections.min(Semaphore::MAX_PERMITS) as u32;
        let permits = Arc::new(Semaphore::new(max as usize));
        broker.limits.push((permits.clone(), max));
        tokio::spawn(net::serve(listener, transport, shared.clone(), permits));
    }
    tokio::spawn(crate::trim::run(services.clone(), shutdown_rx.clone()));
    if let Some(identity) = identity {
        tokio::spawn(identity.tokens.clone().run_sweeper(shutdown_rx.clone()));
        tokio::spawn(identity.clone().run_oauth_sweeper(shutdown_rx.clone()));
        if config.oauth.base_url.is_empty() {
            tracing::warn!(
                issuer = identity.tokens.issuer(),
                "[oauth] base_url is empty: the OAuth metadata names the address each request came in on, and the issuer is [http] issuer; set base_url to the admin API's public https URL"
            );
        }
        let app = crate::http::app(identity.clone(), registry.clone());
        let http = [
            (config.listeners.http, None),
            (config.listeners.https, broker.tls.clone()),
        ];
        for (addr, tls) in http {
            let Some(addr) = addr else { continue };
            let listener = listen(addr).map_err(|source| StartError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            if tls.is_some() {
                broker.https_addr = Some(local);
            } else {
                broker.http_addr = Some(local);
            }
            tracing::info!(%local, tls = tls.is_some(), "admin API listening");
            tokio::spawn(crate::http::server::serve(
                listener,
                app.clone(),
                tls,
                identity.config.max_connections,
                shutdown_rx.clone(),
            ));
        }
    }
    tokio::spawn(crate::sys::run(registry, shutdown_rx));
    tracing::info!("open ports: {}", broker.open_ports());
    Ok(broker)
}

impl RunningBroker {
    /// `mqtt 0.0.0.0:1883, ws ..., http 127.0.0.1:8080`: every socket it listens on.
    pub fn open_ports(&self) -> String {
        let ports: Vec<String> = [
            ("mqtt", self.mqtt_addr),
            ("ws", self.ws_addr),
            ("mqtts", self.mqtts_addr),
            ("wss", self.wss_addr),
            ("http", self.http_addr),
            ("https", self.https_addr),
        ]
        .into_iter()
        .filter_map(|(name, addr)| addr.map(|a| format!("{name} {a}")))
        .collect();
        ports.join(", ")
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Re-reads the server certificate and key (SIGHUP): new handshakes use
    /// them, established connections are untouched.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        let Some(tls) = &self.tls else { return Ok(()) };
        let revoked = self
            .directory
            .as_ref()
            .map(|d| d.revoked_serials())
            .unwrap_or_default();
        tls.reload(&revoked)?;
        tracing::info!("TLS certificate reloaded");
        Ok(())
    }

    /// The admin API's services (absent for [`start_core`]).
    pub fn identity(&self) -> Option<&Arc<IdentityServices>> {
        self.identity.as_ref()
    }

    /// The identity directory (absent for [`start_core`]).
    pub fn directory(&self) -> Option<&Arc<Directory>> {
        self.directory.as_ref()
    }

    pub fn services(&self) -> &Arc<Services> {
        self.registry.services()
    }

    /// Stops accepting, tells every client (v5 DISCONNECT 0x8B), waits up
    /// to five seconds for connections to end, and commits the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.registry.stop();
        self.registry.kick_all(ReasonCode::SERVER_SHUTTING_DOWN);
        let wait_all = async {
            for (permits, max) in &self.limits {
                let _ = permits.acquire_many(*max).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), wait_all)
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 5 s");
        }
        let store = self.registry.services().store.clone();
        tokio::task::spawn_blocking(move || store.close())
            .await
            .ok();
        tracing::info!("broker stopped");
    }
}

/// A listening socket with a deep accept queue: connections beyond the
/// admission limit wait there (the kernel caps it at `somaxconn`).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// A deleted user's stored sessions end with it: nobody may resume them,
/// not even a new user of the same name.
fn end_sessions_of_deleted_users(directory: &Arc<Directory>, registry: &Arc<Registry>) {
    let runtime = tokio::runtime::Handle::current();
    let (directory_ref, registry) = (Arc::downgrade(directory), Arc::downgrade(registry));
    directory.on_user_change(move |username| {
        let gone = directory_ref
            .upgrade()
            .is_some_and(|d| d.user(username).is_none());
        let Some(registry) = registry.upgrade().filter(|_| gone) else {
            return;
        };
        let username = username.to_owned();
        runtime.spawn(async move { registry.end_sessions_of(&username).await });
    });
}

/// Rebuilds the TLS configuration (with a new CRL) whenever the directory
/// changes, so a revoked certificate is refused at the next handshake.
async fn follow_revocations(tls: Arc<TlsContext>, directory: std::sync::Weak<Directory>) {
    let Some(mut changes) = directory.upgrade().map(|d| d.changes()) else {
        return;
    };
    let mut revoked = directory
        .upgrade()
        .map(|d| d.revoked_serials())
        .unwrap_or_default();
    while changes.changed().await.is_ok() {
        let Some(directory) = directory.upgrade() else {
            return;
        };
        let now = directory.revoked_serials();
        if now != revoked {
            revoked = now;
            if let Err(e) = tls.reload(&revoked) {
                tracing::error!("cannot apply certificate revocation: {e}");
            }
        }
    }
}
