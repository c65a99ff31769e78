//! Playback grants: decide once per track, verify at the edge for every segment.
//!
//! Every allow from preflight (GET and POST) and from the auth subrequest can carry a
//! short-lived signed grant for (track, use, tier) until an expiry (`grants.ttl_s`, cut at the
//! end of the deal). Three formats ([`formats`]), each checked by its own verifier:
//!
//! * an HMAC-SHA256 token that the authz endpoint (fast path included) checks without
//!   deciding ([`Grants::verify`]); a missing or refused token falls back to a full decision
//!   (or, with `on_invalid = "deny"`, is refused);
//! * nginx `secure_link` query parameters for the track's segment URL prefix, checked by
//!   nginx alone (deploy/nginx/grants.conf);
//! * an Ed25519 JWT with `kid`, checked by any JWT library or Envoy `jwt_authn` against the
//!   JWKS served at [`JWKS_PATH`].
//!
//! No grant holds a location: not the point, not the address, not the territory. A grant
//! bound to the client network (`bind_client_net`, HMAC token only) mixes the /24 or /48 into
//! the MAC and does not contain it.
//!
//! Keys ([`keys`]) come from a directory, several per kind for rotation, and are reloaded
//! with the data (SIGHUP, admin reload, data watch) and on changes of their own directory; a
//! bad directory is refused whole and the keys in use stay. Revocation: the HMAC token
//! carries the *revocation epoch* ([`epoch`]), a hash of the licence inputs, so a data reload
//! that changes licences (a takedown, a lost territory) invalidates every outstanding HMAC
//! grant at once; the other formats live until their expiry (docs/grants.md).

pub mod formats;
pub mod issue;
pub mod keys;
pub mod verify;

use arc_swap::ArcSwap;
use keys::{KeyError, KeyKind, KeyRing};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde_json::json;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use issue::{Issued, Scope};
pub use verify::Refusal;

/// Where the JWKS document is served on the public listener.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Longest grant lifetime accepted in `grants.ttl_s`.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Shortest grant lifetime accepted in `grants.ttl_s`.
pub const MIN_TTL: Duration = Duration::from_secs(10);
/// Clock skew allowed before a token's expiry counts as future-dated (beyond `ttl`).
pub const SKEW_S: i64 = 60;

/// What to do with an auth subrequest whose grant is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Decide it in full, as if it had no grant (the answer names the refusal in a header).
    Decide,
    /// Refuse it (the deny status, the refusal as the reason).
    Deny,
}

/// The validated `[grants]` section (`src/config/load.rs` builds it).
#[derive(Clone, Debug)]
pub struct GrantSettings {
    /// The key directory.
    pub keys_dir: PathBuf,
    /// Grant lifetime (cut at the end of the deal).
    pub ttl: Duration,
    /// The query parameter of segment URLs that carries the HMAC token.
    pub query_param: String,
    /// Mix the client network (IPv4 /24, IPv6 /48) into the HMAC token's MAC.
    pub bind_client_net: bool,
    /// What a refused grant gets on the auth path.
    pub on_invalid: OnInvalid,
    /// The segment URL prefix of a track for `secure_link`, with `{track}`.
    pub secure_link_prefix: String,
    /// The JWT `iss`.
    pub jwt_issuer: String,
    /// The JWT `aud`.
    pub jwt_audience: String,
    /// How old a key file must be before it signs (while an older key of its kind exists).
    pub sign_after: Duration,
    /// The keys read when the configuration was loaded.
    pub initial_keys: Arc<KeyRing>,
}

/// The formats, as metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// HMAC-SHA256 token.
    Hmac,
    /// nginx `secure_link`.
    SecureLink,
    /// Ed25519 JWT.
    Jwt,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [Format::Hmac, Format::SecureLink, Format::Jwt];
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Hmac => "hmac",
            Format::SecureLink => "secure_link",
            Format::Jwt => "jwt",
        }
    }
}

/// Grant metric families: issued by format, verified by outcome, key reloads by result.
#[derive(Clone)]
pub struct GrantMetrics {
    issued: [IntCounter; 3],
    verified: Vec<IntCounter>,
    key_reloads: IntCounterVec,
}

impl GrantMetrics {
    /// Registers the families on `registry`.
    ///
    /// # Errors
    /// A family registered twice.
    pub fn register(registry: &Registry) -> prometheus::Result<GrantMetrics> {
        let issued = IntCounterVec::new(
            Opts::new(
                "regiongate_grants_issued_total",
                "Playback grants issued, by format",
            ),
            &["format"],
        )?;
        let verified = IntCounterVec::new(
            Opts::new(
                "regiongate_grants_verified_total",
                "Playback grants checked by regiongate, by format and outcome",
            ),
            &["format", "outcome"],
        )?;
        let key_reloads = IntCounterVec::new(
            Opts::new(
                "regiongate_grant_key_reloads_total",
                "Grant key directory loads after start, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(issued.clone()))?;
        registry.register(Box::new(verified.clone()))?;
        registry.register(Box::new(key_reloads.clone()))?;
        let issued = Format::ALL.map(|f| issued.with_label_values(&[f.as_str()]));
        let verified = std::iter::once("valid")
            .chain(Refusal::ALL.iter().map(|r| r.outcome()))
            .map(|o| verified.with_label_values(&["hmac", o]))
            .collect();
        Ok(GrantMetrics {
            issued,
            verified,
            key_reloads,
        })
    }

    fn issued(&self, f: Format) {
        self.issued[f as usize].inc();
    }

    fn verified(&self, outcome: Result<(), Refusal>) {
        let i = match outcome {
            Ok(()) => 0,
            Err(r) => 1 + r as usize,
        };
        if let Some(c) = self.verified.get(i) {
            c.inc();
        }
    }
}

/// The outcome of the last key reload, for `/admin/snapshot`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyReload {
    /// `ok`, `unchanged` or `failed`.
    pub result: &'static str,
    /// What triggered it.
    pub trigger: String,
    /// When (Unix seconds).
    pub finished_unix: u64,
    /// Why it failed (names the file, never the key).
    pub problem: Option<String>,
}

/// The grant state of a running server: settings, the key ring in use, metrics.
pub struct Grants {
    settings: Option<GrantSettings>,
    keys: ArcSwap<KeyRing>,
    last_reload: Mutex<Option<KeyReload>>,
    metrics: GrantMetrics,
}

impl Grants {
    /// The grant state for `settings` (`None`: grants are off).
    pub fn new(settings: Option<GrantSettings>, metrics: GrantMetrics) -> Grants {
        let keys = settings
            .as_ref()
            .map_or_else(|| Arc::new(KeyRing::default()), |s| s.initial_keys.clone());
        Grants {
            settings,
            keys: ArcSwap::new(keys),
            last_reload: Mutex::new(None),
            metrics,
        }
    }

    /// The settings, when grants are on.
    pub fn settings(&self) -> Option<&GrantSettings> {
        self.settings.as_ref()
    }

    /// Whether a refused grant is refused on the auth path (else decided in full).
    pub fn deny_invalid(&self) -> bool {
        self.settings
            .as_ref()
            .is_some_and(|s| s.on_invalid == OnInvalid::Deny)
    }

    /// Reads the key directory again and swaps the key ring in if it is good; a bad directory
    /// leaves the keys in use (logged and counted, the problem in [`Grants::report`]).
    /// Nothing when grants are off.
    pub fn reload_keys(&self, trigger: &str) -> Option<KeyReload> {
        let s = self.settings.as_ref()?;
        let result = match KeyRing::load(&s.keys_dir) {
            Ok(ring) if ring.fingerprint == self.keys.load().fingerprint => ("unchanged", None),
            Ok(ring) => {
                tracing::info!(trigger, keys = ring.keys().len(), "grant keys reloaded");
                self.keys.store(Arc::new(ring));
                ("ok", None)
            }
            Err(e) => {
                tracing::error!(trigger, problem = %e, "grant keys refused; the keys in use stay");
                ("failed", Some(e))
            }
        };
        self.metrics
            .key_reloads
            .with_label_values(&[if result.0 == "failed" { "failed" } else { "ok" }])
            .inc();
        let r = KeyReload {
            result: result.0,
            trigger: trigger.to_owned(),
            finished_unix: unix(SystemTime::now()),
            problem: result.1.as_ref().map(KeyError::to_string),
        };
        if let Ok(mut g) = self.last_reload.lock() {
            *g = Some(r.clone());
        }
        Some(r)
    }

    /// The JWKS document (every Ed25519 key, the signing one and those still verifying), or
    /// `None` when there is no Ed25519 key.
    pub fn jwks(&self) -> Option<String> {
        let ring = self.keys.load();
        let keys: Vec<_> = ring.keys().iter().filter_map(formats::jwk).collect();
        (!keys.is_empty()).then(|| json!({ "keys": keys }).to_string())
    }

    /// Key ids, kinds and ages (never material) and the last key reload.
    pub fn report(&self) -> serde_json::Value {
        let Some(s) = &self.settings else {
            return json!({"enabled": false});
        };
        let ring = self.keys.load();
        let now = SystemTime::now();
        let keys: Vec<_> = ring
            .keys()
            .iter()
            .map(|k| {
                let signing = self
                    .signing_key(&ring, k.kind)
                    .is_some_and(|sk| sk.kid == k.kid);
                json!({
                    "kid": k.kid,
                    "kind": k.kind.as_str(),
                    "signing": signing,
                    "age_s": k.modified.and_then(|m| now.duration_since(m).ok()).map(|d| d.as_secs()),
                })
            })
            .collect();
        json!({
            "enabled": true,
            "keys_dir": s.keys_dir.display().to_string(),
            "ttl_s": s.ttl.as_secs(),
            "keys": keys,
            "last_key_reload": self.last_reload.lock().ok().and_then(|g| g.clone()),
        })
    }

    /// The signing key of `kind` in `ring` (`grants.sign_after_s` applied).
    fn signing_key<'r>(&self, ring: &'r KeyRing, kind: KeyKind) -> Option<&'r keys::Key> {
        let lead = self
            .settings
            .as_ref()
            .map_or(Duration::ZERO, |s| s.sign_after);
        ring.signer_after(kind, lead, SystemTime::now())
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

thread_local! {
    /// The epoch of the snapshot version this thread saw last.
    static EPOCH: RefCell<Option<(String, u32)>> = const { RefCell::new(None) };
}

/// The revocation epoch of a snapshot: the first 32 bits of a SHA-256 over the paths and
/// hashes of its licence inputs (`licenses/*`, `groups.toml`). The same data gives the same
/// epoch on every replica and after a restart; a licence change (a takedown, a lost
/// territory, a changed group) gives another, which refuses every HMAC grant issued before.
/// Computed once per snapshot and thread.
pub fn epoch(snap: &crate::snapshot::Snapshot) -> u32 {
    EPOCH.with_borrow_mut(|cached| match cached {
        Some((v, e)) if *v == snap.version => *e,
        _ => {
            use sha2::{Digest, Sha256};
            let mut licence_inputs: Vec<_> = snap
                .inputs
                .iter()
                .filter(|i| i.path.starts_with("licenses/") || i.path == "groups.toml")
                .collect();
            licence_inputs.sort_by(|a, b| a.path.cmp(&b.path));
            let mut h = Sha256::new();
            for i in licence_inputs {
                h.update(i.path.as_bytes());
                h.update([0]);
                h.update(i.sha256.as_bytes());
                h.update([0]);
            }
            let d = h.finalize();
            let e = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
            *cached = Some((snap.version.clone(), e));
            e
        }
    })
}
