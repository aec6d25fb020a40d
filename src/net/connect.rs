//! The CONNECT / CONNACK exchange: validation, authentication, attaching
//! the session and telling the client what this server allows.

use bytes::BytesMut;
use std::net::SocketAddr;

use super::Shared;
use crate::auth::{AuthOutcome, Credentials};
use crate::identity::{LoginMethod, TOKEN_AUTH_METHOD};
use crate::protocol::{
    self, ConnAck, Connect, MqttStr, Packet, Properties, ProtocolVersion, ReasonCode, topic,
};
use crate::session::{AttachError, ClientSession, ConnectParams, Connected, Listener};
use crate::tls::PeerCertificate;

/// A CONNECT refused before any session exists.
pub struct Refused {
    pub reason: ReasonCode,
    pub detail: &'static str,
}

fn refuse(reason: ReasonCode, detail: &'static str) -> Refused {
    Refused { reason, detail }
}

/// A copy that does not pin the buffer the original was decoded from.
fn owned(text: &MqttStr) -> MqttStr {
    MqttStr::from_bytes(bytes::Bytes::copy_from_slice(text.as_bytes())).expect("already valid")
}

/// The detail of a refusal by the authenticator (logged as such).
pub const AUTH_REFUSED: &str = "authentication refused";

/// How a client tried to log in, for the failure counters: a certificate,
/// no user name, a password that looks like a token (a JWT), or a password.
fn claimed_method(c: &Credentials<'_>) -> LoginMethod {
    match (c.certificate, c.username, c.password) {
        (Some(_), ..) => LoginMethod::Certificate,
        (None, None, _) => LoginMethod::Anonymous,
        (None, Some(_), Some(p))
            if p.starts_with(b"eyJ") && p.iter().filter(|b| **b == b'.').count() == 2 =>
        {
            LoginMethod::Token
        }
        _ => LoginMethod::Password,
    }
}

/// Writes a CONNACK refusing the connection.
pub fn write_refusal(version: ProtocolVersion, reason: ReasonCode, out: &mut BytesMut) {
    let ack = ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    };
    protocol::encode(&Packet::ConnAck(ack), version, out);
}

/// Accepts a CONNECT: on success the session is attached and the CONNACK
/// (plus any resent in-flight messages) is in `out`.
pub async fn accept(
    shared: &Shared,
    connect: Connect,
    (peer, listener): (SocketAddr, Listener),
    certificate: Option<&PeerCertificate>,
    out: &mut BytesMut,
) -> Result<(ClientSession, u16), Refused> {
    let services = shared.registry.services();
    let limits = &services.config.limits;
    let v5 = connect.protocol_version == ProtocolVersion::V5;
    let props = &connect.properties;

    // Enhanced authentication (MQTT 5 §4.12): one method, Gatehouse's
    // `gatehouse-token`. The token comes as authentication data (or as the
    // password), is checked in this one step (no AUTH exchange during
    // CONNECT), and the connection may later renew it with AUTH 0x19
    // (`ClientSession::on_auth`). Any other method is refused.
    let token_auth = match props.authentication_method.as_deref() {
        None => false,
        Some(TOKEN_AUTH_METHOD) => true,
        Some(_) => {
            return Err(refuse(
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "unsupported authentication method",
            ));
        }
    };
    if let Some(will) = &connect.will {
        if !topic::is_valid_topic_name(&will.topic) {
            return Err(refuse(ReasonCode::TOPIC_NAME_INVALID, "invalid will topic"));
        }
        if will.retain && !services.config.mqtt.retain_available {
            return Err(refuse(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "retain is disabled",
            ));
        }
    }
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            return Err(refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "an empty client id needs a clean session",
            ));
        }
        let id = MqttStr::from(format!("gatehouse-{:016x}", rand::random::<u64>()));
        assigned = Some(id.clone());
        id
    } else {
        // Own copy: the decoded id is a slice of the read buffer, and the
        // session keeps its id for as long as it lives.
        owned(&connect.client_id)
    };

    let credentials = Credentials {
        client_id: &client_id,
        username: connect.username.as_deref(),
        password: if token_auth {
            props
                .authentication_data
                .as_deref()
                .or(connect.password.as_deref())
        } else {
            connect.password.as_deref()
        },
        peer,
        certificate,
    };
    let method = claimed_method(&credentials);
    let identity = match shared.auth.authenticate(credentials).await {
        AuthOutcome::Allowed(identity) => {
            services.metrics.authenticated(identity.acl.method, true);
            identity
        }
        AuthOutcome::Denied(reason) => {
            services.metrics.authenticated(method, false);
            return Err(refuse(reason, AUTH_REFUSED));
        }
    };
    // `gatehouse-token` admits tokens only (not a password that happens to
    // be sent as authentication data), and marks the binding renewable.
    if token_auth && (identity.acl.method != LoginMethod::Token || !identity.acl.allow_renewal()) {
        return Err(refuse(
            ReasonCode::BAD_USERNAME_OR_PASSWORD,
            "gatehouse-token needs a token",
        ));
    }
    let mut will = connect.will;
    if let Some(will) = &mut will {
        will.topic = owned(&will.topic);
        will.payload = bytes::Bytes::copy_from_slice(&will.payload);
        if let Some(prefix) = &identity.publish_prefix {
            let joined = format!("{prefix}{}", will.topic);
            will.topic = MqttStr::from_bytes(joined.into()).ok_or(refuse(
                ReasonCode::TOPIC_NAME_INVALID,
                "prefixed will topic too long",
            ))?;
        }
        if !identity.acl.load().can_publish(&will.topic) {
            return Err(refuse(
                ReasonCode::NOT_AUTHORIZED,
                "will topic not writable",
            ));
        }
    }

    let max_expiry = limits.max_session_expiry_secs;
    let requested_expiry = match (v5, connect.clean_start) {
        (true, _) => props.session_expiry_interval.unwrap_or(0),
        (false, true) => 0,
        (false, false) => max_expiry,
    };
    let expiry_interval = requested_expiry.min(max_expiry);
    let keep_alive =
        if connect.keep_alive > limits.max_keep_alive_secs || (v5 && connect.keep_alive == 0) {
            limits.max_keep_alive_secs
        } else {
            connect.keep_alive
        };

    let owner = identity.username().unwrap_or("");
    let facts = Connected::new(
        peer,
        listener,
        connect.protocol_version,
        identity.acl.method,
    );
    let attached = match shared
        .registry
        .attach(&client_id, connect.clean_start, owner, facts)
        .await
    {
        Ok(attached) => attached,
        Err(AttachError::OwnedByAnother) => {
            tracing::warn!(%peer, %client_id, username = owner, "connection refused: the client id belongs to another user's session");
            return Err(refuse(
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "client id owned by another user",
            ));
        }
        Err(AttachError::Busy) => {
            return Err(refuse(
                ReasonCode::SERVER_BUSY,
                "the session's current connection did not let go",
            ));
        }
    };
    let session_present = attached.session_present;
    let params = ConnectParams {
        version: connect.protocol_version,
        client_id: client_id.clone(),
        identity,
        will,
        expiry_interval,
        receive_maximum: props.receive_maximum.unwrap_or(u16::MAX),
        maximum_packet_size: props.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
        topic_alias_maximum: props.topic_alias_maximum.unwrap_or(0),
    };
    let mut session = ClientSession::new(services.clone(), attached, params);

    let mut properties = Properties::default();
    if v5 {
        properties.receive_maximum = Some(limits.receive_maximum);
        properties.maximum_packet_size = Some(limits.max_packet_size);
        properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
        properties.retain_available = Some(u8::from(services.config.mqtt.retain_available));
        properties.wildcard_subscription_available = Some(1);
        properties.subscription_identifier_available = Some(1);
        properties.shared_subscription_available = Some(1);
        properties.assigned_client_identifier = assigned;
        if token_auth {
            properties.authentication_method = Some(MqttStr::from(TOKEN_AUTH_METHOD));
        }
        if keep_alive != connect.keep_alive {
            properties.server_keep_alive = Some(keep_alive);
        }
        if expiry_interval != requested_expiry {
            properties.session_expiry_interval = Some(expiry_interval);
        }
    }
    let ack = ConnAck {
        session_present,
        reason: ReasonCode::SUCCESS,
        properties,
    };
    protocol::encode(&Packet::ConnAck(ack), connect.protocol_version, out);
    session.resend_inflight(out);
    Ok((session, keep_alive))
}
