//! Start-up settings of the identity directory, from `broker.toml` and the
//! environment variables Connectware documents.

use base64::Engine;

use super::policy::PasswordPolicy;
use crate::config::Auth;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{var} must be base64: {source}")]
    Base64 {
        var: &'static str,
        source: base64::DecodeError,
    },
    #[error("{var} must decode to UTF-8 text")]
    Utf8 { var: &'static str },
    #[error("CYBUS_AUTH_PASSWORD_POLICY_RULES: {0}")]
    Policy(String),
}

pub struct StartupSettings {
    pub initial_admin_password: String,
    pub admin_enabled: bool,
    pub policy: PasswordPolicy,
}

const PASSWORD_VARS: [&str; 2] = [
    "GATEHOUSE_INITIAL_ADMIN_PASSWORD",
    "CYBUS_INITIAL_ADMIN_USER_PASSWORD",
];

impl StartupSettings {
    /// Reads the process environment over the configuration.
    pub fn from_env(config: &Auth) -> Result<StartupSettings, SettingsError> {
        StartupSettings::resolve(config, |name| std::env::var(name).ok())
    }

    /// The same, with an explicit variable lookup (tests).
    pub fn resolve(
        config: &Auth,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<StartupSettings, SettingsError> {
        let mut initial_admin_password = "admin".to_owned();
        for name in PASSWORD_VARS {
            if let Some(encoded) = var(name) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|source| SettingsError::Base64 { var: name, source })?;
                initial_admin_password =
                    String::from_utf8(bytes).map_err(|_| SettingsError::Utf8 { var: name })?;
                break;
            }
        }
        // Connectware: any value but `false` keeps the admin enabled.
        let admin_enabled = match var("CYBUS_ADMIN_USER_ENABLED") {
            Some(value) => value.trim() != "false",
            None => config.admin_user_enabled,
        };
        let policy = match var("CYBUS_AUTH_PASSWORD_POLICY_RULES") {
            Some(json) => PasswordPolicy::from_json(&json)
                .map_err(|e| SettingsError::Policy(e.to_string()))?,
            None => config.password_policy,
        };
        Ok(StartupSettings {
            initial_admin_password,
            admin_enabled,
            policy,
        })
    }
}
