//! The HMAC grant token parser (src/grant/formats.rs).
//!
//! The input as a token: never panics; anything that verifies is exactly the token that
//! issuing its claims gives (only regiongate's own encoding verifies: nothing else decodes to a
//! valid MAC). The input as a track id: issuing and verifying round-trips the claims, the
//! token stays within the length limit, and the same token with any one byte changed is
//! refused (or, if it still verifies, is the same token).

#![no_main]

use libfuzzer_sys::fuzz_target;
use regiongate::grant::formats::{Claims, MAX_TOKEN_LEN, hmac_token, token_kid, verify_hmac_token};
use regiongate::grant::keys::{Key, KeyKind};

const SECRET: &[u8] = b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fuzz_target!(|data: &[u8]| {
    let key = Key::from_text("k1", KeyKind::Hmac, SECRET).expect("the fuzz key");
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = token_kid(s);
    for net in [None, Some("192.0.2.0/24")] {
        if let Ok(c) = verify_hmac_token(&key, s, net) {
            assert_eq!(hmac_token(&key, &c, net).as_deref(), Some(s), "non-canonical token verified");
        }
    }
    let track = s.lines().next().unwrap_or("");
    if track.is_empty() || track.len() > 128 || track.chars().any(char::is_control) {
        return;
    }
    let claims = Claims {
        exp: i64::from(data.len() as u32) * 7919,
        epoch: u32::from(data[0]),
        use_type: "download".into(),
        tier: "premium".into(),
        bound: data.len() % 2 == 0,
        track: track.to_owned(),
    };
    let net = claims.bound.then_some("2001:db8:1::/48");
    let t = hmac_token(&key, &claims, net).expect("issued");
    assert!(t.len() <= MAX_TOKEN_LEN, "{} bytes", t.len());
    assert_eq!(verify_hmac_token(&key, &t, net), Ok(claims.clone()));
    let i = usize::from(data[data.len() - 1]) % t.len();
    let mut b = t.clone().into_bytes();
    b[i] ^= 0x01;
    if let Ok(changed) = String::from_utf8(b) {
        if let Ok(c) = verify_hmac_token(&key, &changed, net) {
            assert_eq!(hmac_token(&key, &c, net).as_deref(), Some(changed.as_str()));
            assert_eq!(c, claims, "a changed token verified with other claims");
        }
    }
});
