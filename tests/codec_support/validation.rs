use super::*;

const MAX: usize = 1 << 20;

/// Fixed header (type/flags byte and remaining length) plus `body`.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn dec(v: Option<ProtocolVersion>, bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    decode(&mut BytesMut::from(bytes), v, MAX)
}

fn err(v: Option<ProtocolVersion>, first: u8, body: &[u8]) -> DecodeError {
    match dec(v, &frame(first, body)) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn ok(v: Option<ProtocolVersion>, first: u8, body: &[u8]) -> Packet {
    match dec(v, &frame(first, body)) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

#[track_caller]
fn malformed(v: Option<ProtocolVersion>, first: u8, body: &[u8]) {
    let e = err(v, first, body);
    assert!(
        matches!(e, DecodeError::Malformed(_)),
        "expected Malformed, got {e:?}"
    );
}

#[track_caller]
fn protocol(v: Option<ProtocolVersion>, first: u8, body: &[u8]) {
    let e = err(v, first, body);
    assert!(
        matches!(e, DecodeError::Protocol(_)),
        "expected Protocol, got {e:?}"
    );
}

/// Length-prefixed string or binary.
fn s(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

/// Property length (short) and properties.
fn p(props: &[u8]) -> Vec<u8> {
    assert!(props.len() < 128);
    let mut out = vec![props.len() as u8];
    out.extend_from_slice(props);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// CONNECT body: protocol "MQTT", `level`, `flags`, keep alive 60, then `rest`.
fn connect(level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    cat(&[&s(b"MQTT"), &[level, flags, 0, 60], rest])
}

const V3: Option<ProtocolVersion> = Some(V311);
const V5S: Option<ProtocolVersion> = Some(V5);

#[test]
fn too_large_is_refused_from_the_header_alone() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let e = decode(&mut buf, V3, 1024);
    assert_eq!(
        e,
        Err(DecodeError::TooLarge {
            size: 5 + 268_435_455,
            max: 1024
        })
    );
    assert_eq!(e.unwrap_err().reason_code(), ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn incomplete_input_is_not_consumed() {
    for bytes in [
        &[][..],
        &[0x30],
        &[0x30, 0x80],
        &[0x30, 0x05, 0, 1, b'a'],
        &[0x10, 0x10, 0],
    ] {
        let mut buf = BytesMut::from(bytes);
        let v = if bytes.first() == Some(&0x10) {
            None
        } else {
            V3
        };
        assert_eq!(decode(&mut buf, v, MAX), Ok(None));
        assert_eq!(&buf[..], bytes);
    }
}

#[test]
fn decodes_one_packet_at_a_time_and_zero_copy() {
    let publish = frame(0x30, &cat(&[&s(b"a/b"), b"payload"]));
    let mut wire = publish.clone();
    wire.extend_from_slice(&[0xC0, 0x00]);
    let mut buf = BytesMut::from(&wire[..]);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, V3, MAX) else {
        panic!()
    };
    assert_eq!(&p.payload[..], b"payload");
    assert!(
        range.contains(&(p.payload.as_ptr() as usize)),
        "payload was copied"
    );
    assert!(
        range.contains(&(p.topic.as_bytes().as_ptr() as usize)),
        "topic was copied"
    );
    assert_eq!(decode(&mut buf, V3, MAX), Ok(Some(Packet::PingReq)));
    assert!(buf.is_empty());
}

#[test]
fn remaining_length_encoding() {
    let five = [0x30, 0x80, 0x80, 0x80, 0x80, 0x01];
    assert!(matches!(dec(V3, &five), Err(DecodeError::Malformed(_))));
    // The same value in more bytes than needed.
    assert!(matches!(
        dec(V3, &[0xC0, 0x80, 0x00]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn reserved_fixed_header_flags() {
    for (first, body) in [
        (0x11, connect(4, 0x02, &s(b"c"))),
        (0x21, vec![0, 0]),
        (0x41, vec![0, 1]),
        (0x51, vec![0, 1]),
        (0x60, vec![0, 1]),
        (0x63, vec![0, 1]),
        (0x71, vec![0, 1]),
        (0x80, cat(&[&[0, 1], &s(b"a"), &[0]])),
        (0x92, vec![0, 1, 0]),
        (0xA0, cat(&[&[0, 1], &s(b"a")])),
        (0xB1, vec![0, 1]),
        (0xC1, vec![]),
        (0xD8, vec![]),
        (0xE2, vec![]),
    ] {
        let v = if first >> 4 == 1 { None } else { V3 };
        malformed(v, first, &body);
    }
    malformed(V5S, 0xF1, &[]);
    malformed(V3, 0x00, &[]);
}

#[test]
fn publish_flags_and_packet_id() {
    let body = cat(&[&s(b"t"), &[0, 1]]);
    malformed(V3, 0x36, &body); // QoS 3
    malformed(V3, 0x38, &s(b"t")); // DUP at QoS 0
    malformed(V3, 0x32, &cat(&[&s(b"t"), &[0, 0]])); // packet id 0
    assert!(
        matches!(ok(V3, 0x3B, &body), Packet::Publish(p) if p.dup && p.retain && p.packet_id == 1)
    );
}

#[test]
fn publish_topic_names() {
    for topic in [&b"a/+"[..], b"#", b"a/#", b"+"] {
        assert_eq!(err(V3, 0x30, &s(topic)), DecodeError::TopicNameInvalid);
        assert_eq!(
            err(V5S, 0x30, &cat(&[&s(topic), &[0]])),
            DecodeError::TopicNameInvalid
        );
    }
    assert_eq!(err(V3, 0x30, &s(b"")), DecodeError::TopicNameInvalid);
    assert_eq!(
        DecodeError::TopicNameInvalid.reason_code(),
        ReasonCode::TOPIC_NAME_INVALID
    );
    protocol(V5S, 0x30, &cat(&[&s(b""), &[0]]));
    let aliased = ok(V5S, 0x30, &cat(&[&s(b""), &p(&[0x23, 0, 7])]));
    assert!(
        matches!(aliased, Packet::Publish(p) if p.topic.is_empty() && p.properties.topic_alias == Some(7))
    );
}

#[test]
fn strings_must_be_valid_utf8_without_nul() {
    const INVALID: DecodeError = DecodeError::Malformed("invalid UTF-8 string");
    const NUL: DecodeError = DecodeError::Malformed("U+0000 in a UTF-8 string");
    assert_eq!(err(V3, 0x30, &s(&[0xC3, 0x28])), INVALID);
    assert_eq!(err(V3, 0x30, &s(b"a\0b")), NUL);
    assert_eq!(err(V3, 0x30, &s(&[0xED, 0xA0, 0x80])), INVALID); // UTF-16 surrogate
    assert_eq!(err(V3, 0x30, &s(&[0xFF, 0x00])), INVALID); // both: UTF-8 first
    assert_eq!(err(None, 0x10, &connect(4, 0x02, &s(b"c\0"))), NUL);
    assert_eq!(err(V3, 0x82, &cat(&[&[0, 1], &s(&[0xFF]), &[0]])), INVALID);
    let user_property = |value: &[u8]| {
        let props = p(&cat(&[&[0x26], &s(b"k"), &s(value)]));
        err(V5S, 0x30, &cat(&[&s(b"t"), &props]))
    };
    assert_eq!(user_property(&[0xFF]), INVALID);
    assert_eq!(user_property(b"\0"), NUL);
}

#[test]
fn payload_marked_utf8_must_be_utf8() {
    let publish = |props: &[u8], payload: &[u8]| cat(&[&s(b"t"), &p(props), payload]);
    let bad = [0xC3, 0x28];
    let e = err(V5S, 0x30, &publish(&[0x01, 1], &bad));
    assert_eq!(e, DecodeError::PayloadFormatInvalid);
    assert_eq!(e.reason_code(), ReasonCode::PAYLOAD_FORMAT_INVALID);
    for qos_flags in [0x32, 0x34] {
        let body = cat(&[&s(b"t"), &[0, 7], &p(&[0x01, 1]), &bad]);
        assert_eq!(
            err(V5S, qos_flags, &body),
            DecodeError::PayloadFormatInvalid
        );
    }
    // Unmarked or marked as bytes, or marked and UTF-8 (U+0000 is UTF-8;
    // the string rules do not apply to payloads): accepted as they are.
    for (props, payload) in [
        (&[][..], &bad[..]),
        (&[0x01, 0][..], &bad[..]),
        (&[0x01, 1][..], "grüß\0".as_bytes()),
        (&[0x01, 1][..], &[][..]),
    ] {
        let Packet::Publish(pb) = ok(V5S, 0x30, &publish(props, payload)) else {
            panic!()
        };
        assert_eq!(&pb.payload[..], payload);
    }
    // 3.1.1 has no indicator: those bytes are payload.
    let Packet::Publish(pb) = ok(V3, 0x30, &publish(&[0x01, 1], &bad)) else {
        panic!()
    };
    assert_eq!(&pb.payload[..], &cat(&[&[2, 0x01, 1], &bad])[..]);

    // The same rule for a will (CONNACK 0x99).
    let will = |props: &[u8], payload: &[u8]| {
        connect(
            5,
            0x06,
            &cat(&[&[0], &s(b"c"), &p(props), &s(b"w"), &s(payload)]),
        )
    };
    assert_eq!(
        err(None, 0x10, &will(&[0x01, 1], &bad)),
        DecodeError::PayloadFormatInvalid
    );
    ok(None, 0x10, &will(&[0x01, 0], &bad));
    ok(None, 0x10, &will(&[0x01, 1], "grüß".as_bytes()));
}

#[test]
fn packets_shorter_than_their_fields() {
    malformed(V3, 0x30, &[0, 5, b'a']); // topic runs past the frame
    malformed(V3, 0x40, &[0]);
    malformed(V3, 0x20, &[0]);
    malformed(V3, 0x82, &cat(&[&[0, 1], &s(b"a")])); // filter without options
    malformed(None, 0x10, &connect(4, 0xC2, &s(b"c"))); // username missing
    malformed(V5S, 0x30, &cat(&[&s(b"t"), &[3, 0x02, 0, 0, 0, 0]])); // value past length
    malformed(V5S, 0x30, &cat(&[&s(b"t"), &[9, 0x02, 0, 0, 0, 0]])); // length past frame
}

#[test]
fn trailing_bytes_after_body() {
    malformed(V3, 0x40, &[0, 1, 0]);
    malformed(V3, 0x20, &[0, 0, 0]);
    malformed(V3, 0xB0, &[0, 1, 0]);
    malformed(None, 0x10, &cat(&[&connect(4, 0x02, &s(b"c")), &[0]]));
    malformed(V5S, 0x40, &[0, 1, 0, 0, 0]);
    malformed(V5S, 0x20, &[0, 0, 0, 0]);
}

#[test]
fn connect_versions_and_names() {
    let body = |name: &[u8], level| cat(&[&s(name), &[level, 0x02, 0, 60], &s(b"c")]);
    assert_eq!(
        err(None, 0x10, &body(b"MQTT", 3)),
        DecodeError::UnsupportedVersion(3)
    );
    assert_eq!(
        err(None, 0x10, &body(b"MQIsdp", 3)),
        DecodeError::UnsupportedVersion(3)
    );
    assert_eq!(
        err(None, 0x10, &body(b"MQTT", 6)),
        DecodeError::UnsupportedVersion(6)
    );
    assert_eq!(
        DecodeError::UnsupportedVersion(6).reason_code(),
        ReasonCode(0x84)
    );
    protocol(None, 0x10, &body(b"MQTX", 4));
    let Packet::Connect(c) = ok(None, 0x10, &body(b"MQTT", 4)) else {
        panic!()
    };
    assert_eq!(c.protocol_version, V311);
    assert!(c.clean_start && c.client_id.as_str() == "c" && c.keep_alive == 60);
    let v5 = cat(&[&s(b"MQTT"), &[5, 0x00, 0, 0, 0], &s(b"c")]);
    // A second CONNECT still decodes; the broker rejects it.
    let Packet::Connect(c) = ok(V3, 0x10, &v5) else {
        panic!()
    };
    assert_eq!(c.protocol_version, V5);
}

#[test]
fn only_connect_before_connect() {
    protocol(None, 0xC0, &[]);
    protocol(None, 0x30, &s(b"t"));
    protocol(None, 0xF0, &[]);
    assert_eq!(
        DecodeError::Protocol("x").reason_code(),
        ReasonCode::PROTOCOL_ERROR
    );
}

#[test]
fn connect_flags() {
    malformed(None, 0x10, &connect(4, 0x03, &s(b"c"))); // reserved bit
    malformed(None, 0x10, &connect(4, 0x08, &s(b"c"))); // will QoS without will
    malformed(None, 0x10, &connect(4, 0x20, &s(b"c"))); // will retain without will
    let will = cat(&[&s(b"c"), &s(b"w"), &s(b"m")]);
    malformed(None, 0x10, &connect(4, 0x1C, &will)); // will QoS 3
    let Packet::Connect(c) = ok(None, 0x10, &connect(4, 0x34, &will)) else {
        panic!()
    };
    let w = c.will.unwrap();
    assert!(w.retain && w.qos == QoS::ExactlyOnce && &w.payload[..] == b"m");
    assert_eq!(
        err(
            None,
            0x10,
            &connect(4, 0x04, &cat(&[&s(b"c"), &s(b"w/#"), &s(b"m")]))
        ),
        DecodeError::TopicNameInvalid
    );
    // Password without username: forbidden in 3.1.1, allowed in 5.0.
    protocol(None, 0x10, &connect(4, 0x40, &cat(&[&s(b"c"), &s(b"pw")])));
    let Packet::Connect(c) = ok(
        None,
        0x10,
        &connect(5, 0x40, &cat(&[&[0], &s(b"c"), &s(b"pw")])),
    ) else {
        panic!()
    };
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn subscribe_rules() {
    let sub = |opts: u8| cat(&[&[0, 1], &s(b"a/b"), &[opts]]);
    let sub5 = |opts: u8| cat(&[&[0, 1, 0], &s(b"a/b"), &[opts]]);
    protocol(V3, 0x82, &[0, 1]);
    protocol(V5S, 0x82, &[0, 1, 0]);
    malformed(V3, 0x82, &cat(&[&[0, 0], &s(b"a"), &[0]])); // packet id 0
    malformed(V3, 0x82, &sub(0x04)); // v3: upper 6 bits reserved
    malformed(V3, 0x82, &sub(0x03));
    malformed(V5S, 0x82, &sub5(0x40));
    protocol(V5S, 0x82, &sub5(0x30)); // retain handling 3
    protocol(V5S, 0x82, &sub5(0x03)); // QoS 3
    malformed(V3, 0x82, &cat(&[&[0, 1], &s(b""), &[0]])); // empty filter
    let Packet::Subscribe(s5) = ok(V5S, 0x82, &sub5(0x2E)) else {
        panic!()
    };
    let o = s5.filters[0].1;
    assert!(
        o.qos == QoS::ExactlyOnce && o.no_local && o.retain_as_published && o.retain_handling == 2
    );
    // Odd filters are the broker's business (reason 0x8F), not malformed.
    let odd = cat(&[
        &[0, 1],
        &s(b"a/#/b"),
        &[0],
        &s(b"a+"),
        &[1],
        &s(b"#/#"),
        &[2],
    ]);
    let Packet::Subscribe(sub) = ok(V3, 0x82, &odd) else {
        panic!()
    };
    assert_eq!(sub.filters.len(), 3);
    let Packet::Unsubscribe(u) = ok(V3, 0xA2, &cat(&[&[0, 1], &s(b"a+/#/x")])) else {
        panic!()
    };
    assert_eq!(u.filters[0].as_str(), "a+/#/x");
}

#[test]
fn unsubscribe_rules() {
    protocol(V3, 0xA2, &[0, 1]);
    protocol(V5S, 0xA2, &[0, 1, 0]);
    malformed(V3, 0xA2, &cat(&[&[0, 0], &s(b"a")]));
    malformed(V3, 0xA2, &cat(&[&[0, 1], &s(b"")]));
}

#[test]
fn connack_rules() {
    malformed(V3, 0x20, &[0x02, 0]);
    malformed(V5S, 0x20, &[0x80, 0, 0]);
    malformed(V3, 0x20, &[0, 6]);
    malformed(V5S, 0x20, &[0, 0x01, 0]); // not a CONNACK reason
    malformed(V5S, 0x20, &[0, 0]); // property length missing
    for (code, reason) in [
        (0, 0x00),
        (1, 0x84),
        (2, 0x85),
        (3, 0x88),
        (4, 0x86),
        (5, 0x87),
    ] {
        let Packet::ConnAck(c) = ok(V3, 0x20, &[1, code]) else {
            panic!()
        };
        assert_eq!((c.session_present, c.reason), (true, ReasonCode(reason)));
    }
}

#[test]
fn empty_body_packets() {
    malformed(V3, 0xC0, &[0]);
    malformed(V3, 0xD0, &[0]);
    malformed(V5S, 0xC0, &[0]);
    malformed(V3, 0xE0, &[0]); // v3 DISCONNECT has no body
    assert_eq!(
        ok(V3, 0xE0, &[]),
        Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS))
    );
    protocol(V3, 0xF0, &[]); // AUTH is v5 only
}

#[test]
fn v5_short_forms() {
    let ack = |p: Packet| match p {
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        ack(ok(V5S, 0x40, &[0, 9])),
        PubResponse::new(9, ReasonCode::SUCCESS)
    );
    assert_eq!(
        ack(ok(V5S, 0x50, &[0, 9, 0x10])),
        PubResponse::new(9, ReasonCode(0x10))
    );
    assert_eq!(
        ack(ok(V5S, 0x62, &[0, 9, 0x92, 0])),
        PubResponse::new(9, ReasonCode(0x92))
    );
    assert_eq!(
        ack(ok(V3, 0x70, &[0, 9])),
        PubResponse::new(9, ReasonCode::SUCCESS)
    );
    malformed(V5S, 0x40, &[0, 0]); // packet id 0
    assert_eq!(
        ok(V5S, 0xE0, &[]),
        Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS))
    );
    assert_eq!(
        ok(V5S, 0xE0, &[0x8E]),
        Packet::Disconnect(Disconnect::new(ReasonCode(0x8E)))
    );
    let auth = Auth {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    assert_eq!(ok(V5S, 0xF0, &[]), Packet::Auth(auth));
    malformed(V5S, 0xF0, &[0x18]); // AUTH may not drop only the properties
}

#[test]
fn v5_reason_codes_per_packet() {
    malformed(V5S, 0x40, &[0, 1, 0x92]);
    malformed(V5S, 0x50, &[0, 1, 0x01]);
    malformed(V5S, 0x62, &[0, 1, 0x10]);
    malformed(V5S, 0x70, &[0, 1, 0x80]);
    malformed(V5S, 0x90, &[0, 1, 0, 0x03]);
    malformed(V5S, 0xB0, &[0, 1, 0, 0x01]);
    malformed(V5S, 0xE0, &[0x01]);
    malformed(V5S, 0xF0, &[0x01, 0]);
    malformed(V3, 0x90, &[0, 1, 0x81]);
    protocol(V5S, 0x90, &[0, 1, 0]); // SUBACK without reasons
    let Packet::SubAck(a) = ok(V3, 0x90, &[0, 1, 0, 1, 2, 0x80]) else {
        panic!()
    };
    assert_eq!(a.reasons, [0, 1, 2, 0x80].map(ReasonCode));
}

#[test]
fn v5_property_identifiers() {
    let publish = |props: &[u8]| cat(&[&s(b"t"), &p(props)]);
    malformed(V5S, 0x30, &publish(&[0x04, 0])); // unknown id
    malformed(V5S, 0x30, &publish(&[0x80, 0x01, 0])); // multi-byte id
    malformed(V5S, 0x30, &publish(&[0x11, 0, 0, 0, 1])); // session expiry in PUBLISH
    malformed(V5S, 0x30, &publish(&[0x18, 0, 0, 0, 1])); // will delay in PUBLISH
    malformed(V5S, 0x40, &[0, 1, 0, 2, 0x23, 0]); // no topic alias in PUBACK
    let conn = |props: &[u8]| connect(5, 0x02, &cat(&[&p(props), &s(b"c")]));
    malformed(None, 0x10, &conn(&[0x23, 0, 1])); // topic alias in CONNECT
    malformed(None, 0x10, &conn(&[0x18, 0, 0, 0, 1])); // will delay belongs to the will
    malformed(None, 0x10, &conn(&[0x01, 0])); // payload format is a will property
    let will = |props: &[u8]| {
        connect(
            5,
            0x06,
            &cat(&[&[0], &s(b"c"), &p(props), &s(b"w"), &s(b"m")]),
        )
    };
    let Packet::Connect(c) = ok(None, 0x10, &will(&[0x18, 0, 0, 0, 9, 0x01, 1])) else {
        panic!()
    };
    let wp = &c.will.unwrap().properties;
    assert_eq!(
        (wp.will_delay_interval, wp.payload_format_indicator),
        (Some(9), Some(1))
    );
    malformed(None, 0x10, &will(&[0x11, 0, 0, 0, 1])); // session expiry in will
}

#[test]
fn v5_property_multiplicity() {
    let publish = |props: &[u8]| cat(&[&s(b"t"), &p(props)]);
    protocol(V5S, 0x30, &publish(&[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]));
    protocol(V5S, 0x30, &publish(&[0x23, 0, 1, 0x23, 0, 1]));
    let Packet::Publish(pb) = ok(V5S, 0x30, &publish(&[0x0B, 1, 0x0B, 0x80, 0x01])) else {
        panic!()
    };
    assert_eq!(pb.properties.subscription_identifiers, [1, 128]);
    let user = cat(&[&[0x26], &s(b"k"), &s(b"v"), &[0x26], &s(b"k"), &s(b"w")]);
    let Packet::Publish(pb) = ok(V5S, 0x30, &publish(&user)) else {
        panic!()
    };
    assert_eq!(pb.properties.user_properties.len(), 2);
    let sub = |props: &[u8]| cat(&[&[0, 1], &p(props), &s(b"a"), &[0]]);
    protocol(V5S, 0x82, &sub(&[0x0B, 1, 0x0B, 2]));
    let Packet::Subscribe(sb) = ok(V5S, 0x82, &sub(&[0x0B, 5])) else {
        panic!()
    };
    assert_eq!(sb.properties.subscription_identifiers, [5]);
}

#[test]
fn v5_property_values() {
    let publish = |props: &[u8]| cat(&[&s(b"t"), &p(props)]);
    let connack = |props: &[u8]| cat(&[&[0, 0], &p(props)]);
    let conn = |props: &[u8]| connect(5, 0x02, &cat(&[&p(props), &s(b"c")]));
    protocol(V5S, 0x30, &publish(&[0x01, 2])); // payload format > 1
    protocol(V5S, 0x30, &publish(&[0x23, 0, 0])); // topic alias 0
    protocol(V5S, 0x30, &publish(&[0x0B, 0])); // subscription identifier 0
    protocol(V5S, 0x30, &publish(&cat(&[&[0x08], &s(b"r/+")]))); // response topic wildcard
    malformed(V5S, 0x30, &publish(&[0x0B, 0x80, 0x80, 0x80, 0x80, 0x01])); // 5-byte varint
    malformed(V5S, 0x30, &publish(&[0x0B, 0x81, 0x00])); // non-minimal varint
    protocol(V5S, 0x20, &connack(&[0x24, 2])); // maximum QoS > 1
    protocol(V5S, 0x20, &connack(&[0x25, 2]));
    protocol(V5S, 0x20, &connack(&[0x28, 2]));
    protocol(V5S, 0x20, &connack(&[0x29, 2]));
    protocol(V5S, 0x20, &connack(&[0x2A, 2]));
    protocol(V5S, 0x20, &connack(&[0x21, 0, 0])); // receive maximum 0
    protocol(None, 0x10, &conn(&[0x17, 2])); // request problem information > 1
    protocol(None, 0x10, &conn(&[0x19, 2])); // request response information > 1
    protocol(None, 0x10, &conn(&[0x27, 0, 0, 0, 0])); // maximum packet size 0
    protocol(None, 0x10, &conn(&[0x21, 0, 0]));
    protocol(None, 0x10, &conn(&cat(&[&[0x16], &s(b"d")]))); // auth data without method
    let props = cat(&[
        &[0x15],
        &s(b"SCRAM"),
        &[0x16],
        &s(b"d"),
        &[0x11, 0, 0, 0, 5],
    ]);
    let Packet::Connect(c) = ok(None, 0x10, &conn(&props)) else {
        panic!()
    };
    assert_eq!(c.properties.authentication_method.as_deref(), Some("SCRAM"));
    assert_eq!(c.properties.session_expiry_interval, Some(5));
}

// ------------------------------------------------------------ encoder forms

fn enc(packet: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, v, &mut buf);
    assert_eq!(buf.len(), encoded_len(packet, v));
    buf.to_vec()
}

#[test]
fn encoder_v3_drops_v5_fields() {
    let props = Properties {
        reason_string: Some("why".into()),
        ..Properties::default()
    };
    let ack = PubResponse {
        packet_id: 7,
        reason: ReasonCode(0x80),
        properties: props.clone(),
    };
    assert_eq!(enc(&Packet::PubAck(ack.clone()), V311), [0x40, 2, 0, 7]);
    assert_eq!(enc(&Packet::PubRel(ack), V311), [0x62, 2, 0, 7]);
    let suback = SubAck {
        packet_id: 1,
        reasons: [0, 1, 2, 0x87, 0x80].map(ReasonCode).to_vec(),
        properties: props.clone(),
    };
    assert_eq!(
        enc(&Packet::SubAck(suback), V311),
        [0x90, 7, 0, 1, 0, 1, 2, 0x80, 0x80]
    );
    let unsuback = UnsubAck {
        packet_id: 1,
        reasons: vec![ReasonCode(0x11)],
        properties: props.clone(),
    };
    assert_eq!(enc(&Packet::UnsubAck(unsuback), V311), [0xB0, 2, 0, 1]);
    let connack = ConnAck {
        session_present: false,
        reason: ReasonCode::BANNED,
        properties: props.clone(),
    };
    assert_eq!(enc(&Packet::ConnAck(connack), V311), [0x20, 2, 0, 5]);
    let connack = ConnAck {
        session_present: true,
        reason: ReasonCode::SERVER_BUSY,
        properties: props,
    };
    assert_eq!(enc(&Packet::ConnAck(connack), V311), [0x20, 2, 1, 3]);
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::new(ReasonCode(0x8E))), V311),
        [0xE0, 0]
    );
    let auth = Auth {
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    };
    assert_eq!(encoded_len(&Packet::Auth(auth), V311), 0);
}

#[test]
fn encoder_v5_short_forms() {
    let ack = |reason: u8, props: Properties| PubResponse {
        packet_id: 7,
        reason: ReasonCode(reason),
        properties: props,
    };
    assert_eq!(
        enc(&Packet::PubAck(ack(0, Properties::default())), V5),
        [0x40, 2, 0, 7]
    );
    assert_eq!(
        enc(&Packet::PubRec(ack(0x10, Properties::default())), V5),
        [0x50, 3, 0, 7, 0x10]
    );
    let why = Properties {
        reason_string: Some("w".into()),
        ..Properties::default()
    };
    assert_eq!(
        enc(&Packet::PubComp(ack(0, why.clone())), V5),
        [0x70, 8, 0, 7, 0, 4, 0x1F, 0, 1, b'w']
    );
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::new(ReasonCode(0))), V5),
        [0xE0, 0]
    );
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::new(ReasonCode(0x8E))), V5),
        [0xE0, 1, 0x8E]
    );
    let auth = |reason: u8, properties| {
        Packet::Auth(Auth {
            reason: ReasonCode(reason),
            properties,
        })
    };
    assert_eq!(enc(&auth(0, Properties::default()), V5), [0xF0, 0]);
    assert_eq!(
        enc(&auth(0x18, Properties::default()), V5),
        [0xF0, 2, 0x18, 0]
    );
    // Properties a packet may not carry are dropped, not sent.
    let alias = Properties {
        topic_alias: Some(3),
        ..Properties::default()
    };
    assert_eq!(enc(&Packet::PubAck(ack(0, alias)), V5), [0x40, 2, 0, 7]);
}
