//! Subscription-trie matching with 10k and 1M filters, exact and wildcard.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::protocol::{MqttStr, SubscriptionOptions};
use gatehouse::router::{FilterKey, Mailbox, MailboxLimits, Subscription, SubscriptionTrie};

#[path = "alloc_counter.rs"]
mod alloc_counter;

#[global_allocator]
static GLOBAL: alloc_counter::Counting = alloc_counter::Counting;

/// `n` filters over a site/line/machine/sensor tree; every tenth is a
/// wildcard filter.
fn build(n: usize) -> SubscriptionTrie {
    let limits = MailboxLimits {
        max_messages: 16,
        max_bytes: 1 << 20,
    };
    let mailboxes: Vec<Arc<Mailbox>> = (0..64)
        .map(|i| Arc::new(Mailbox::new(MqttStr::from(format!("client-{i}")), limits)))
        .collect();
    let mut trie = SubscriptionTrie::default();
    for i in 0..n {
        let filter = match i % 10 {
            0 => format!("site{}/line{}/+/temperature", i % 100, i % 1000),
            1 => format!("site{}/line{}/#", i % 100, i),
            _ => format!("site{}/line{}/machine{}/temperature", i % 100, i % 1000, i),
        };
        let key = FilterKey::parse(&filter).unwrap();
        let mailbox = mailboxes[i % mailboxes.len()].clone();
        trie.insert(
            &key,
            Subscription::new(mailbox, SubscriptionOptions::default(), None),
        );
    }
    trie
}

fn router(c: &mut Criterion) {
    let mut group = c.benchmark_group("trie_match");
    for n in [10_000usize, 1_000_000] {
        let trie = build(n);
        // Exact: matches one literal filter (and the line-wide wildcard).
        let exact = "site12/line12/machine12/temperature".to_string();
        // Wildcard-heavy: matched by the `+` filter of that line.
        let wild = "site10/line10/machine-x/temperature".to_string();
        for (name, topic) in [("exact", &exact), ("wildcard", &wild)] {
            let mut hits = 0usize;
            trie.for_each_match(topic, |_, _| hits += 1);
            assert!(hits > 0, "{name} topic must match");
            group.bench_with_input(BenchmarkId::new(name, n), topic, |b, topic| {
                b.iter(|| {
                    let mut hits = 0usize;
                    trie.for_each_match(black_box(topic), |_, _| hits += 1);
                    hits
                })
            });
            alloc_counter::report(&format!("trie_match/{name}/{n}"), 1000, || {
                trie.for_each_match(topic, |_, _| {});
            });
        }
    }
    group.finish();
}

criterion_group!(benches, router);
criterion_main!(benches);
