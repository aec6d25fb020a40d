//! Codec round trips (proptest, every packet type, both versions) and one
//! raw-bytes test per strict-validation rule.

use bytes::BytesMut;
use gatehouse::protocol::*;
use proptest::prelude::*;

use ProtocolVersion::{V5, V311};

#[path = "codec_support/strategies.rs"]
mod strategies;

use strategies::packet;

fn roundtrip(packet: &Packet, v: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    encode(packet, v, &mut buf);
    prop_assert_eq!(buf.len(), encoded_len(packet, v));
    let wire = buf.clone();
    // Every strict prefix is "need more", and consumes nothing.
    for cut in 0..wire.len() {
        let mut part = BytesMut::from(&wire[..cut]);
        prop_assert_eq!(decode(&mut part, Some(v), usize::MAX), Ok(None));
        prop_assert_eq!(&part[..], &wire[..cut]);
    }
    let decoded = decode(&mut buf, Some(v), wire.len());
    prop_assert_eq!(decoded, Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty());
    let mut small = BytesMut::from(&wire[..]);
    let too_large = decode(&mut small, Some(v), wire.len() - 1);
    prop_assert_eq!(
        too_large,
        Err(DecodeError::TooLarge {
            size: wire.len(),
            max: wire.len() - 1
        })
    );
    if let Packet::Connect(_) = packet {
        let mut again = BytesMut::from(&wire[..]);
        prop_assert_eq!(
            decode(&mut again, None, usize::MAX),
            Ok(Some(packet.clone()))
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip_v311(packet in packet(V311)) {
        roundtrip(&packet, V311)?;
    }

    #[test]
    fn roundtrip_v5(packet in packet(V5)) {
        roundtrip(&packet, V5)?;
    }
}

/// One raw-bytes test per strict-validation rule.
#[path = "codec_support/validation.rs"]
mod validation;
