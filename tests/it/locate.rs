//! Location evidence and the evidence policy: MaxMind DB fixtures written here with
//! `mmdb-writer` (GeoIP2 City, flat, Anonymous-IP layouts), the committed default database, and
//! a table of policy branches on the small world.

use crate::util::{at, small_world};
use mmdb_writer::{Value, Writer};
use regiongate::Snapshot;
use regiongate::decide::{
    AnonymizerOutcome, ConflictOutcome, Policy, PolicyKind, Question, Reason, Source, Verdict,
    decide_with_evidence,
};
use regiongate::license::{Tier, UseType};
use regiongate::locate::hints::{FixKind, GpsLimits, Hints, check_cell, check_fix, check_gps};
use regiongate::locate::ip::Layout;
use regiongate::locate::wifi::parse_wifi_hint;
use regiongate::privacy::ClientIp;
use std::net::IpAddr;
use std::sync::OnceLock;

const NOW: &str = "2025-06-15T12:00:00Z";

fn city(country: &str, lat: f64, lon: f64, acc_km: u16) -> Value {
    Value::map([
        ("country", Value::map([("iso_code", Value::from(country))])),
        (
            "location",
            Value::map([
                ("latitude", Value::Double(lat)),
                ("longitude", Value::Double(lon)),
                ("accuracy_radius", Value::U16(acc_km)),
            ]),
        ),
    ])
}

fn country_only(country: &str) -> Value {
    Value::map([("country", Value::map([("iso_code", Value::from(country))]))])
}

fn geoip2_city_db() -> Vec<u8> {
    let mut w = Writer::new("GeoIP2-City");
    let rows = [
        ("81.0.0.0/24", city("DE", 2.0, 2.0, 20)), // deep inside DE
        ("81.0.1.0/24", city("DE", 5.0, 9.9, 50)), // circle reaches FR
        ("81.0.2.0/24", country_only("FR")),       // country only
        ("81.0.3.0/24", country_only("DE")),       // a VPN exit (see the anonymizer db)
        ("81.0.4.0/24", country_only("DE")),       // in the operator's VPN list
        ("81.0.5.0/24", city("GB", 12.0, 2.0, 1000)), // huge circle over DE, GB and the sea
        ("81.0.6.0/24", city("DE", 2.0, 2.0, 300)), // circle over DE and the sea only
        ("2a00:1::/32", country_only("DE")),
    ];
    for (net, v) in rows {
        w.insert_value(net.parse::<ipnet::IpNet>().expect("net"), v)
            .expect("insert");
    }
    w.to_bytes().expect("bytes")
}

fn flat_db() -> Vec<u8> {
    let mut w = Writer::new("ip-location-db-city");
    let v = Value::map([
        ("country_code", Value::from("FR")),
        ("latitude", Value::Float(2.0)),
        ("longitude", Value::Float(12.0)),
    ]);
    w.insert_value("82.0.0.0/24".parse::<ipnet::IpNet>().expect("net"), v)
        .expect("insert");
    w.to_bytes().expect("bytes")
}

fn anon_db() -> Vec<u8> {
    let mut w = Writer::new("GeoIP2-Anonymous-IP");
    let v = Value::map([
        ("is_anonymous", Value::Bool(true)),
        ("is_anonymous_vpn", Value::Bool(true)),
    ]);
    w.insert_value("81.0.3.0/24".parse::<ipnet::IpNet>().expect("net"), v)
        .expect("insert");
    w.to_bytes().expect("bytes")
}

const LICENSES: &str = r#"
[[dealset]]
selector = { track = "T1" }
updated = "2025-01-01"
deals = [{ id = "de", territories = ["DE"], start = "2020-01-01", uses = ["on_demand_stream"] }]
"#;

fn world_with(ip_db: Vec<u8>) -> Snapshot {
    small_world(
        LICENSES,
        vec![
            ("ip/geoip.mmdb", ip_db),
            ("ip/anonymous-ip.mmdb", anon_db()),
            ("ip/vpn-ranges.txt", b"# operator list\n81.0.4.0/24\n".to_vec()),
            ("mcc-mnc.csv", b"mcc,mnc,countries\n262,,DE\n208,,FR\n234,,GB;DE\n234,10,GB\n235,,GB;US\n".to_vec()),
            ("cells.csv", b"LTE,262,1,100,1,,5.0,5.0,1000,1,1,0,0,0\nLTE,262,1,100,2,,9.95,5.0,20000,1,1,0,0,0\n".to_vec()),
            ("wifi/aps.csv", APS.as_bytes().to_vec()),
        ],
    )
    .expect("valid world")
}

fn world() -> &'static Snapshot {
    static W: OnceLock<Snapshot> = OnceLock::new();
    W.get_or_init(|| world_with(geoip2_city_db()))
}

/// Access points of the small world (RFC 7042 documentation addresses): pairs in DE, in FR
/// 55 km from DE, in FR far from DE, and astride the DE/FR border at longitude 10.
const APS: &str = "bssid,lat,lon,range_m
00:00:5e:00:53:10,3.0,3.0,100
00:00:5e:00:53:11,3.0003,3.0003,100
00:00:5e:00:53:20,2.0,10.5,100
00:00:5e:00:53:21,2.0003,10.5003,100
00:00:5e:00:53:30,2.0,18.0,100
00:00:5e:00:53:31,2.0003,18.0003,100
00:00:5e:00:53:40,5.0,9.999,500
00:00:5e:00:53:41,5.0,10.001,500
";
const WIFI_DE: &str = "00:00:5e:00:53:10@-50, 00:00:5e:00:53:11@-60";
const WIFI_FR_NEAR: &str = "00005E005320@-50, 00005e005321";
const WIFI_FR_FAR: &str = "00-00-5E-00-53-30@-70, 00-00-5E-00-53-31@-70";
const WIFI_BORDER: &str = "00:00:5e:00:53:40@-60, 00:00:5e:00:53:41@-60";
/// One known access point: no evidence (a lookup would locate the router).
const WIFI_ONE: &str = "00:00:5e:00:53:10@-50, 00:00:5e:00:53:99@-50";

struct Ask<'a> {
    ip: Option<&'a str>,
    gps: Option<(f64, f64)>,
    cell: Option<(&'a str, &'a str, Option<&'a str>)>,
    /// A `Wifi-Hint`.
    wifi: Option<&'a str>,
    /// The device's own WiFi fix (`Geo-Hint: ...; src=wifi`).
    wifi_fix: Option<(f64, f64)>,
}

const NONE: Ask<'static> = Ask {
    ip: None,
    gps: None,
    cell: None,
    wifi: None,
    wifi_fix: None,
};

fn ask(s: &Snapshot, policy: &Policy, a: &Ask<'_>) -> (Verdict, Reason, Source) {
    let now = at(NOW);
    let client =
        a.ip.map(|i| ClientIp::new(i.parse::<IpAddr>().expect("ip")));
    let gps = a.gps.map(|(lat, lon)| {
        check_gps(
            lat,
            lon,
            20.0,
            now.timestamp() - 5,
            now.timestamp(),
            &GpsLimits::default(),
        )
        .expect("gps")
    });
    let cell = a.cell.map(|(mcc, mnc, c)| {
        check_cell(mcc, mnc, c.map(|_| "lte"), c.map(|_| "100"), c).expect("cell")
    });
    let wifi_fix = a.wifi_fix.map(|(lat, lon)| {
        check_fix(
            lat,
            lon,
            30.0,
            now.timestamp() - 5,
            now.timestamp(),
            &GpsLimits::default(),
            FixKind::Wifi,
        )
        .expect("wifi fix")
    });
    let hints = Hints {
        gps: gps.or(wifi_fix),
        cell,
        wifi: a.wifi.map(|w| parse_wifi_hint(w).expect("wifi hint")),
    };
    let ev = regiongate::gate::gather(s, client.as_ref(), &hints);
    let q = Question {
        track: "T1",
        use_type: UseType::OnDemandStream,
        tier: Tier::Premium,
    };
    let d = decide_with_evidence(s, policy, &q, &ev, now);
    (d.verdict, d.reason, d.source)
}

use Reason::*;
use Source::{Cell, Gps, Ip, Wifi};
use Verdict::{Allow, Deny, NeedPreciseLocation as Need};

/// A named question, its policy and evidence, and the expected (verdict, reason, source).
type Case<'a> = (&'a str, &'a Policy, Ask<'a>, (Verdict, Reason, Source));

#[test]
fn policy_table() {
    let s = world();
    let pf = Policy::default();
    let pf_deny = Policy {
        on_conflict: ConflictOutcome::Deny,
        ..pf
    };
    let pf_need = Policy {
        on_conflict: ConflictOutcome::NeedPreciseLocation,
        ..pf
    };
    let strict = Policy {
        kind: PolicyKind::Strict,
        ..pf
    };
    let ip_only = Policy {
        kind: PolicyKind::IpOnly,
        ..pf
    };
    let anon_deny = Policy {
        on_anonymizer: AnonymizerOutcome::Deny,
        ..pf
    };
    let open = Policy {
        fail_open: true,
        ..pf
    };
    let wifi_near = Policy {
        wifi_plausible_km: Some(10.0),
        ..pf
    };
    let wifi_need = Policy {
        on_uncertain_fix: regiongate::decide::UncertainFixOutcome::NeedPreciseLocation,
        ..pf
    };
    let de_ip = Some("81.0.0.7");
    let cases: Vec<Case<'_>> = vec![
        (
            "ip only evidence, licensed",
            &pf,
            Ask { ip: de_ip, ..NONE },
            (Allow, Licensed, Ip),
        ),
        (
            "ip in FR (country only)",
            &pf,
            Ask {
                ip: Some("81.0.2.1"),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Ip),
        ),
        (
            "agreement: gps and ip in DE",
            &pf,
            Ask {
                ip: de_ip,
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Allow, Licensed, Gps),
        ),
        (
            "plausible gps across the border decides",
            &pf,
            Ask {
                ip: de_ip,
                gps: Some((2.0, 10.5)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Gps),
        ),
        (
            "implausible gps: use ip",
            &pf,
            Ask {
                ip: de_ip,
                gps: Some((2.0, 18.0)),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "implausible gps: deny",
            &pf_deny,
            Ask {
                ip: de_ip,
                gps: Some((2.0, 18.0)),
                ..NONE
            },
            (Deny, LocationConflict, Gps),
        ),
        (
            "implausible gps: need precise",
            &pf_need,
            Ask {
                ip: de_ip,
                gps: Some((2.0, 18.0)),
                ..NONE
            },
            (Need, LocationConflict, Gps),
        ),
        (
            "gps cannot buy DE from a FR address far away",
            &pf,
            Ask {
                ip: Some("81.0.2.1"),
                gps: Some((5.0, 2.0)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Ip),
        ),
        (
            "accuracy circle crosses into FR",
            &pf,
            Ask {
                ip: Some("81.0.1.9"),
                ..NONE
            },
            (Need, AmbiguousLocation, Ip),
        ),
        (
            "circle crossing, resolved by gps",
            &pf,
            Ask {
                ip: Some("81.0.1.9"),
                gps: Some((5.0, 9.0)),
                ..NONE
            },
            (Allow, Licensed, Gps),
        ),
        (
            "huge circle over several countries",
            &pf,
            Ask {
                ip: Some("81.0.5.1"),
                ..NONE
            },
            (Need, AmbiguousLocation, Ip),
        ),
        (
            "circle reaching only the sea is certain",
            &pf,
            Ask {
                ip: Some("81.0.6.1"),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "ambiguous MCC alone",
            &pf,
            Ask {
                cell: Some(("234", "15", None)),
                ..NONE
            },
            (Need, AmbiguousLocation, Cell),
        ),
        (
            "decisive MNC alone",
            &pf,
            Ask {
                cell: Some(("234", "10", None)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Cell),
        ),
        (
            "cell country agrees with ip",
            &pf,
            Ask {
                ip: de_ip,
                cell: Some(("262", "01", None)),
                ..NONE
            },
            (Allow, Licensed, Cell),
        ),
        (
            "cell country conflicts with ip: use ip",
            &pf,
            Ask {
                ip: de_ip,
                cell: Some(("208", "01", None)),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "ambiguous MCC falls back to ip",
            &pf,
            Ask {
                ip: de_ip,
                cell: Some(("234", "15", None)),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "shared MCC with the same answer everywhere",
            &pf,
            Ask {
                cell: Some(("235", "15", None)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Cell),
        ),
        (
            "shared MCC not matching the ip country: use ip",
            &pf,
            Ask {
                ip: Some("81.0.2.1"),
                cell: Some(("235", "15", None)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Ip),
        ),
        (
            "known cell gives a point",
            &pf,
            Ask {
                cell: Some(("262", "01", Some("1"))),
                ..NONE
            },
            (Allow, Licensed, Cell),
        ),
        (
            "known cell whose range crosses the border",
            &pf,
            Ask {
                cell: Some(("262", "01", Some("2"))),
                ..NONE
            },
            (Need, AmbiguousLocation, Cell),
        ),
        (
            "anonymizer: need precise",
            &pf,
            Ask {
                ip: Some("81.0.3.3"),
                ..NONE
            },
            (Need, Anonymizer, Ip),
        ),
        (
            "anonymizer: gps decides",
            &pf,
            Ask {
                ip: Some("81.0.3.3"),
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Allow, Licensed, Gps),
        ),
        (
            "anonymizer: deny",
            &anon_deny,
            Ask {
                ip: Some("81.0.3.3"),
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Deny, Anonymizer, Ip),
        ),
        (
            "operator vpn list",
            &pf,
            Ask {
                ip: Some("81.0.4.4"),
                ..NONE
            },
            (Need, Anonymizer, Ip),
        ),
        (
            "no evidence: fail closed",
            &pf,
            NONE,
            (Deny, LocationUnknown, Source::None),
        ),
        (
            "no evidence: fail open",
            &open,
            NONE,
            (Allow, LocationUnknown, Source::None),
        ),
        (
            "private address gives no evidence",
            &pf,
            Ask {
                ip: Some("192.168.1.1"),
                ..NONE
            },
            (Deny, LocationUnknown, Source::None),
        ),
        (
            "IPv4-mapped IPv6",
            &pf,
            Ask {
                ip: Some("::ffff:81.0.0.7"),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "IPv6",
            &pf,
            Ask {
                ip: Some("2a00:1:2::3"),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "strict: all agree",
            &strict,
            Ask {
                ip: de_ip,
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Allow, Licensed, Gps),
        ),
        (
            "strict: gps denies",
            &strict,
            Ask {
                ip: de_ip,
                gps: Some((2.0, 10.5)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Gps),
        ),
        (
            "strict: ip denies",
            &strict,
            Ask {
                ip: Some("81.0.2.1"),
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Ip),
        ),
        (
            "strict: circle uncertain",
            &strict,
            Ask {
                ip: Some("81.0.1.9"),
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Need, AmbiguousLocation, Ip),
        ),
        (
            "ip_only ignores gps",
            &ip_only,
            Ask {
                ip: Some("81.0.2.1"),
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Ip),
        ),
        (
            "ip_only without ip",
            &ip_only,
            Ask {
                gps: Some((3.0, 3.0)),
                ..NONE
            },
            (Deny, LocationUnknown, Source::None),
        ),
        // WiFi: access points seen, and the device's own WiFi fix.
        (
            "wifi scan in DE decides",
            &pf,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_DE),
                ..NONE
            },
            (Allow, Licensed, Wifi),
        ),
        (
            "wifi scan alone",
            &pf,
            Ask {
                wifi: Some(WIFI_FR_FAR),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Wifi),
        ),
        (
            "plausible wifi across the border decides",
            &pf,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_FR_NEAR),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Wifi),
        ),
        (
            "implausible wifi: use ip",
            &pf,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_FR_FAR),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "implausible wifi: deny",
            &pf_deny,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_FR_FAR),
                ..NONE
            },
            (Deny, LocationConflict, Wifi),
        ),
        (
            "wifi_plausible_km narrower than plausible_km: use ip",
            &wifi_near,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_FR_NEAR),
                ..NONE
            },
            (Allow, Licensed, Ip),
        ),
        (
            "wifi_plausible_km does not apply to gps",
            &wifi_near,
            Ask {
                ip: de_ip,
                gps: Some((2.0, 10.5)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Gps),
        ),
        (
            "gps outranks wifi",
            &pf,
            Ask {
                ip: de_ip,
                gps: Some((3.0, 3.0)),
                wifi: Some(WIFI_FR_NEAR),
                ..NONE
            },
            (Allow, Licensed, Gps),
        ),
        (
            "wifi outranks cell",
            &pf,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_FR_NEAR),
                cell: Some(("262", "01", None)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Wifi),
        ),
        (
            "wifi disc across the border: uncertain fix denied",
            &pf,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_BORDER),
                ..NONE
            },
            (Deny, AmbiguousLocation, Wifi),
        ),
        (
            "wifi disc across the border: need precise",
            &wifi_need,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_BORDER),
                ..NONE
            },
            (Need, AmbiguousLocation, Wifi),
        ),
        (
            "one known access point gives no wifi evidence",
            &pf,
            Ask {
                ip: Some("81.0.2.1"),
                wifi: Some(WIFI_ONE),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Ip),
        ),
        (
            "device wifi fix decides",
            &pf,
            Ask {
                ip: de_ip,
                wifi_fix: Some((3.0, 3.0)),
                ..NONE
            },
            (Allow, Licensed, Wifi),
        ),
        (
            "device wifi fix across the border",
            &pf,
            Ask {
                ip: de_ip,
                wifi_fix: Some((2.0, 10.5)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Wifi),
        ),
        (
            "anonymizer: wifi decides",
            &pf,
            Ask {
                ip: Some("81.0.3.3"),
                wifi: Some(WIFI_DE),
                ..NONE
            },
            (Allow, Licensed, Wifi),
        ),
        (
            "anonymizer: gps before wifi",
            &pf,
            Ask {
                ip: Some("81.0.3.3"),
                gps: Some((2.0, 10.5)),
                wifi: Some(WIFI_DE),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Gps),
        ),
        (
            "strict: wifi denies",
            &strict,
            Ask {
                ip: de_ip,
                gps: Some((3.0, 3.0)),
                wifi: Some(WIFI_FR_NEAR),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Wifi),
        ),
        (
            "strict: gps, wifi and ip agree",
            &strict,
            Ask {
                ip: de_ip,
                gps: Some((3.0, 3.0)),
                wifi: Some(WIFI_DE),
                ..NONE
            },
            (Allow, Licensed, Gps),
        ),
        (
            "strict: uncertain wifi",
            &strict,
            Ask {
                ip: de_ip,
                wifi: Some(WIFI_BORDER),
                ..NONE
            },
            (Deny, AmbiguousLocation, Wifi),
        ),
        (
            "ip_only ignores wifi",
            &ip_only,
            Ask {
                ip: Some("81.0.2.1"),
                wifi: Some(WIFI_DE),
                wifi_fix: Some((3.0, 3.0)),
                ..NONE
            },
            (Deny, NotLicensedInTerritory, Ip),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, policy, a, want) in &cases {
        let got = ask(s, policy, a);
        if got != *want {
            wrong.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn questions_without_location_need_no_evidence() {
    let s = world();
    let now = at(NOW);
    let q = Question {
        track: "NOPE",
        use_type: UseType::OnDemandStream,
        tier: Tier::Free,
    };
    let client = ClientIp::new("81.0.0.7".parse().expect("ip"));
    let ev = regiongate::gate::gather(s, Some(&client), &Hints::default());
    let d = decide_with_evidence(s, &Policy::default(), &q, &ev, now);
    assert_eq!(
        (d.verdict, d.reason, d.source, d.territory),
        (Deny, UnknownTrack, Source::None, None)
    );
}

#[test]
fn layouts_are_detected() {
    let s = world();
    assert_eq!(s.ip.as_ref().expect("ip db").info().layout, Layout::GeoIp2);
    assert_eq!(
        s.anonymizer.as_ref().expect("anon db").info().layout,
        Layout::Anonymous
    );
    let flat = world_with(flat_db());
    let db = flat.ip.as_ref().expect("ip db");
    assert_eq!(db.info().layout, Layout::Flat);
    let rec = db
        .lookup(&ClientIp::new("82.0.0.1".parse().expect("ip")))
        .expect("lookup")
        .expect("record");
    assert_eq!(rec.country_str(), Some("FR"));
    assert_eq!(
        rec.point.map(|p| p.lon_lat()),
        Some([12.0, 2.0]),
        "float32 coordinates are read"
    );
    assert_eq!(
        ask(
            &flat,
            &Policy::default(),
            &Ask {
                ip: Some("82.0.0.1"),
                ..NONE
            }
        ),
        (Deny, NotLicensedInTerritory, Ip)
    );
}

#[test]
fn ipv4_only_database_asked_ipv6_gives_no_evidence() {
    let mut w = Writer::builder("GeoIP2-Country")
        .ip_version(mmdb_writer::IpVersion::V4)
        .build();
    w.insert_value(
        "81.0.0.0/24".parse::<ipnet::IpNet>().expect("net"),
        country_only("DE"),
    )
    .expect("insert");
    let s = world_with(w.to_bytes().expect("bytes"));
    let db = s.ip.as_ref().expect("db");
    assert_eq!(db.info().ip_version, 4);
    assert!(
        db.lookup(&ClientIp::new("2a00:1::1".parse().expect("ip")))
            .expect("no error")
            .is_none()
    );
    assert_eq!(
        db.lookup(&ClientIp::new("::ffff:81.0.0.1".parse().expect("ip")))
            .expect("ok")
            .and_then(|r| r.country),
        Some(*b"DE")
    );
}

#[test]
fn a_broken_database_is_a_named_problem() {
    let r = small_world(
        LICENSES,
        vec![("ip/geoip.mmdb", b"not a database".to_vec())],
    );
    let Err(regiongate::SnapshotError::Invalid(p)) = r else {
        panic!("refused")
    };
    assert!(
        p.iter()
            .any(|p| p.file == "ip/geoip.mmdb" && p.reason.contains("MaxMind DB")),
        "{p:?}"
    );
    let r = small_world(LICENSES, vec![("ip/geoip.mmdb", anon_db())]);
    let Err(regiongate::SnapshotError::Invalid(p)) = r else {
        panic!("refused")
    };
    assert!(
        p.iter().any(|p| p.reason.contains("found anonymous-ip")),
        "{p:?}"
    );
}

#[test]
fn default_database_knows_well_known_addresses() {
    let w = crate::util::world();
    let db = w.ip.as_ref().expect("embedded ip db");
    assert_eq!(db.info().layout, Layout::Flat);
    let country = |ip: &str| {
        db.lookup(&ClientIp::new(ip.parse().expect("ip")))
            .expect("lookup")
            .and_then(|r| r.country_str().map(str::to_owned))
    };
    assert_eq!(country("8.8.8.8").as_deref(), Some("US"));
    assert_eq!(country("::ffff:8.8.8.8").as_deref(), Some("US"));
    assert_eq!(country("2001:4860:4860::8888").as_deref(), Some("US"));
    assert_eq!(country("114.114.114.114").as_deref(), Some("CN"));
    assert_eq!(country("193.99.144.80").as_deref(), Some("DE"));
    assert_eq!(country("10.0.0.1"), None);
    assert_eq!(country("2001:db8::1"), None);
}

#[test]
fn default_mcc_table() {
    let w = crate::util::world();
    let codes = |mcc: &str, mnc: &str| {
        w.mcc
            .countries(&check_cell(mcc, mnc, None, None, None).expect("cell"))
            .iter()
            .map(|&t| w.territories.code(t).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(codes("262", "01"), ["DE"]);
    assert_eq!(codes("234", "58"), ["IM"], "Manx Telecom on the UK MCC");
    assert_eq!(codes("234", "10"), ["GB"]);
    assert!(
        codes("234", "99").len() > 1,
        "an unknown UK network is ambiguous"
    );
    assert!(codes("901", "01").is_empty(), "international");
    assert_eq!(codes("505", "10"), ["NF"]);
}
