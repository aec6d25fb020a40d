//! Users and logins for tests: permissions, a user in the directory, and
//! raw MQTT logins with a user name and password.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{RawClient, TestBroker, connect_packet};
use gatehouse::identity::{Context, Directory, Effect, NewUser, Operation, Permission};
use gatehouse::protocol::*;

pub fn perm(resource: &str, operation: Operation) -> Permission {
    Permission {
        resource: resource.into(),
        operation,
        context: Context::Mqtt,
        effect: Effect::Allow,
    }
}

pub fn deny(resource: &str, operation: Operation) -> Permission {
    Permission {
        effect: Effect::Deny,
        ..perm(resource, operation)
    }
}

pub fn directory(broker: &TestBroker) -> Arc<Directory> {
    broker.broker.as_ref().unwrap().directory().unwrap().clone()
}

pub fn add_user(dir: &Directory, name: &str, password: &str, permissions: Vec<Permission>) {
    dir.add_user(NewUser {
        username: name.into(),
        password: Some(password.into()),
        permissions,
        ..NewUser::default()
    })
    .unwrap();
}

pub async fn login(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    user: &str,
    password: &str,
) -> (RawClient, ConnAck) {
    let mut c = RawClient::tcp(addr, version).await;
    let mut connect = connect_packet(version, client_id, true);
    connect.username = Some(user.into());
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    let ack = c.connect_with(connect).await;
    (c, ack)
}

pub async fn login_ok(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    user: &str,
    password: &str,
) -> RawClient {
    let (c, ack) = login(addr, version, client_id, user, password).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "login of {user}");
    c
}
