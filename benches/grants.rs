#![allow(missing_docs)] // criterion_group! generates undocumented items.
//! Playback grants (src/grant/) on the embedded default data:
//!
//! * `grant/issue-hmac`: the HMAC token an allowed auth subrequest hands out;
//! * `grant/verify-hmac`: what the authz fast path does instead of a decision for a segment
//!   request that carries a grant (MAC, expiry, track, use, tier, epoch);
//! * `grant/issue-all`: the three formats a preflight allow carries (HMAC, secure_link,
//!   Ed25519 JWT).
//!
//! Run: `cargo bench --bench grants`. Figures go to `benches/README.md`.

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use regiongate::config::{Config, Overrides};
use regiongate::decide::{Decision, Reason, Source, Verdict};
use regiongate::grant::{GrantMetrics, Grants, Scope};
use regiongate::license::{Tier, UseType};
use regiongate::{DataSource, Snapshot};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let snap = Snapshot::load(&DataSource::Embedded).expect("embedded data");
    let dir = tempfile::tempdir().expect("key dir");
    std::fs::write(
        dir.path().join("k1.hmac"),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    )
    .expect("key");
    std::fs::write(
        dir.path().join("n1.secure-link"),
        "sl-secret-0123456789abcdefghij",
    )
    .expect("key");
    std::fs::write(
        dir.path().join("e1.ed25519.pem"),
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n",
    )
    .expect("key");
    let toml = format!(
        "[grants]\nkeys_dir = {:?}\n",
        dir.path().display().to_string()
    );
    let config = Config::load(Some(&toml), |_| None, Overrides::default()).expect("config");
    let metrics = GrantMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let grants = Grants::new(config.grants, metrics);
    let scope = Scope {
        track: "QZNW52400010",
        use_type: UseType::OnDemandStream,
        tier: Tier::Free,
    };
    let now = Utc::now();
    let token = grants
        .issue_token(&scope, None, &snap, now, None)
        .expect("token");
    let allow = Decision {
        verdict: Verdict::Allow,
        reason: Reason::Licensed,
        territory: None,
        deal: None,
        valid_until: None,
        source: Source::Ip,
        touched: Default::default(),
    };
    let mut g = c.benchmark_group("grant");
    g.bench_function("issue-hmac", |b| {
        b.iter(|| grants.issue_token(black_box(&scope), None, &snap, now, None))
    });
    g.bench_function("verify-hmac", |b| {
        b.iter(|| grants.verify(black_box(&token), &scope, None, &snap, now))
    });
    g.bench_function("issue-all", |b| {
        b.iter(|| grants.issue(black_box(&scope), &allow, None, &snap, now))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
