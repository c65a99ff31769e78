//! Issuing grants for an allow: every format that has a signing key.

use super::formats::{self, Claims};
use super::keys::KeyKind;
use super::{Format, Grants};
use crate::decide::{Decision, Verdict};
use crate::license::{Tier, UseType};
use crate::privacy::{ClientIp, truncate_ip};
use crate::snapshot::Snapshot;
use chrono::{DateTime, Utc};
use serde_json::json;

/// What a grant is for.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The track id.
    pub track: &'a str,
    /// The use type.
    pub use_type: UseType,
    /// The tier.
    pub tier: Tier,
}

/// The grants issued for one allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// Expiry, Unix seconds (the same for every format).
    pub expires: i64,
    /// The HMAC token, if there is an HMAC key.
    pub token: Option<String>,
    /// The `secure_link` segment URL prefix and query, if there is a `secure_link` key.
    pub secure_link: Option<(String, String)>,
    /// The JWT, if there is an Ed25519 key.
    pub jwt: Option<String>,
}

impl Issued {
    /// The `grant` object of a preflight answer.
    pub fn to_json(&self, query_param: &str) -> serde_json::Value {
        let mut v = json!({
            "expires": DateTime::from_timestamp(self.expires, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            "expires_unix": self.expires,
        });
        if let Some(m) = v.as_object_mut() {
            if let Some(t) = &self.token {
                m.insert("token".into(), json!(t));
                m.insert("query".into(), json!(format!("{query_param}={t}")));
            }
            if let Some((prefix, query)) = &self.secure_link {
                m.insert(
                    "secure_link".into(),
                    json!({"prefix": prefix, "query": query}),
                );
            }
            if let Some(j) = &self.jwt {
                m.insert("jwt".into(), json!(j));
            }
        }
        v
    }
}

impl Grants {
    /// The expiry of a grant issued at `now` for an allow valid until `until` (the deal's
    /// end), or `None` if it would be over at once.
    fn expiry(&self, now: DateTime<Utc>, until: Option<DateTime<Utc>>) -> Option<i64> {
        let s = self.settings.as_ref()?;
        let ttl = i64::try_from(s.ttl.as_secs()).ok()?;
        let exp = until.map_or(now.timestamp() + ttl, |u| {
            (now.timestamp() + ttl).min(u.timestamp())
        });
        (exp > now.timestamp()).then_some(exp)
    }

    fn claims(&self, scope: &Scope<'_>, exp: i64, snap: &Snapshot, bound: bool) -> Claims {
        Claims {
            exp,
            epoch: super::epoch(snap),
            use_type: scope.use_type.as_str().to_owned(),
            tier: scope.tier.as_str().to_owned(),
            bound,
            track: scope.track.to_owned(),
        }
    }

    /// The client network mixed into the MAC, when binding is on.
    fn bound_net(&self, client: Option<&ClientIp>) -> Option<String> {
        let s = self.settings.as_ref()?;
        s.bind_client_net.then(|| client.map(truncate_ip)).flatten()
    }

    /// The HMAC token alone, for an allowed auth subrequest (`None` when grants are off, there
    /// is no HMAC key, or the deal ends now).
    pub fn issue_token(
        &self,
        scope: &Scope<'_>,
        client: Option<&ClientIp>,
        snap: &Snapshot,
        now: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> Option<String> {
        let exp = self.expiry(now, until)?;
        let ring = self.keys.load();
        let key = self.signing_key(&ring, KeyKind::Hmac)?;
        let net = self.bound_net(client);
        let t = formats::hmac_token(
            key,
            &self.claims(scope, exp, snap, net.is_some()),
            net.as_deref(),
        )?;
        self.metrics.issued(Format::Hmac);
        Some(t)
    }

    /// Every grant format with a signing key, for an allow (`None` for any other decision,
    /// when grants are off, or when the deal ends now).
    pub fn issue(
        &self,
        scope: &Scope<'_>,
        d: &Decision,
        client: Option<&ClientIp>,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Option<Issued> {
        if d.verdict != Verdict::Allow {
            return None;
        }
        let s = self.settings.as_ref()?;
        let exp = self.expiry(now, d.valid_until)?;
        let ring = self.keys.load();
        let net = self.bound_net(client);
        let token = self.signing_key(&ring, KeyKind::Hmac).and_then(|k| {
            formats::hmac_token(
                k,
                &self.claims(scope, exp, snap, net.is_some()),
                net.as_deref(),
            )
        });
        let secure_link = self.signing_key(&ring, KeyKind::SecureLink).and_then(|k| {
            let prefix = s.secure_link_prefix.replace("{track}", scope.track);
            formats::secure_link_query(k, &prefix, exp).map(|q| (prefix, q))
        });
        let jwt = self.signing_key(&ring, KeyKind::Ed25519).and_then(|k| {
            let iat = now.timestamp();
            formats::jwt(
                k,
                &json!({
                    "iss": s.jwt_issuer,
                    "aud": s.jwt_audience,
                    "sub": scope.track,
                    "use": scope.use_type.as_str(),
                    "tier": scope.tier.as_str(),
                    "iat": iat,
                    "nbf": iat,
                    "exp": exp,
                    "ver": snap.version,
                    "rev": super::epoch(snap),
                }),
            )
        });
        for (f, some) in [
            (Format::Hmac, token.is_some()),
            (Format::SecureLink, secure_link.is_some()),
            (Format::Jwt, jwt.is_some()),
        ] {
            if some {
                self.metrics.issued(f);
            }
        }
        Some(Issued {
            expires: exp,
            token,
            secure_link,
            jwt,
        })
    }

    /// Adds the `grant` object to a preflight decision's JSON, for an allow.
    pub fn attach(
        &self,
        json: &mut serde_json::Value,
        scope: &Scope<'_>,
        d: &Decision,
        client: Option<&ClientIp>,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) {
        let (Some(s), Some(m)) = (self.settings.as_ref(), json.as_object_mut()) else {
            return;
        };
        if let Some(g) = self.issue(scope, d, client, snap, now) {
            m.insert("grant".into(), g.to_json(&s.query_param));
        }
    }
}
