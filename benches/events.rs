//! Cost of encoding one change batch for `/changes` (`hmr_proxy::sse::wire::batch`): it runs once
//! per batch, and its bytes are shared by every tab, so this is the whole per-batch CPU before
//! fan-out.
//!
//! - `batch/1`: one saved file, the common case;
//! - `batch/10`: a small burst (a formatter touching a few files);
//! - `batch/500`: a `git checkout` folded into one batch;
//! - `batch/500-escaped`: the same with quotes, spaces and non-ASCII in every path (JSON escaping).
//!
//! Throughput is reported in batches (elements) per second. Run: `cargo bench --bench events`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use hmr_proxy::sse::wire::{Message, batch};

fn paths(n: usize, escaped: bool) -> (Vec<String>, Vec<String>) {
    (0..n)
        .map(|i| {
            if escaped {
                (
                    format!("src/comp\u{f6}nents/\"quoted\" name {i}/view.css"),
                    format!("/src/comp%C3%B6nents/%22quoted%22%20name%20{i}/view.css"),
                )
            } else {
                (
                    format!("src/components/widget{i}/view.css"),
                    format!("/src/components/widget{i}/view.css"),
                )
            }
        })
        .unzip()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch");
    for (label, n, escaped) in [
        ("1", 1, false),
        ("10", 10, false),
        ("500", 500, false),
        ("500-escaped", 500, true),
    ] {
        let (paths, urls) = paths(n, escaped);
        let message = Message {
            id: 1_764_000_000_000,
            paths: &paths,
            urls: &urls,
            reload: false,
            reason: None,
            restart: None,
            served: false,
            spa: false,
        };
        let bytes = batch(&message).len();
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(label), &message, |b, m| {
            b.iter(|| batch(std::hint::black_box(m)))
        });
        eprintln!("batch/{label}: {bytes} bytes on the wire");
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
