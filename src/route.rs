//! Route patterns: where the track id (and optionally use and tier) sit in a media path.
//!
//! A pattern is a path of `/`-separated segments: literals, `{track}` (required, once),
//! `{use}`, `{tier}`, `{name}` (any other single segment, ignored), and a final `{*rest}` that
//! matches the remaining segments (possibly none). Example: `/audio/{track}/{*rest}`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Track,
    Use,
    Tier,
    Any,
}

/// A compiled route pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePattern {
    segments: Vec<Segment>,
    rest: bool,
    text: String,
}

/// What a path matched. Captures borrow from the path unless they had escapes to decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The track id (percent-decoded).
    pub track: Cow<'a, str>,
    /// The use segment, if the pattern has one.
    pub use_type: Option<Cow<'a, str>>,
    /// The tier segment, if the pattern has one.
    pub tier: Option<Cow<'a, str>>,
}

/// Longest pattern accepted.
pub const MAX_PATTERN_LEN: usize = 512;

impl FromStr for RoutePattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() > MAX_PATTERN_LEN {
            return Err("pattern too long".into());
        }
        let body = s.strip_prefix('/').ok_or("a route must start with /")?;
        let parts: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::new();
        let mut rest = false;
        for (i, p) in parts.iter().enumerate() {
            let seg = match *p {
                "{track}" => Segment::Track,
                "{use}" => Segment::Use,
                "{tier}" => Segment::Tier,
                "{*rest}" if i + 1 == parts.len() => {
                    rest = true;
                    continue;
                }
                "{*rest}" => return Err("{*rest} must be the last segment".into()),
                p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 && !p.contains('*') => {
                    Segment::Any
                }
                p if p.contains(['{', '}']) => return Err(format!("bad segment {p:?}")),
                "" => return Err("empty segment".into()),
                p => Segment::Literal(p.to_owned()),
            };
            if segments.contains(&seg) && seg != Segment::Any && !matches!(seg, Segment::Literal(_))
            {
                return Err(format!("{p} appears twice"));
            }
            segments.push(seg);
        }
        if !segments.contains(&Segment::Track) {
            return Err("a route needs a {track} segment".into());
        }
        Ok(RoutePattern {
            segments,
            rest,
            text: s.to_owned(),
        })
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// [`percent_decode`] that borrows a segment with no escapes (the usual track id).
fn decode_segment(s: &str) -> Option<Cow<'_, str>> {
    if s.contains('%') {
        percent_decode(s).map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(s))
    }
}

impl RoutePattern {
    /// Matches a path (no query). Segments are compared before decoding, captures decoded.
    pub fn matches<'p>(&self, path: &'p str) -> Option<RouteMatch<'p>> {
        let body = path.strip_prefix('/')?;
        // "/" has no segments (split would give one empty one).
        let mut parts = body.split('/').filter(|_| !body.is_empty());
        let mut m = RouteMatch {
            track: Cow::Borrowed(""),
            use_type: None,
            tier: None,
        };
        for seg in &self.segments {
            let part = parts.next()?;
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Track => {
                    m.track = decode_segment(part)
                        .filter(|t| !t.is_empty() && t.len() <= 128 && !t.contains('/'))?
                }
                Segment::Use => m.use_type = Some(decode_segment(part)?),
                Segment::Tier => m.tier = Some(decode_segment(part)?),
                Segment::Any => {
                    if part.is_empty() {
                        return None;
                    }
                }
            }
        }
        if !self.rest && parts.next().is_some() {
            return None;
        }
        Some(m)
    }
}

/// The first pattern that matches a path.
pub fn match_routes<'p>(routes: &[RoutePattern], path: &'p str) -> Option<RouteMatch<'p>> {
    routes.iter().find_map(|r| r.matches(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RoutePattern {
        s.parse().expect("pattern")
    }

    #[test]
    fn matching() {
        let r = p("/audio/{track}/{*rest}");
        assert_eq!(
            r.matches("/audio/QZNW52400001/seg-1.mp4").map(|m| m.track),
            Some("QZNW52400001".into())
        );
        assert_eq!(
            r.matches("/audio/QZNW52400001").map(|m| m.track),
            Some("QZNW52400001".into())
        );
        assert_eq!(
            r.matches("/audio/QZ%4EW1/x/y").map(|m| m.track),
            Some("QZNW1".into())
        );
        assert!(r.matches("/video/QZ/x").is_none());
        assert!(r.matches("/audio//x").is_none());
        assert!(r.matches("/audio/%ZZ/x").is_none());
        assert!(
            r.matches("/audio/a%2Fb/x").is_none(),
            "an encoded slash is not a track id"
        );
        let r = p("/{tier}/{use}/t/{track}");
        let m = r.matches("/premium/download/t/X1").expect("match");
        assert_eq!(
            (m.track.as_ref(), m.use_type.as_deref(), m.tier.as_deref()),
            ("X1", Some("download"), Some("premium"))
        );
        assert!(r.matches("/premium/download/t/X1/more").is_none());
        assert!(r.matches("/premium/download/t").is_none());
        assert!(r.matches("/").is_none());
        let m = r.matches("/pre%6Dium/download/t/X1").expect("match");
        assert!(
            matches!(m.track, Cow::Borrowed("X1")),
            "no escapes: borrowed"
        );
        assert_eq!(m.tier.as_deref(), Some("premium"));
        // {*rest} may match no segment or an empty one; "/" has no segment at all.
        let r = p("/{track}/{*rest}");
        assert_eq!(r.matches("/T1").map(|m| m.track), Some("T1".into()));
        assert_eq!(r.matches("/T1/").map(|m| m.track), Some("T1".into()));
        assert!(r.matches("/").is_none());
        assert!(p("/{track}").matches("/T1/").is_none());
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "audio/{track}",
            "/audio/{rest}",
            "/{*rest}/{track}",
            "/{track}/{track}",
            "/a//{track}",
            "/a{b/{track}",
        ] {
            assert!(bad.parse::<RoutePattern>().is_err(), "{bad}");
        }
    }
}
