//! What administrators see of a connected client: kept in its session
//! while it is connected, 24 bytes in one small allocation (every idle
//! connection carries it, so it is packed).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::identity::LoginMethod;
use crate::protocol::ProtocolVersion;
use crate::router::now_millis;

/// The listener a client came in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Tcp,
    WebSocket,
    Tls,
    WebSocketTls,
}

impl Listener {
    pub fn name(self) -> &'static str {
        match self {
            Listener::Tcp => "mqtt",
            Listener::WebSocket => "ws",
            Listener::Tls => "mqtts",
            Listener::WebSocketTls => "wss",
        }
    }
}

/// A connection's facts, packed (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// IPv6, or IPv4 mapped into it.
    ip: [u8; 16],
    port: u16,
    /// Unix seconds (until 2106).
    since: u32,
    /// listener (bits 0-1), v5 (bit 2), login method (bits 3-5).
    flags: u8,
}

impl Connected {
    pub fn new(
        peer: SocketAddr,
        listener: Listener,
        version: ProtocolVersion,
        method: LoginMethod,
    ) -> Connected {
        let ip = match peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let listener_bits = match listener {
            Listener::Tcp => 0,
            Listener::WebSocket => 1,
            Listener::Tls => 2,
            Listener::WebSocketTls => 3,
        };
        let method_bits = match method {
            LoginMethod::Anonymous => 0,
            LoginMethod::Password => 1,
            LoginMethod::Certificate => 2,
            LoginMethod::Token => 3,
        };
        Connected {
            ip: ip.octets(),
            port: peer.port(),
            since: u32::try_from(now_millis() / 1000).unwrap_or(u32::MAX),
            flags: listener_bits | u8::from(version == ProtocolVersion::V5) << 2 | method_bits << 3,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        let ip = Ipv6Addr::from(self.ip);
        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        SocketAddr::new(ip, self.port)
    }

    pub fn listener(&self) -> Listener {
        match self.flags & 3 {
            0 => Listener::Tcp,
            1 => Listener::WebSocket,
            2 => Listener::Tls,
            _ => Listener::WebSocketTls,
        }
    }

    pub fn version(&self) -> ProtocolVersion {
        if self.flags & 4 != 0 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        }
    }

    pub fn method(&self) -> LoginMethod {
        match (self.flags >> 3) & 7 {
            1 => LoginMethod::Password,
            2 => LoginMethod::Certificate,
            3 => LoginMethod::Token,
            _ => LoginMethod::Anonymous,
        }
    }

    /// Unix milliseconds (to the second).
    pub fn since_millis(&self) -> u64 {
        u64::from(self.since) * 1000
    }
}

/// A connected client as the admin API and CLI list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    /// `None` for the core's clients without identities.
    pub username: Option<String>,
    pub connection: Connected,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_unpacks() {
        for (peer, listener, version, method) in [
            (
                "10.1.2.3:1883",
                Listener::Tcp,
                ProtocolVersion::V311,
                LoginMethod::Password,
            ),
            (
                "[2001:db8::7]:8884",
                Listener::WebSocketTls,
                ProtocolVersion::V5,
                LoginMethod::Token,
            ),
            (
                "127.0.0.1:40000",
                Listener::Tls,
                ProtocolVersion::V5,
                LoginMethod::Certificate,
            ),
        ] {
            let peer: SocketAddr = peer.parse().unwrap();
            let c = Connected::new(peer, listener, version, method);
            assert_eq!(
                (c.peer(), c.listener(), c.version(), c.method()),
                (peer, listener, version, method)
            );
        }
        assert!(std::mem::size_of::<Connected>() <= 24);
    }
}
