//! ACL check cost against the number of rules: the tries should make a
//! check cost the same with 1k or 1M rules.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::identity::acl::{Acl, Rule};

#[path = "alloc_counter.rs"]
mod alloc_counter;

#[global_allocator]
static GLOBAL: alloc_counter::Counting = alloc_counter::Counting;

/// Rule `idx` of a plant-like permission set: sites, lines, cells, sensors.
fn rule(idx: usize) -> Rule {
    let rest = idx / 4;
    let (i, j, k) = (rest % 100, (rest / 100) % 100, rest / 10_000);
    let (pattern, read, write, deny) = match idx % 4 {
        0 => (format!("site{i}/line{j}/+/sensor{k}/#"), false, true, false),
        1 => (
            format!("site{i}/line{j}/cell{k}/sensor{k}/value"),
            true,
            true,
            false,
        ),
        2 => (format!("site{i}/+/cell{k}/#"), true, false, false),
        _ => (
            format!("site{i}/line{j}/cell0/sensor{k}/secret"),
            false,
            true,
            true,
        ),
    };
    Rule {
        pattern,
        read,
        write,
        deny,
    }
}

/// Resident memory in MiB (Linux), to keep the 1M-rule setup honest.
fn rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn acl(c: &mut Criterion) {
    let mut group = c.benchmark_group("acl_can_publish");
    for n in [1_000usize, 100_000, 1_000_000] {
        let start = Instant::now();
        let acl = Acl::compile((0..n).map(rule));
        eprintln!(
            "{n} rules: compiled in {:.2?}, {} rules, rss {} MiB",
            start.elapsed(),
            acl.rule_count(),
            rss_mib().map_or_else(|| "?".into(), |m| m.to_string())
        );
        // Rule n/2 rounded to a kind-0 (write `.../+/sensor{k}/#`) rule.
        let rest = (n / 2) / 4;
        let (i, j, k) = (rest % 100, (rest / 100) % 100, rest / 10_000);
        let hit = format!("site{i}/line{j}/cell9/sensor{k}/temp");
        let miss = format!("site{i}/line{j}/cell9/pump{k}/temp");
        assert!(acl.can_publish(&hit), "{hit}");
        assert!(!acl.can_publish(&miss), "{miss}");
        group.bench_with_input(BenchmarkId::new("match", n), &hit, |b, topic| {
            b.iter(|| acl.can_publish(black_box(topic)))
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, topic| {
            b.iter(|| acl.can_publish(black_box(topic)))
        });
        alloc_counter::report(&format!("acl_can_publish/match/{n}"), 1000, || {
            black_box(acl.can_publish(&hit));
        });
    }
    group.finish();
}

criterion_group!(benches, acl);
criterion_main!(benches);
