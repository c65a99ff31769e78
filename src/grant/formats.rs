//! The three grant formats: bytes in, bytes out, no state.
//!
//! * **HMAC token** (regiongate's own, checked by the authz fast path):
//!   `{kid}.{payload}.{mac}`, both parts unpadded base64url. The payload is
//!   `1|{exp}|{epoch}|{use}|{tier}|{bound}|{track}` (`bound` is `n` when the client network is
//!   mixed into the MAC, `-` otherwise; the network itself is never in the token). The MAC is
//!   HMAC-SHA256 over `rg-grant-1\0{kid}\0{payload}\0{network or empty}`.
//! * **nginx `secure_link`**: `rg_exp={exp}&rg_md5={md5}&rg_kid={kid}` where `md5` is the
//!   unpadded base64url MD5 of `{exp}{prefix} {secret}`, what `secure_link_md5
//!   "$secure_link_expires$rg_prefix $rg_secret"` computes (deploy/nginx/grants.conf).
//! * **JWT**: `EdDSA` (Ed25519) compact JWS with `kid` in the header; the public keys are the
//!   JWKS.

use super::keys::Key;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest HMAC token accepted, bytes: a 128-byte track id in base64url plus the rest fits
/// well within it; anything longer is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 400;

/// The payload version.
const PAYLOAD_V1: &str = "1";
/// Bytes of an HMAC-SHA256 tag.
const MAC_LEN: usize = 32;
/// Domain separation of the MAC input.
const MAC_CONTEXT: &[u8] = b"rg-grant-1";

/// What an HMAC token states (after its MAC has been checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// The revocation epoch it was issued under.
    pub epoch: u32,
    /// Use type (its `as_str` form).
    pub use_type: String,
    /// Tier (its `as_str` form).
    pub tier: String,
    /// Whether the client network is mixed into the MAC.
    pub bound: bool,
    /// The track id.
    pub track: String,
}

/// Why a token did not parse or verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    Oversized,
    /// Not three parts, bad base64 or a bad payload.
    Malformed,
    /// No key of that id.
    UnknownKey,
    /// The MAC does not match (wrong key, altered, or another client network).
    BadSignature,
}

fn mac_of(keyed: &Hmac<Sha256>, kid: &str, payload: &[u8], net: Option<&str>) -> Hmac<Sha256> {
    let mut mac = keyed.clone();
    for part in [
        MAC_CONTEXT,
        kid.as_bytes(),
        payload,
        net.unwrap_or("").as_bytes(),
    ] {
        mac.update(part);
        mac.update(&[0]);
    }
    mac
}

/// Issues an HMAC token for `claims` with `key` (an HMAC key); `net` is the truncated client
/// network when `claims.bound`.
pub fn hmac_token(key: &Key, claims: &Claims, net: Option<&str>) -> Option<String> {
    let super::keys::Material::Hmac(secret) = &key.material else {
        return None;
    };
    let payload = format!(
        "{PAYLOAD_V1}|{}|{}|{}|{}|{}|{}",
        claims.exp,
        claims.epoch,
        claims.use_type,
        claims.tier,
        if claims.bound { 'n' } else { '-' },
        claims.track
    );
    let mac = mac_of(
        secret,
        &key.kid,
        payload.as_bytes(),
        net.filter(|_| claims.bound),
    );
    Some(format!(
        "{}.{}.{}",
        key.kid,
        URL_SAFE_NO_PAD.encode(payload.as_bytes()),
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    ))
}

/// The key id of a token, if it has the token's shape (checked before any decoding).
///
/// # Errors
/// [`TokenError::Oversized`] or [`TokenError::Malformed`].
pub fn token_kid(token: &str) -> Result<&str, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Oversized);
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(kid), Some(p), Some(m), None)
            if !kid.is_empty() && !p.is_empty() && !m.is_empty() =>
        {
            Ok(kid)
        }
        _ => Err(TokenError::Malformed),
    }
}

/// Checks a token's MAC with `key` (the HMAC key its kid names) and the client network
/// `net` (used only if the token says it is bound), then returns its claims.
///
/// # Errors
/// Why it does not verify.
pub fn verify_hmac_token(key: &Key, token: &str, net: Option<&str>) -> Result<Claims, TokenError> {
    let super::keys::Material::Hmac(secret) = &key.material else {
        return Err(TokenError::UnknownKey);
    };
    let kid = token_kid(token)?;
    let mut parts = token.splitn(3, '.').skip(1);
    let (Some(p), Some(m)) = (parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(m)
        .map_err(|_| TokenError::Malformed)?;
    // A cut token is malformed, not merely wrongly signed (whatever its last bits decode to).
    if tag.len() != MAC_LEN {
        return Err(TokenError::Malformed);
    }
    let text = std::str::from_utf8(&payload).map_err(|_| TokenError::Malformed)?;
    let f: Vec<&str> = text.splitn(7, '|').collect();
    let [v, exp, epoch, use_type, tier, bound, track] = f[..] else {
        return Err(TokenError::Malformed);
    };
    let bound = match bound {
        "n" => true,
        "-" => false,
        _ => return Err(TokenError::Malformed),
    };
    if v != PAYLOAD_V1 {
        return Err(TokenError::Malformed);
    }
    // The MAC first: nothing of an unauthenticated payload is believed (net only if bound).
    mac_of(secret, kid, &payload, net.filter(|_| bound))
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    Ok(Claims {
        exp: exp.parse().map_err(|_| TokenError::Malformed)?,
        epoch: epoch.parse().map_err(|_| TokenError::Malformed)?,
        use_type: use_type.to_owned(),
        tier: tier.to_owned(),
        bound,
        track: track.to_owned(),
    })
}

/// The nginx `secure_link` query parameters for `prefix` (the track's segment URL prefix)
/// until `exp`.
pub fn secure_link_query(key: &Key, prefix: &str, exp: i64) -> Option<String> {
    use md5::{Digest, Md5};
    let super::keys::Material::SecureLink(secret) = &key.material else {
        return None;
    };
    let digest = Md5::digest(format!("{exp}{prefix} {secret}").as_bytes());
    Some(format!(
        "rg_exp={exp}&rg_md5={}&rg_kid={}",
        URL_SAFE_NO_PAD.encode(digest),
        key.kid
    ))
}

/// A compact JWS (`alg: EdDSA`, `typ: JWT`, `kid`) of `claims` signed with `key` (an
/// Ed25519 key).
pub fn jwt(key: &Key, claims: &serde_json::Value) -> Option<String> {
    use ed25519_dalek::Signer;
    let super::keys::Material::Ed25519(sk) = &key.material else {
        return None;
    };
    let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = sk.sign(signing_input.as_bytes());
    Some(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    ))
}

/// The JWKS entry (RFC 8037 `OKP`) of an Ed25519 key.
pub fn jwk(key: &Key) -> Option<serde_json::Value> {
    let super::keys::Material::Ed25519(sk) = &key.material else {
        return None;
    };
    Some(serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(sk.verifying_key().as_bytes()),
        "kid": key.kid,
        "use": "sig",
        "alg": "EdDSA",
    }))
}

#[cfg(test)]
mod tests {
    use super::super::keys::{KeyKind, parse_key};
    use super::*;

    fn key(kid: &str, kind: KeyKind, text: &str) -> Key {
        Key {
            kid: kid.to_owned(),
            kind,
            modified: None,
            material: parse_key("test", kind, text.as_bytes()).expect("key"),
        }
    }

    fn claims(track: &str, bound: bool) -> Claims {
        Claims {
            exp: 1_800_000_000,
            epoch: 7,
            use_type: "on_demand_stream".into(),
            tier: "free".into(),
            bound,
            track: track.into(),
        }
    }

    const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn hmac_tokens_round_trip_and_refuse_tampering() {
        let k = key("k1", KeyKind::Hmac, SECRET);
        let other = key(
            "k1",
            KeyKind::Hmac,
            "ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZm",
        );
        for track in ["T1", "a|b.c|d", "QZNW52400010"] {
            let t = hmac_token(&k, &claims(track, false), None).expect("token");
            assert!(t.starts_with("k1.") && t.len() <= MAX_TOKEN_LEN, "{t}");
            assert!(!t.contains('='), "{t}");
            assert_eq!(verify_hmac_token(&k, &t, None), Ok(claims(track, false)));
            assert_eq!(
                verify_hmac_token(&other, &t, None),
                Err(TokenError::BadSignature)
            );
            // Every character changed in turn, the kid's aside (looked up by the caller).
            let bytes = t.as_bytes();
            for i in 3..bytes.len() {
                let mut b = bytes.to_vec();
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                let Ok(s) = String::from_utf8(b) else {
                    continue;
                };
                if s == t {
                    continue;
                }
                assert!(verify_hmac_token(&k, &s, None).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn bound_tokens_need_the_same_network_and_do_not_contain_it() {
        let k = key("k1", KeyKind::Hmac, SECRET);
        let t = hmac_token(&k, &claims("T1", true), Some("192.0.2.0/24")).expect("token");
        let payload = URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).expect("payload"))
            .expect("b64");
        assert!(!String::from_utf8_lossy(&payload).contains("192.0.2"));
        assert!(!t.contains("192"));
        assert!(verify_hmac_token(&k, &t, Some("192.0.2.0/24")).is_ok());
        assert_eq!(
            verify_hmac_token(&k, &t, Some("198.51.100.0/24")),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_hmac_token(&k, &t, None),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn malformed_and_oversized_tokens() {
        let k = key("k1", KeyKind::Hmac, SECRET);
        let t = hmac_token(&k, &claims("T1", false), None).expect("token");
        for cut in 1..t.len() {
            assert!(
                verify_hmac_token(&k, &t[..cut], None).is_err(),
                "cut at {cut}"
            );
        }
        for cut in 1..12 {
            assert_eq!(
                verify_hmac_token(&k, &t[..t.len() - cut], None),
                Err(TokenError::Malformed),
                "cut {cut} from the end"
            );
        }
        let long = "k1.".to_owned() + &"A".repeat(MAX_TOKEN_LEN);
        assert_eq!(
            verify_hmac_token(&k, &long, None),
            Err(TokenError::Oversized)
        );
        for t in [
            "", "k1", "k1.", "k1..", "k1.a.b.c", ".YQ.YQ", "k1.!!.YQ", "k1.YQ.YQ",
        ] {
            assert_eq!(
                verify_hmac_token(&k, t, None),
                Err(TokenError::Malformed),
                "{t:?}"
            );
        }
        // A well-formed MAC over a payload of the wrong shape is still malformed.
        let bad_payload = "2|1|2|3|4|-|T";
        let super::super::keys::Material::Hmac(keyed) = &k.material else {
            panic!("an HMAC key");
        };
        let mac = mac_of(keyed, "k1", bad_payload.as_bytes(), None);
        let t = format!(
            "k1.{}.{}",
            URL_SAFE_NO_PAD.encode(bad_payload),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(verify_hmac_token(&k, &t, None), Err(TokenError::Malformed));
    }

    #[test]
    fn secure_link_is_nginx_md5_of_expires_prefix_secret() {
        use md5::{Digest, Md5};
        let k = key("n1", KeyKind::SecureLink, "abcdefghijklmnopqrstuvwxyz0123");
        let q = secure_link_query(&k, "/audio/T1/", 2_000_000_000).expect("query");
        let want = URL_SAFE_NO_PAD.encode(Md5::digest(
            b"2000000000/audio/T1/ abcdefghijklmnopqrstuvwxyz0123",
        ));
        assert_eq!(q, format!("rg_exp=2000000000&rg_md5={want}&rg_kid=n1"));
    }

    #[test]
    fn jwt_verifies_with_the_jwk() {
        use ed25519_dalek::Verifier;
        let k = key("e1", KeyKind::Ed25519, super::super::keys::TEST_ED25519_PEM);
        let t = jwt(&k, &serde_json::json!({"sub": "T1"})).expect("jwt");
        let (input, sig) = t.rsplit_once('.').expect("three parts");
        let jwk = jwk(&k).expect("jwk");
        // RFC 8032 test vector 1's public key.
        assert_eq!(
            jwk["x"],
            URL_SAFE_NO_PAD.encode([
                0xd7u8, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9,
                0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a,
                0x68, 0xf7, 0x07, 0x51, 0x1a
            ])
        );
        let sig = ed25519_dalek::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).expect("b64"))
            .expect("sig");
        let vk = ed25519_dalek::VerifyingKey::from_bytes(
            &URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().expect("x"))
                .expect("b64")
                .try_into()
                .expect("32 bytes"),
        )
        .expect("vk");
        assert!(vk.verify(input.as_bytes(), &sig).is_ok());
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().expect("header"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["kid"], "e1");
        assert_eq!(header["alg"], "EdDSA");
    }
}
