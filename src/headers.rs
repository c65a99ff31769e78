//! Read access to a request's header lines, for the code that reads location hints, the
//! client chain and the CDN's use and tier headers.
//!
//! Two kinds of request reach that code: those hyper parsed (their headers in an
//! [`http::HeaderMap`]) and auth subrequests on the fast path (`server::fast`), whose header
//! lines stay as `httparse` parsed them, in the connection's read buffer: building a map for
//! them is a large share of what an auth subrequest costs. Both are parsed by `httparse` with
//! the same settings, so a line has the same bytes in either.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A request's header lines, looked up by name (names compare without regard to case).
pub trait HeaderLines {
    /// The values of every line named `name`, in the order they were received.
    fn values_named<'a>(&'a self, name: &HeaderName) -> impl DoubleEndedIterator<Item = &'a [u8]>;

    /// The value of the first line named `name`.
    fn first<'a>(&'a self, name: &HeaderName) -> Option<&'a [u8]> {
        self.values_named(name).next()
    }

    /// The value of the first line named `name` as text, when it is visible ASCII (what
    /// [`HeaderValue::to_str`] accepts).
    fn first_str<'a>(&'a self, name: &HeaderName) -> Option<&'a str> {
        self.first(name).and_then(visible_ascii)
    }
}

impl HeaderLines for HeaderMap {
    fn values_named<'a>(&'a self, name: &HeaderName) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        self.get_all(name).iter().map(HeaderValue::as_bytes)
    }
}

impl HeaderLines for [httparse::Header<'_>] {
    fn values_named<'a>(&'a self, name: &HeaderName) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        // `HeaderName::as_str` is lower case.
        let name = name.as_str().as_bytes();
        self.iter()
            .filter(move |h| h.name.as_bytes().eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// `bytes` as text when every byte is visible ASCII or a tab: the rule of
/// [`HeaderValue::to_str`].
pub fn visible_ascii(bytes: &[u8]) -> Option<&str> {
    if bytes
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        // Only ASCII: always UTF-8.
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const HINT: HeaderName = HeaderName::from_static("geo-hint");

    /// The same request head, read both ways, answers every lookup the same.
    #[test]
    fn parsed_lines_answer_like_a_header_map() {
        let head = b"GET /v1/authz HTTP/1.1\r\nX-Forwarded-For: 192.0.2.1\r\nHost: a\r\n\
            x-forwarded-for: 198.51.100.7, 203.0.113.9\r\nGeo-Hint: caf\xc3\xa9\r\n\
            Tab:\tx\ty\r\n\r\n";
        let mut lines = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut lines);
        assert!(req.parse(head).expect("parses").is_complete());
        let lines: &[httparse::Header<'_>] = req.headers;
        let mut map = HeaderMap::new();
        for l in lines {
            map.append(
                HeaderName::from_bytes(l.name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(l.value).expect("value"),
            );
        }
        let tab = HeaderName::from_static("tab");
        let absent = HeaderName::from_static("forwarded");
        for name in [&XFF, &HINT, &tab, &absent] {
            let a: Vec<&[u8]> = lines.values_named(name).collect();
            let b: Vec<&[u8]> = map.values_named(name).collect();
            assert_eq!(a, b, "{name}");
            let a: Vec<&[u8]> = lines.values_named(name).rev().collect();
            let b: Vec<&[u8]> = map.values_named(name).rev().collect();
            assert_eq!(a, b, "{name} from the right");
            assert_eq!(
                lines.first_str(name),
                map.get(name).and_then(|v| v.to_str().ok()),
                "{name} as text"
            );
            assert_eq!(map.first_str(name), lines.first_str(name), "{name}");
        }
        assert_eq!(lines.values_named(&XFF).count(), 2);
        assert_eq!(lines.first_str(&XFF), Some("192.0.2.1"));
        // Not visible ASCII: no text, as HeaderValue::to_str.
        assert_eq!(lines.first_str(&HINT), None);
        assert_eq!(lines.first_str(&tab), Some("x\ty"));
    }

    #[test]
    fn visible_ascii_is_the_to_str_rule() {
        for b in 0u8..=255 {
            let bytes = [b'a', b];
            let ours = visible_ascii(&bytes).is_some();
            let http = HeaderValue::from_bytes(&bytes).map(|v| v.to_str().is_ok());
            // Bytes a header value cannot hold at all (CR, LF, NUL...) never reach either.
            if let Ok(http) = http {
                assert_eq!(ours, http, "byte {b:#04x}");
            }
        }
    }
}
