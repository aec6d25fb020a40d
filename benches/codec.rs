//! Codec throughput for PUBLISH, the packet that dominates broker traffic.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse::protocol::*;

#[path = "alloc_counter.rs"]
mod alloc_counter;

#[global_allocator]
static GLOBAL: alloc_counter::Counting = alloc_counter::Counting;

fn publish(size: usize, v: ProtocolVersion) -> Packet {
    let mut properties = Properties::default();
    if v == ProtocolVersion::V5 {
        properties.message_expiry_interval = Some(3600);
        properties.content_type = Some("application/json".into());
        properties
            .user_properties
            .push(("origin".into(), "bench".into()));
    }
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "sensors/building-1/floor-3/temperature".into(),
        packet_id: 42,
        properties,
        payload: Bytes::from(vec![0xA5; size]),
    })
}

fn codec(c: &mut Criterion) {
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut group = c.benchmark_group(format!("publish_{v:?}"));
        for size in [16, 1024, 64 * 1024] {
            let packet = publish(size, v);
            let mut wire = BytesMut::new();
            encode(&packet, v, &mut wire);
            let wire = wire.freeze();
            group.throughput(Throughput::Bytes(wire.len() as u64));
            group.bench_with_input(BenchmarkId::new("encode", size), &packet, |b, packet| {
                let mut buf = BytesMut::with_capacity(wire.len());
                b.iter(|| {
                    buf.clear();
                    encode(black_box(packet), v, &mut buf);
                    black_box(buf.len())
                })
            });
            group.bench_with_input(BenchmarkId::new("decode", size), &wire, |b, wire| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| decode(black_box(&mut buf), Some(v), usize::MAX),
                    BatchSize::SmallInput,
                )
            });
            let mut buf = BytesMut::with_capacity(wire.len());
            alloc_counter::report(&format!("publish_{v:?}/encode/{size}"), 1000, || {
                buf.clear();
                encode(&packet, v, &mut buf);
            });
            // Decoding from a buffer that holds many frames, as a connection does.
            let mut many = BytesMut::with_capacity(wire.len() * 1000);
            for _ in 0..1000 {
                many.extend_from_slice(&wire);
            }
            alloc_counter::report(&format!("publish_{v:?}/decode/{size}"), 1000, || {
                black_box(decode(&mut many, Some(v), usize::MAX).unwrap());
            });
        }
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
