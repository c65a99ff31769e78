//! Verifying regiongate's own HMAC token on the auth path, without deciding.

use super::Grants;
use super::formats::{self, TokenError};
use super::issue::Scope;
use super::keys::KeyKind;
use crate::privacy::{ClientIp, truncate_ip};
use crate::snapshot::Snapshot;
use chrono::{DateTime, Utc};

/// Why a presented grant was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token of the grant's shape (parts, base64, payload).
    Malformed,
    /// Longer than a grant can be.
    Oversized,
    /// Signed with a key id regiongate has no HMAC key for (removed, or never one).
    UnknownKey,
    /// The MAC does not match: another key, an altered token, or another client network.
    BadSignature,
    /// Past its expiry.
    Expired,
    /// Expiring further ahead than a grant issued now could.
    FutureDated,
    /// For another track.
    WrongTrack,
    /// For another use type or tier.
    WrongUse,
    /// Issued before a licence change (another revocation epoch).
    Revoked,
}

impl Refusal {
    /// Every refusal, in metric order.
    pub const ALL: [Refusal; 9] = [
        Refusal::Malformed,
        Refusal::Oversized,
        Refusal::UnknownKey,
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::FutureDated,
        Refusal::WrongTrack,
        Refusal::WrongUse,
        Refusal::Revoked,
    ];

    /// The metric outcome label.
    pub fn outcome(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Oversized => "oversized",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::FutureDated => "future_dated",
            Refusal::WrongTrack => "wrong_track",
            Refusal::WrongUse => "wrong_use",
            Refusal::Revoked => "revoked",
        }
    }

    /// The reason as answered on the auth path (`x-regiongate-reason` with `on_invalid =
    /// "deny"`, `x-regiongate-grant` otherwise).
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "grant_malformed",
            Refusal::Oversized => "grant_oversized",
            Refusal::UnknownKey => "grant_unknown_key",
            Refusal::BadSignature => "grant_bad_signature",
            Refusal::Expired => "grant_expired",
            Refusal::FutureDated => "grant_future_dated",
            Refusal::WrongTrack => "grant_wrong_track",
            Refusal::WrongUse => "grant_wrong_use",
            Refusal::Revoked => "grant_revoked",
        }
    }
}

impl Grants {
    /// The HMAC token in an original request URI (`path?query`): the value of the
    /// `grants.query_param` parameter (the first, if repeated). `None` when grants are off or
    /// there is none.
    pub fn token_in<'a>(&self, original_uri: &'a str) -> Option<&'a str> {
        let s = self.settings.as_ref()?;
        let (_, query) = original_uri.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == s.query_param).then_some(v)
        })
    }

    /// Checks a presented HMAC token for `scope`, the client `client` (trusted proxies
    /// applied), the served snapshot's epoch and the time `now`; counts the outcome.
    ///
    /// # Errors
    /// Why it is refused.
    pub fn verify(
        &self,
        token: &str,
        scope: &Scope<'_>,
        client: Option<&ClientIp>,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let r = self.check(token, scope, client, snap, now);
        self.metrics.verified(r);
        r
    }

    fn check(
        &self,
        token: &str,
        scope: &Scope<'_>,
        client: Option<&ClientIp>,
        snap: &Snapshot,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let map = |e| match e {
            TokenError::Oversized => Refusal::Oversized,
            TokenError::Malformed => Refusal::Malformed,
            TokenError::UnknownKey => Refusal::UnknownKey,
            TokenError::BadSignature => Refusal::BadSignature,
        };
        let Some(s) = self.settings.as_ref() else {
            return Err(Refusal::UnknownKey);
        };
        let kid = formats::token_kid(token).map_err(map)?;
        let ring = self.keys.load();
        let key = ring.find(KeyKind::Hmac, kid).ok_or(Refusal::UnknownKey)?;
        // The network only when binding is on: a bound token checked by a server without
        // binding fails (it cannot know the network), which is the safe side.
        let net = s.bind_client_net.then(|| client.map(truncate_ip)).flatten();
        let c = formats::verify_hmac_token(key, token, net.as_deref()).map_err(map)?;
        let t = now.timestamp();
        if c.exp <= t {
            return Err(Refusal::Expired);
        }
        let ttl = i64::try_from(s.ttl.as_secs()).unwrap_or(i64::MAX);
        if c.exp > t.saturating_add(ttl).saturating_add(super::SKEW_S) {
            return Err(Refusal::FutureDated);
        }
        if c.track != scope.track {
            return Err(Refusal::WrongTrack);
        }
        if c.use_type != scope.use_type.as_str() || c.tier != scope.tier.as_str() {
            return Err(Refusal::WrongUse);
        }
        if c.epoch != super::epoch(snap) {
            return Err(Refusal::Revoked);
        }
        Ok(())
    }
}
