//! The availability map: `regiongate map`, `diff --map`, and the admin page
//! `/admin/tracks/{id}` rendered in headless Chromium (Debian `chromium`, installed by
//! .ci/run), checked by the colour of the pixels at a few countries.

use crate::util::{TestServer, get, within};
use regiongate::map::{Shade, project};
use regiongate::{DataSource, Snapshot};
use std::process::Command;

/// Alpenglow: licensed for DACH only, from 2024-05-17 (regions/licenses/sample.toml).
const TRACK: &str = "QZNW52400010";
const AT: &str = "2025-06-01T00:00:00Z";

fn embedded() -> Snapshot {
    Snapshot::load(&DataSource::Embedded).expect("embedded data")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_track_page_is_behind_the_token_and_self_contained() {
    within(60, "track page", async {
        const TOKEN: &str = "map-token-0123456789";
        let env = |k: &str| (k == "RG_TEST_MAP_TOKEN").then(|| TOKEN.to_owned());
        let srv = TestServer::start_with_env(
            "[admin]\ntoken_env = \"RG_TEST_MAP_TOKEN\"",
            env,
            embedded(),
        )
        .await;
        let path = format!("/admin/tracks/{TRACK}?at={AT}&use=on_demand_stream&tier=free");
        let r = get(srv.admin, &path, &[]).await;
        assert_eq!(r.status, 401, "{}", r.text());
        let auth = format!("Bearer {TOKEN}");
        let r = get(srv.admin, &path, &[("authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(
            r.header("content-security-policy")
                .is_some_and(|c| c.starts_with("default-src 'none'"))
        );
        let html = r.text();
        assert!(
            html.contains(r#"<path id="t-DE" class="allow""#),
            "DE licensed"
        );
        assert!(html.contains(r#"<path id="t-US" class="deny""#), "US not");
        assert!(html.contains(&format!("data version {}", srv.version())));
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
        let r = get(
            srv.admin,
            "/admin/tracks/x?tier=gold",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, 400);
        let r = get(
            srv.admin,
            "/admin/tracks/a%20b",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(r.status, 400);
        srv.stop().await;
    })
    .await;
}

/// The RGB of pixel (x, y) of a PNG file.
fn pixel(png_path: &std::path::Path, x: f64, y: f64) -> [u8; 3] {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).expect("screenshot"));
    let mut reader = decoder.read_info().expect("png");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("frame");
    let channels = info.color_type.samples();
    let (x, y) = (x.round() as usize, y.round() as usize);
    assert!(
        x < info.width as usize && y < info.height as usize,
        "{x},{y} outside"
    );
    let i = (y * info.width as usize + x) * channels;
    [buf[i], buf[i + 1], buf[i + 2]]
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).expect("hex");
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

fn near(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_page_with_de_licensed_and_us_not() {
    within(120, "chromium screenshot", async {
        let srv = TestServer::start("", embedded()).await;
        let url = format!("http://{}/admin/tracks/{TRACK}?at={AT}", srv.admin);
        let dir = tempfile::tempdir().expect("tmp");
        let shot = dir.path().join("page.png");
        let profile = dir.path().join("profile");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1000,700".to_owned(),
            format!("--screenshot={}", shot.display()),
            url,
        ];
        let out =
            tokio::task::spawn_blocking(move || Command::new("chromium").args(&args).output())
                .await
                .expect("join")
                .expect("chromium runs (apt-get install chromium; .ci/run does)");
        assert!(
            shot.exists(),
            "no screenshot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let at = |lon: f64, lat: f64| {
            let (x, y) = project(lon, lat);
            pixel(&shot, x, y)
        };
        let (allow, deny) = (rgb(Shade::Allow.colour()), rgb(Shade::Deny.colour()));
        for (name, lon, lat, want) in [
            ("Germany", 10.4, 51.2, allow),
            ("Austria", 14.5, 47.6, allow),
            ("Poland", 19.0, 52.0, deny),
            ("United States", -98.0, 39.0, deny),
            ("Brazil", -52.0, -10.0, deny),
            ("France", 2.5, 46.5, deny),
            ("the Atlantic", -40.0, 30.0, rgb("#eaf2fa")),
        ] {
            let got = at(lon, lat);
            assert!(near(got, want), "{name}: {got:?}, expected {want:?}");
        }
        srv.stop().await;
    })
    .await;
}

#[test]
fn map_and_diff_map_write_svg_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let svg = tmp.path().join("a.svg");
    let o = Command::new(env!("CARGO_BIN_EXE_regiongate"))
        .args([
            "map",
            "--track",
            TRACK,
            "--at",
            AT,
            "--out",
            svg.to_str().expect("p"),
            "--json",
        ])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["playable"], serde_json::json!(["AT", "CH", "DE", "LI"]));
    let text = std::fs::read_to_string(&svg).expect("svg");
    assert!(text.contains(r#"<path id="t-CH" class="allow""#));

    // diff --map: the new data licenses the Alpenglow release in FR too.
    let regions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regions");
    let mk = |name: &str, extra: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(d.join("licenses")).expect("mkdir");
        for f in ["countries.geojson.gz", "groups.toml"] {
            std::fs::copy(regions.join(f), d.join(f)).expect("copy");
        }
        std::fs::write(
            d.join("licenses/l.toml"),
            format!(
                "[[track]]\nid = \"T\"\n[[dealset]]\nselector = {{ track = \"T\" }}\nupdated = \"2025-01-01\"\n\
                 deals = [{{ id = \"d\", territories = [\"DE\", \"US\"{extra}], start = \"2024-01-01\", uses = [\"on_demand_stream\"] }}]\n"
            ),
        )
        .expect("write");
        d
    };
    let (old, new) = (mk("old", ""), mk("new", ", \"FR\""));
    std::fs::write(
        new.join("licenses/l.toml"),
        std::fs::read_to_string(new.join("licenses/l.toml"))
            .expect("r")
            .replace("\"US\", ", ""),
    )
    .expect("write");
    let map = tmp.path().join("diff.svg");
    let o = Command::new(env!("CARGO_BIN_EXE_regiongate"))
        .args([
            "diff",
            old.to_str().expect("p"),
            new.to_str().expect("p"),
            "--at",
            AT,
            "--map",
            map.to_str().expect("p"),
        ])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&map).expect("svg");
    assert!(
        text.contains(r#"<path id="t-FR" class="gained""#),
        "FR gained"
    );
    assert!(text.contains(r#"<path id="t-US" class="lost""#), "US lost");
    assert!(
        text.contains(r#"<path id="t-DE" class="unchanged""#),
        "DE kept"
    );
}
