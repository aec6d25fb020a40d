//! Identity: users, roles and permissions (after Connectware's model),
//! password hashing and policy, and ACLs compiled into topic tries.
//! No socket code lives here.

pub mod access_check;
pub mod access_tokens;
pub mod acl;
mod acl_cache;
pub mod audit;
pub mod cache;
mod certificates;
mod compile;
pub mod directory;
mod directory_admin;
pub mod hashing;
pub mod http_access;
pub mod import;
pub mod live;
pub mod login;
pub mod mfa;
pub mod model;
pub mod mosquitto_hash;
pub mod oauth;
pub mod password;
pub mod policy;
pub mod rate;
pub mod registry;
pub mod services;
pub mod settings;
mod token_sessions;
pub mod tokens;
mod totp;

pub use acl::{Acl, Rule};
pub use compile::client_id_substitutable;
pub use directory::{Directory, IdentityError, NewUser};
pub use directory_admin::Holder;
pub use live::{LiveAcl, LiveSet, LoginMethod, TOKEN_AUTH_METHOD, Wakeup, still_granted};
pub use model::*;
pub use policy::PasswordPolicy;
pub use settings::{SettingsError, StartupSettings};
