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
    #[error("credential {path}: {source}")]
    Credential {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("credential {0} must be UTF-8 text")]
    CredentialUtf8(std::path::PathBuf),
}

pub struct StartupSettings {
    pub initial_admin_password: String,
    pub admin_enabled: bool,
    pub policy: PasswordPolicy,
}

/// The systemd credential (`LoadCredential=initial-admin-password:FILE`)
/// with the first admin password as plain text; wins over the variables.
pub const ADMIN_PASSWORD_CREDENTIAL: &str = "initial-admin-password";

/// The password in `$CREDENTIALS_DIRECTORY/initial-admin-password`, if
/// systemd passed one (one trailing newline removed).
fn initial_admin_credential(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, SettingsError> {
    let Some(dir) = var("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let path = std::path::Path::new(&dir).join(ADMIN_PASSWORD_CREDENTIAL);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SettingsError::Credential { path, source }),
    };
    let text = String::from_utf8(bytes).map_err(|_| SettingsError::CredentialUtf8(path))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(Some(text.strip_suffix('\r').unwrap_or(text).to_owned()))
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
        let credential = initial_admin_credential(&var)?;
        let mut initial_admin_password = credential.clone().unwrap_or_else(|| "admin".to_owned());
        let names = if credential.is_some() {
            &[][..]
        } else {
            &PASSWORD_VARS[..]
        };
        for &name in names {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, String)]) -> Result<StartupSettings, SettingsError> {
        StartupSettings::resolve(&Auth::default(), |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn the_systemd_credential_wins_over_the_variables() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().display().to_string();
        let encoded = "ZnJvbS1lbnY=".to_owned(); // "from-env"
        let env = ("GATEHOUSE_INITIAL_ADMIN_PASSWORD", encoded);
        // No credential file: the variable, then the default.
        let s = settings(&[("CREDENTIALS_DIRECTORY", creds.clone()), env.clone()]).unwrap();
        assert_eq!(s.initial_admin_password, "from-env");
        assert_eq!(settings(&[]).unwrap().initial_admin_password, "admin");
        std::fs::write(dir.path().join(ADMIN_PASSWORD_CREDENTIAL), "from-cred\n").unwrap();
        let s = settings(&[("CREDENTIALS_DIRECTORY", creds.clone()), env]).unwrap();
        assert_eq!(s.initial_admin_password, "from-cred");
        std::fs::write(dir.path().join(ADMIN_PASSWORD_CREDENTIAL), [0xff, 0xfe]).unwrap();
        assert!(matches!(
            settings(&[("CREDENTIALS_DIRECTORY", creds)]),
            Err(SettingsError::CredentialUtf8(_))
        ));
    }
}
