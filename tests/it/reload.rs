//! Reload triggers on the real binary: the file watcher (editor write-rename, `mv` into place,
//! a Kubernetes ConfigMap `..data` symlink swap), SIGHUP, and a broken file that is rejected
//! while the old data keeps answering.

use crate::util::{RUST_LOG_WARN_AND_START_UP, collection, spawn_serving, square_feature};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn licence(territory: &str) -> String {
    format!(
        "[[dealset]]\nselector = {{ track = \"T1\" }}\nupdated = \"2025-01-01\"\ndeals = [{{ id = \"d\", territories = [\"{territory}\"], start = \"2020-01-01\", uses = [\"on_demand_stream\"] }}]\n"
    )
}

fn write_version(dir: &Path, territory: &str) {
    std::fs::create_dir_all(dir.join("licenses")).expect("mkdir");
    std::fs::write(
        dir.join("countries.geojson"),
        collection(&[
            square_feature("DE", 0.0, 0.0, 10.0),
            square_feature("FR", 10.0, 0.0, 10.0),
        ]),
    )
    .expect("write");
    std::fs::write(dir.join("licenses/l.toml"), licence(territory)).expect("write");
}

/// Writes `text` to `path` the way editors do: a temporary file renamed over the old one.
fn write_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

struct Server {
    child: Child,
    port: u16,
    admin: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(regions: &Path) -> Server {
    // Ports picked by the kernel at the bind, read from the start-up line.
    let (child, port, admin) = spawn_serving(
        Command::new(env!("CARGO_BIN_EXE_regiongate"))
            .args(["serve", "--regions", regions.to_str().expect("path")])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("RUST_LOG", RUST_LOG_WARN_AND_START_UP)
            .stdout(Stdio::null()),
        Duration::from_secs(20),
    );
    let s = Server { child, port, admin };
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(s.admin, "/readyz").is_none() {
        assert!(Instant::now() < deadline, "server did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // A GPS hint places the listener: the data directory has no IP database.
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nGeo-Hint: gps=5,5;acc=10;ts={ts}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Whether T1 is playable in DE (the point 5,5), asked through the preflight API.
fn playable(s: &Server) -> bool {
    get(s.port, "/v1/tracks/T1/playability")
        .expect("answer")
        .contains("\"playable\":true")
}

fn version(s: &Server) -> String {
    let r = get(s.admin, "/readyz").expect("readyz");
    r.split("\"version\":\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .expect("version")
        .to_owned()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watcher_sighup_and_broken_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    write_version(&dir, "DE");
    let s = start(&dir);
    assert!(playable(&s));
    let v0 = version(&s);

    // Editor write-rename: the watcher reloads.
    write_rename(&dir.join("licenses/l.toml"), &licence("FR"));
    wait_until("watcher reload after write-rename", || !playable(&s));
    assert_ne!(version(&s), v0);

    // `mv` of a new file into place.
    let staged = tmp.path().join("staged.toml");
    std::fs::write(&staged, licence("DE")).expect("write");
    std::fs::rename(&staged, dir.join("licenses/l.toml")).expect("mv");
    wait_until("watcher reload after mv", || playable(&s));
    let good = version(&s);

    // A broken file is rejected; the old data keeps answering, and readiness holds.
    write_rename(
        &dir.join("licenses/l.toml"),
        "[[dealset]]\nselector = { track = \"T1\" }\nupdated = \"2025-01-01\"\ndeals = [{ id = \"d\", territories = [\"ATLANTIS\"], start = \"2020-01-01\", uses = [\"on_demand_stream\"] }]\n",
    );
    wait_until("failed reload recorded", || {
        get(s.admin, "/admin/snapshot")
            .is_some_and(|r| r.contains("\"result\":\"failed\"") && r.contains("ATLANTIS"))
    });
    assert!(playable(&s), "still the last good data");
    assert_eq!(version(&s), good);
    assert!(
        get(s.admin, "/readyz")
            .expect("readyz")
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        get(s.admin, "/metrics")
            .expect("metrics")
            .contains("regiongate_reloads_total{result=\"failed\"}")
    );

    // SIGHUP reloads too: fix the file with the watcher's help disabled by timing: change and
    // signal at once, then the answer must follow.
    write_rename(&dir.join("licenses/l.toml"), &licence("FR"));
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    wait_until("reload after SIGHUP", || !playable(&s));
    let last = get(s.admin, "/admin/snapshot").expect("snapshot");
    assert!(last.contains("\"result\":\"ok\""), "{last}");
}

#[test]
fn configmap_symlink_swap() {
    // The layout of a Kubernetes ConfigMap volume: files are symlinks into `..data`, itself a
    // symlink to a timestamped directory; an update writes a new directory and renames a new
    // `..data` link over the old one.
    let tmp = tempfile::tempdir().expect("tmp");
    let vol = tmp.path().join("volume");
    std::fs::create_dir_all(&vol).expect("mkdir");
    write_version(&vol.join("..2026_01_01_v1"), "DE");
    std::os::unix::fs::symlink("..2026_01_01_v1", vol.join("..data")).expect("link");
    std::os::unix::fs::symlink("..data/countries.geojson", vol.join("countries.geojson"))
        .expect("link");
    std::os::unix::fs::symlink("..data/licenses", vol.join("licenses")).expect("link");
    let s = start(&vol);
    assert!(playable(&s));
    write_version(&vol.join("..2026_01_02_v2"), "FR");
    std::os::unix::fs::symlink("..2026_01_02_v2", vol.join("..data_tmp")).expect("link");
    std::fs::rename(vol.join("..data_tmp"), vol.join("..data")).expect("swap");
    wait_until("reload after the ..data swap", || !playable(&s));
}

#[test]
fn symlinked_directory_swap_is_followed() {
    // The object-storage sync pattern: `--regions current` where `current` links to one
    // release directory and is swapped atomically (`ln -sfn` + `mv -T`) to the next. The
    // watcher must see the swap, and keep seeing changes in whichever release is current.
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    write_version(&root.join("releases/v1"), "DE");
    write_version(&root.join("releases/v2"), "FR");
    write_version(&root.join("releases/v3"), "DE");
    let swap = |to: &str| {
        std::os::unix::fs::symlink(to, root.join("current.tmp")).expect("link");
        std::fs::rename(root.join("current.tmp"), root.join("current")).expect("swap");
    };
    swap("releases/v1");
    let s = start(&root.join("current"));
    assert!(playable(&s));
    swap("releases/v2");
    wait_until("reload after the first swap", || !playable(&s));
    swap("releases/v3");
    wait_until("reload after the second swap", || playable(&s));
    // An edit inside the release now current (v3) is seen: the watch moved with the link.
    write_rename(&root.join("releases/v3/licenses/l.toml"), &licence("FR"));
    wait_until("reload after an edit in the new release", || !playable(&s));
    // An edit in a release no longer current changes nothing that is served.
    write_rename(&root.join("releases/v1/licenses/l.toml"), &licence("DE"));
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        !playable(&s),
        "an edit in an old release must not change the answer"
    );
}

/// Asks whether T1 is playable with a `Wifi-Hint` (no GPS hint), through the preflight API.
fn wifi_answer(s: &Server, hint: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        c,
        "GET /v1/tracks/T1/playability HTTP/1.1\r\nHost: x\r\nWifi-Hint: {hint}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    out
}

/// The access-point database is data like the rest: hot-reloaded by the watcher, checked by
/// `validate` and on reload (file, line and reason, never the row's values), and a broken file
/// leaves the last good access points serving.
#[test]
fn wifi_access_points_reload_and_broken_rows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    write_version(&dir, "DE");
    std::fs::create_dir_all(dir.join("wifi")).expect("mkdir");
    let aps = |lon: f64| {
        format!(
            "bssid,lat,lon,range_m\n00:00:5e:00:53:01,5.0,{lon},80\n00:00:5e:00:53:02,5.0003,{lon},80\n"
        )
    };
    std::fs::write(dir.join("wifi/aps.csv"), aps(5.0)).expect("write");
    let s = start(&dir);
    let hint = "00:00:5e:00:53:01@-50, 00005E005302@-60";
    let a = wifi_answer(&s, hint);
    assert!(
        a.contains("\"playable\":true") && a.contains("\"source\":\"wifi\""),
        "{a}"
    );
    // One access point alone gives no WiFi evidence (and this directory has no IP database).
    let one = wifi_answer(&s, "00:00:5e:00:53:01@-50");
    assert!(one.contains("\"reason\":\"location_unknown\""), "{one}");

    // The access points move to FR: the watcher reloads, and the answer follows.
    write_rename(&dir.join("wifi/aps.csv"), &aps(15.0));
    wait_until("watcher reload of wifi/aps.csv", || {
        let a = wifi_answer(&s, hint);
        a.contains("\"playable\":false") && a.contains("\"territory\":\"FR\"")
    });
    let good = version(&s);

    // A broken row: refused, named by file and line, its value not echoed.
    let broken = format!("{}00:00:5e:00:53:0g,5.0,5.0,80\n", aps(15.0));
    write_rename(&dir.join("wifi/aps.csv"), &broken);
    wait_until("failed reload recorded", || {
        get(s.admin, "/admin/snapshot").is_some_and(|r| {
            r.contains("\"result\":\"failed\"")
                && r.contains("wifi/aps.csv")
                && r.contains("line 4")
        })
    });
    let snap = get(s.admin, "/admin/snapshot").expect("snapshot");
    assert!(
        !snap.to_ascii_lowercase().contains("5e:00:53"),
        "no access point address in the report: {snap}"
    );
    assert_eq!(version(&s), good, "still the last good data");
    let a = wifi_answer(&s, hint);
    assert!(a.contains("\"territory\":\"FR\""), "{a}");

    // `validate` says the same, with a failing exit status.
    let out = Command::new(env!("CARGO_BIN_EXE_regiongate"))
        .args(["validate", dir.to_str().expect("path")])
        .output()
        .expect("validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("wifi/aps.csv") && text.contains("line 4") && text.contains("bssid"),
        "{text}"
    );
    assert!(!text.to_ascii_lowercase().contains("53:0g"), "{text}");
}
