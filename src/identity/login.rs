//! `POST /api/login`'s rules: rate limits per user name and per address,
//! argon2 on the blocking pool (one run per core at most), the initial
//! admin password only from loopback, the second factor, the token's
//! lifetime, and the enrol-only token of a user who must enrol MFA first.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::mfa::MfaError;
use super::model::{GrantMethod, User};
use super::services::{IdentityServices, is_initial_admin, is_loopback};
use super::tokens::{SCOPE_MFA_ENROLL, TokenInfo, TokenRecord, TokenServiceError};

/// A login request (Connectware's body plus `otp` and `backupCode`).
#[derive(Clone, Default)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// Hours; fractions allowed. `None`: the configured default.
    pub expire_time_in_hours: Option<f64>,
    pub label: Option<String>,
    pub otp: Option<String>,
    pub backup_code: Option<String>,
}

impl std::fmt::Debug for LoginRequest {
    /// Without the password or codes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("expire_time_in_hours", &self.expire_time_in_hours)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: String,
    pub record: TokenRecord,
    /// The user must enrol MFA; this token may do nothing else.
    pub enrol_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many attempts; retry in {} s", .0.as_secs())]
    RateLimited(Duration),
    #[error("wrong username or password")]
    BadCredentials,
    #[error("user is disabled or may not log in with a password")]
    Disabled,
    #[error("`admin` still has its initial password: log in from a loopback address and change it")]
    InitialAdminRemote,
    #[error("expireTimeInHours must be a number above 0 and at most {0}")]
    Lifetime(u64),
    #[error("label must be at most 256 characters")]
    Label,
    #[error(transparent)]
    Mfa(#[from] MfaError),
    #[error(transparent)]
    Tokens(#[from] TokenServiceError),
    #[error("the login was interrupted")]
    Interrupted,
}

impl IdentityServices {
    /// Checks the password (argon2 on the blocking pool), then the rest
    /// (MFA, token record: store writes) on the blocking pool as well.
    pub async fn login(
        self: &Arc<Self>,
        request: LoginRequest,
        peer: IpAddr,
    ) -> Result<LoginOutcome, LoginError> {
        self.take_login_attempt(&request.username, peer)?;
        let max = self.config.token_max_hours;
        let hours = request
            .expire_time_in_hours
            .unwrap_or(self.config.token_default_hours as f64);
        if !hours.is_finite() || hours <= 0.0 || hours > max as f64 {
            return Err(LoginError::Lifetime(max));
        }
        if request
            .label
            .as_ref()
            .is_some_and(|l| l.chars().count() > 256)
        {
            return Err(LoginError::Label);
        }
        let user = self
            .check_password(&request.username, &request.password, peer)
            .await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.second_step(user, request, hours, peer))
            .await
            .map_err(|_| LoginError::Interrupted)?
    }

    /// The checks of every password login, without issuing an API token
    /// (the OAuth login form and `password` grant): rate limits, password,
    /// account state, initial admin password, then the second factor.
    pub async fn verify_login(
        self: &Arc<Self>,
        request: LoginRequest,
        peer: IpAddr,
    ) -> Result<User, LoginError> {
        self.take_login_attempt(&request.username, peer)?;
        let user = self
            .check_password(&request.username, &request.password, peer)
            .await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.mfa.check_login(
                &user.id,
                request.otp.as_deref(),
                request.backup_code.as_deref(),
            )?;
            Ok(user)
        })
        .await
        .map_err(|_| LoginError::Interrupted)?
    }

    /// One attempt from the per-address and per-user-name budgets.
    fn take_login_attempt(&self, username: &str, peer: IpAddr) -> Result<(), LoginError> {
        self.per_address
            .take(&format!("login-addr:{peer}"))
            .map_err(LoginError::RateLimited)?;
        self.per_user
            .take(&format!("login-user:{username}"))
            .map_err(LoginError::RateLimited)
    }

    /// argon2 on the blocking pool (one run per core at most), then the
    /// account's state.
    async fn check_password(
        &self,
        username: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<User, LoginError> {
        let user = self.directory.user(username);
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let verified = self
            .directory
            .hashing()
            .verify(hash, password.as_bytes())
            .await;
        let user = match user {
            Some(user) if verified => user,
            _ => {
                tracing::warn!(%peer, username, "HTTP login failed: bad username or password");
                return Err(LoginError::BadCredentials);
            }
        };
        if !user.enabled || !user.has_grant(GrantMethod::Password) {
            return Err(LoginError::Disabled);
        }
        if is_initial_admin(&user.username, password.as_bytes()) && !is_loopback(peer) {
            tracing::warn!(%peer, "HTTP login of `admin` with the initial password from a remote address refused");
            return Err(LoginError::InitialAdminRemote);
        }
        self.rehash_if_needed(&user, password);
        Ok(user)
    }

    /// A verified password whose hash is old (other argon2 parameters, or
    /// imported from mosquitto) is hashed again with argon2id, as MQTT
    /// logins do: in the background, under the hashing limit, one at a
    /// time per user, only while the stored hash is still the one verified.
    fn rehash_if_needed(&self, user: &User, password: &str) {
        self.directory
            .hashing()
            .rehash_if_needed(&self.directory, user, password.as_bytes());
    }

    /// MFA and the token: both write to the store.
    fn second_step(
        &self,
        user: User,
        request: LoginRequest,
        hours: f64,
        peer: IpAddr,
    ) -> Result<LoginOutcome, LoginError> {
        self.mfa.check_login(
            &user.id,
            request.otp.as_deref(),
            request.backup_code.as_deref(),
        )?;
        let account = self.mfa.account(&user.id);
        let enrol_only = account.enforce_mfa_enrollment && !account.mfa_enrolled();
        let lifetime = Duration::from_secs_f64((hours * 3600.0).ceil());
        let (token, record) = self.tokens.issue(
            &user,
            lifetime,
            request.label.clone(),
            enrol_only.then_some(SCOPE_MFA_ENROLL),
        )?;
        tracing::info!(%peer, username = user.username, label = request.label, enrol_only, "token issued");
        Ok(LoginOutcome {
            token,
            record,
            enrol_only,
        })
    }

    /// A browser session opened with a link's token (`/admin?apiToken=`):
    /// a token of its own, so signing out of the page revokes that one and
    /// never the long-lived token the link carried (which scripts and
    /// devices may use); it lives no longer than a default login nor than
    /// the link's token, with the same enrol-only restriction.
    pub fn session_from_token(
        &self,
        user: &User,
        source: &TokenInfo,
        peer: IpAddr,
    ) -> Result<LoginOutcome, LoginError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left = source.expires_at.saturating_sub(now);
        let lifetime = Duration::from_secs(left.min(self.config.token_default_hours * 3600));
        let enrol_only = source.enrol_only();
        let label = "admin page (link)".to_owned();
        let (token, record) = self.tokens.issue(
            user,
            lifetime,
            Some(label.clone()),
            enrol_only.then_some(SCOPE_MFA_ENROLL),
        )?;
        tracing::info!(%peer, username = user.username, label, enrol_only, "token issued");
        Ok(LoginOutcome {
            token,
            record,
            enrol_only,
        })
    }
}
