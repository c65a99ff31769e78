//! Tests of configuration loading: defaults, precedence, and every refusal naming its key.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn defaults() {
    let c = Config::load(None, no_env, Overrides::default()).expect("defaults");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9090");
    assert_eq!(c.mode, Mode::Authz);
    assert!(!c.policy.fail_open);
    assert_eq!(c.authz.deny_status, 403);
    assert_eq!(c.limits.max_header_bytes, 32 * 1024);
}

#[test]
fn flags_beat_env_beat_file() {
    let file = "listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\n";
    let env = |k: &str| (k == "REGIONGATE_LISTEN").then(|| "127.0.0.1:3".to_owned());
    let c = Config::load(Some(file), env, Overrides::default()).expect("ok");
    assert_eq!((c.listen.port(), c.admin_listen.port()), (3, 2));
    let flags = Overrides {
        listen: Some("127.0.0.1:4".into()),
        ..Overrides::default()
    };
    assert_eq!(
        Config::load(Some(file), env, flags)
            .expect("ok")
            .listen
            .port(),
        4
    );
}

#[test]
fn bad_keys_are_named() {
    let cases = [
        ("listen = \"nowhere\"", "listen"),
        ("lisen = \"127.0.0.1:1\"", "lisen"),
        ("[policy]\nkind = \"lenient\"", "lenient"),
        ("[authz]\ndeny_status = 200", "authz.deny_status"),
        ("routes = [\"/audio/{rest}\"]", "routes[0]"),
        ("mode = \"proxy\"", "proxy.upstream"),
        (
            "mode = \"proxy\"\n[proxy]\nupstream = \"http://o:1/x\"",
            "proxy.upstream",
        ),
        (
            "[client]\ntrusted_proxies = [\"10.0.0.0/33\"]",
            "client.trusted_proxies",
        ),
        ("[hints]\nmax_age_s = 0", "hints.max_age_s"),
        (
            "[hints]\nwifi_max_accuracy_m = 0.0",
            "hints.wifi_max_accuracy_m",
        ),
        (
            "[policy]\nwifi_plausible_km = -1.0",
            "policy.wifi_plausible_km",
        ),
        (
            "[admin]\ntoken_env = \"REGIONGATE_TEST_UNSET\"",
            "admin.token_env",
        ),
    ];
    for (text, key) in cases {
        let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
        assert!(e.to_string().contains(key), "{text}: {e}");
    }
}

#[test]
fn limits_are_checked_with_the_key_and_the_bounds() {
    let cases = [
        (
            "[preflight]\nmax_batch = 0",
            "config key `preflight.max_batch`: must be between 1 and 10000",
        ),
        (
            "[preflight]\nmax_batch = 10001",
            "config key `preflight.max_batch`: must be between 1 and 10000",
        ),
        (
            "[limits]\nmax_headers = 0",
            "config key `limits.max_headers`: must be between 1 and 1000",
        ),
        (
            "[limits]\nmax_headers = 1001",
            "config key `limits.max_headers`: must be between 1 and 1000",
        ),
        (
            "[limits]\nmax_header_bytes = 8191",
            "config key `limits.max_header_bytes`: must be between 8192 and 1048576",
        ),
        (
            "[limits]\nmax_header_bytes = 1048577",
            "config key `limits.max_header_bytes`: must be between 8192 and 1048576",
        ),
        (
            "[limits]\nmax_connections = 0",
            "config key `limits.max_connections`: must be at least 1",
        ),
        (
            "[limits]\nmax_concurrent_streams = 0",
            "config key `limits.max_concurrent_streams`: must be between 1 and 10000",
        ),
        (
            "[limits]\nmax_concurrent_streams = 10001",
            "config key `limits.max_concurrent_streams`: must be between 1 and 10000",
        ),
        (
            "[limits]\ngrpc_max_message_bytes = 1023",
            "config key `limits.grpc_max_message_bytes`: must be between 1024 and 16777216",
        ),
        (
            "[limits]\ngrpc_max_message_bytes = 16777217",
            "config key `limits.grpc_max_message_bytes`: must be between 1024 and 16777216",
        ),
        (
            "[limits]\nmax_body_bytes = 0",
            "config key `limits.max_body_bytes`: must be between 1 and 16777216",
        ),
        (
            "[limits]\nmax_body_bytes = 16777217",
            "config key `limits.max_body_bytes`: must be between 1 and 16777216",
        ),
        (
            "[limits]\nheader_read_timeout_ms = 0",
            "config key `limits.header_read_timeout_ms`: must be at least 1",
        ),
        (
            "[limits]\nrequest_timeout_ms = 0",
            "config key `limits.request_timeout_ms`: must be at least 1",
        ),
        (
            "[hints]\nmax_accuracy_m = -1.0",
            "config key `hints.max_accuracy_m`: must be a positive number of metres",
        ),
        (
            "[hints]\nmax_accuracy_m = nan",
            "config key `hints.max_accuracy_m`: must be a positive number of metres",
        ),
    ];
    for (text, want) in cases {
        let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
        assert_eq!(e.to_string(), want, "{text}");
    }
    // The largest values accepted are accepted.
    let text = "[preflight]\nmax_batch = 10000\n[limits]\nmax_headers = 1000\nmax_body_bytes = 16777216\nmax_header_bytes = 1048576\n";
    let c = Config::load(Some(text), no_env, Overrides::default()).expect("at the limits");
    assert_eq!(
        (
            c.max_batch,
            c.limits.max_headers,
            c.limits.max_body_bytes,
            c.limits.max_header_bytes
        ),
        (10_000, 1000, 16 * 1024 * 1024, 1024 * 1024)
    );
    // And the smallest.
    let c = Config::load(
        Some("[limits]\nmax_header_bytes = 8192\n"),
        no_env,
        Overrides::default(),
    )
    .expect("at the lower limit");
    assert_eq!(c.limits.max_header_bytes, 8192);
}

#[test]
fn more_bad_values_are_named() {
    let long_route = format!("routes = [\"/{}/{{track}}\"]", "a".repeat(600));
    let cases = [
        (
            long_route.as_str(),
            "config key `routes[0]`: pattern too long",
        ),
        (
            "[client]\nchain_header = \"x-real-ip\"",
            "config key `client.chain_header`: \"x-real-ip\" is not x-forwarded-for or forwarded",
        ),
        (
            "[authz]\npath_prefix = \"v1/\"",
            "config key `authz.path_prefix`: must start with / and not end with /",
        ),
        (
            "[authz]\ndefault_tier = \"gold\"",
            "config key `authz.default_tier`: unknown tier \"gold\" (expected free or premium)",
        ),
        (
            "[report]\ndir = \"/tmp/r\"\nretention_days = 0",
            "config key `report.retention_days`: must be at least 1",
        ),
        (
            "[admin]\ntoken_file = \"/t\"\ntoken_env = \"T\"",
            "config key `admin`: token_file and token_env: give one",
        ),
        (
            "[limits]\nmax_connections = -1",
            "config key `limits.max_connections`: invalid value: integer `-1`, expected usize (line 2)",
        ),
    ];
    for (text, want) in cases {
        let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
        assert_eq!(e.to_string(), want, "{text}");
    }
}

#[test]
fn a_huge_or_unreadable_file_is_refused() {
    let big = format!("# {}\n", "x".repeat(MAX_CONFIG_BYTES));
    let e = Config::load(Some(&big), no_env, Overrides::default()).expect_err("too big");
    assert_eq!(e.key, "file");
    assert!(e.reason.contains("more than the limit of 1048576"), "{e}");
    for text in ["listen = ", "[limits\n", "routes = \"x\"", "\u{0}"] {
        let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
        assert!(!e.reason.is_empty(), "{text}: {e}");
    }
    // Found by fuzzing (fuzz/corpus/config/regression-empty-key): a span on whitespace gave
    // an empty key name.
    let text =
        "[report]\ndir = \"/tmp/r\"\nretention_d[admin]\ntoken_file = \"/nays onexi= stent0\"";
    let e = Config::load(Some(text), no_env, Overrides::default()).expect_err(text);
    assert_eq!(e.key, "file", "{e}");
    assert!(e.reason.ends_with("(line 3)"), "{e}");
}

#[test]
fn the_token_file_is_read_up_to_a_limit() {
    let dir = std::env::temp_dir().join(format!("regiongate-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let long = dir.join("long-token");
    std::fs::write(&long, "t".repeat(MAX_TOKEN_FILE_BYTES as usize + 1)).expect("write");
    let good = dir.join("token");
    std::fs::write(&good, "0123456789abcdef0123\n").expect("write");
    let load = |p: &std::path::Path| {
        let text = format!("[admin]\ntoken_file = {:?}\n", p.display().to_string());
        Config::load(Some(&text), no_env, Overrides::default())
    };
    let e = load(&long).expect_err("too long");
    assert_eq!(e.key, "admin.token_file");
    assert!(
        e.reason.contains("longer than the limit of 4096 bytes"),
        "{e}"
    );
    // An endless file is cut at the limit rather than read forever.
    let e = load(std::path::Path::new("/dev/zero")).expect_err("endless");
    assert!(e.reason.contains("longer than the limit"), "{e}");
    assert_eq!(
        load(&good).expect("token").admin_token.as_deref(),
        Some("0123456789abcdef0123")
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn decision_log_and_summary_interval() {
    let load = |text: &str| Config::load(Some(text), no_env, Overrides::default());
    let c = load("").expect("defaults");
    assert_eq!(c.decision_log, DecisionLog::Off);
    assert_eq!(c.summary_interval, Some(Duration::from_secs(60)));
    let c = load("decision_log = \"1/250\"\nsummary_interval_s = 0\n").expect("ok");
    assert_eq!(
        c.decision_log,
        DecisionLog::Sampled(std::num::NonZeroU32::new(250).expect("250"))
    );
    assert_eq!(c.summary_interval, None);
    assert_eq!(
        load("decision_log = \"full\"").expect("ok").decision_log,
        DecisionLog::Full
    );
    for bad in ["\"1/0\"", "\"0\"", "\"1/1000001\"", "\"all\"", "true"] {
        let Err(e) = load(&format!("decision_log = {bad}")) else {
            panic!("{bad} accepted");
        };
        assert!(e.to_string().contains("decision_log"), "{bad}: {e}");
    }
    let Err(e) = load("summary_interval_s = 90000") else {
        panic!("a summary interval over a day accepted");
    };
    assert!(e.to_string().contains("summary_interval_s"), "{e}");
    let env = |k: &str| (k == "REGIONGATE_DECISION_LOG").then(|| "full".to_owned());
    let c = Config::load(Some("decision_log = \"off\""), env, Overrides::default()).expect("ok");
    assert_eq!(
        c.decision_log,
        DecisionLog::Full,
        "the environment beats the file"
    );
}
