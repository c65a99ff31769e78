//! Route patterns: where the track id (and optionally use and tier) sit in a media path.
//!
//! A pattern is a path of `/`-separated segments: literals, `{track}` (required, once),
//! `{use}`, `{tier}`, `{name}` (any other single segment, ignored), and a final `{*rest}` that
//! matches the remaining segments (possibly none). Example: `/audio/{track}/{*rest}`.

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

/// What a path matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// The track id (percent-decoded).
    pub track: String,
    /// The use segment, if the pattern has one.
    pub use_type: Option<String>,
    /// The tier segment, if the pattern has one.
    pub tier: Option<String>,
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

impl RoutePattern {
    /// Matches a path (no query). Segments are compared before decoding, captures decoded.
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        let body = path.strip_prefix('/')?;
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        if parts.len() < self.segments.len() || (!self.rest && parts.len() != self.segments.len()) {
            return None;
        }
        let mut m = RouteMatch {
            track: String::new(),
            use_type: None,
            tier: None,
        };
        for (seg, part) in self.segments.iter().zip(&parts) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Track => {
                    m.track = percent_decode(part)
                        .filter(|t| !t.is_empty() && t.len() <= 128 && !t.contains('/'))?
                }
                Segment::Use => m.use_type = Some(percent_decode(part)?),
                Segment::Tier => m.tier = Some(percent_decode(part)?),
                Segment::Any => {
                    if part.is_empty() {
                        return None;
                    }
                }
            }
        }
        Some(m)
    }
}

/// The first pattern that matches a path.
pub fn match_routes(routes: &[RoutePattern], path: &str) -> Option<RouteMatch> {
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
            (m.track.as_str(), m.use_type.as_deref(), m.tier.as_deref()),
            ("X1", Some("download"), Some("premium"))
        );
        assert!(r.matches("/premium/download/t/X1/more").is_none());
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
