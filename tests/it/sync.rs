//! The object-storage sync pattern of `deploy/sync/s3-sync.sh` against the real binary's
//! reload watcher. A plain directory plays the bucket: the script publishes versioned releases
//! into it, then syncs them into `<dest>/releases/<version>/`, verifies them and swaps the
//! `<dest>/current` link (`ln -sfn` + `mv -T`), as the Kubernetes sidecar does. The server,
//! started once on `--regions <dest>/current`, follows every swap with no failed request
//! meanwhile; a release that fails verification never reaches it.
//!
//! Also: the configuration files shipped in `deploy/` (Kubernetes, systemd) load.

use crate::util::{RUST_LOG_WARN_AND_START_UP, collection, spawn_serving, square_feature};
use regiongate::config::{Config, Overrides};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/sync/s3-sync.sh");
const BIN: &str = env!("CARGO_BIN_EXE_regiongate");

/// A complete small data directory: countries DE (0..10, 0..10) and FR (10..20, 0..10), and
/// a licence for track T1 in `territories` (TOML array items, e.g. `"DE", "FR"`).
fn write_release(dir: &Path, territories: &str) {
    std::fs::create_dir_all(dir.join("licenses")).expect("mkdir");
    std::fs::write(
        dir.join("countries.geojson"),
        collection(&[
            square_feature("DE", 0.0, 0.0, 10.0),
            square_feature("FR", 10.0, 0.0, 10.0),
        ]),
    )
    .expect("write");
    std::fs::write(
        dir.join("licenses/l.toml"),
        format!(
            "[[dealset]]\nselector = {{ track = \"T1\" }}\nupdated = \"2025-01-01\"\ndeals = [{{ id = \"d\", territories = [{territories}], start = \"2020-01-01\", uses = [\"on_demand_stream\"] }}]\n"
        ),
    )
    .expect("write");
}

/// What one run of the script did.
struct Run {
    ok: bool,
    stderr: String,
}

/// The script with a bucket directory as SOURCE and a local DEST.
struct SyncScript {
    work: PathBuf,
    bucket: PathBuf,
    dest: PathBuf,
}

impl SyncScript {
    /// Runs `s3-sync.sh ARGS` with extra environment, killed if it takes over 60 s.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self.work.join("script.out");
        let err = self.work.join("script.err");
        let mut cmd = Command::new("bash");
        cmd.arg(SCRIPT)
            .args(args)
            .env("SOURCE", format!("file://{}", self.bucket.display()))
            .env("DEST", &self.dest)
            .env("KEEP", "2")
            .env("VALIDATE", "always")
            .env("REGIONGATE_BIN", BIN)
            .env_remove("VERSION")
            .env_remove("RELOAD_CMD")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("bash runs the script");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3-sync.sh {args:?} ran over 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            ok: status.success(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        }
    }

    /// Publishes `dir` as `version` (the producer's side).
    fn publish(&self, dir: &Path, version: &str, validate: bool) {
        let r = self.run(
            &["publish", dir.to_str().expect("path"), version],
            &[("VALIDATE", if validate { "always" } else { "never" })],
        );
        assert!(r.ok, "publish {version} failed:\n{}", r.stderr);
    }

    /// One sync pass (the sidecar's step).
    fn sync(&self, env: &[(&str, &str)]) -> Run {
        self.run(&["sync"], env)
    }

    /// The release `<dest>/current` points at.
    fn current(&self) -> String {
        std::fs::read_link(self.dest.join("current"))
            .expect("current is a link")
            .to_string_lossy()
            .into_owned()
    }

    /// The outcome of the last pass (`<dest>/sync-status`).
    fn status(&self) -> String {
        std::fs::read_to_string(self.dest.join("sync-status")).expect("status file")
    }

    /// The local releases, sorted.
    fn releases(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dest.join("releases"))
            .expect("releases/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
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

/// A plain HTTP/1.1 answer.
struct Answer {
    status: u16,
    version: Option<String>,
    body: String,
}

/// GET with a Geo-Hint at (5, 5), in DE (the data has no IP database), bounded by 5 s.
fn get(port: u16, path: &str) -> Result<Answer, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nGeo-Hint: gps=5,5;acc=10;ts={ts}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {out:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let version = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-regiongate-version")
            .then(|| v.trim().to_owned())
    });
    Ok(Answer {
        status,
        version,
        body: body.to_owned(),
    })
}

/// Whether T1 is playable in DE, and the data version that answered, from the public
/// listener on `port`.
fn ask(port: u16) -> Result<(bool, String), String> {
    let a = get(port, "/v1/tracks/T1/playability")?;
    if a.status != 200 || !a.body.contains("\"decision\"") {
        return Err(format!("status {}: {}", a.status, a.body));
    }
    let version = a.version.ok_or("no X-Regiongate-Version header")?;
    Ok((a.body.contains("\"playable\":true"), version))
}

fn admin_text(s: &Server, path: &str) -> String {
    let a = get(s.admin, path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    a.body
}

fn start(regions: &Path) -> Server {
    // Ports picked by the kernel at the bind, read from the start-up line.
    let (child, port, admin) = spawn_serving(
        Command::new(BIN)
            .args(["serve", "--regions", regions.to_str().expect("path")])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("RUST_LOG", RUST_LOG_WARN_AND_START_UP)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
        Duration::from_secs(20),
    );
    let s = Server { child, port, admin };
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(s.admin, "/readyz").is_err() {
        assert!(Instant::now() < deadline, "server did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

/// Waits (at most 15 s) until the server answers `playable` from a version not in `old`, and
/// returns that version.
fn wait_for(s: &Server, what: &str, playable: bool, old: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = ask(s.port);
        if let Ok((p, v)) = &now
            && *p == playable
            && !old.contains(&v.as_str())
        {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what} (last answer {now:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Requests on a loop until stopped (at most 180 s): every answer must be a decision.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, Vec<String>)>>,
    versions: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let versions = Arc::new(Mutex::new(Vec::new()));
        let (stop2, versions2) = (stop.clone(), versions.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(180);
            let (mut ok, mut failures) = (0u64, Vec::new());
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match ask(port) {
                    Ok((_, v)) => {
                        ok += 1;
                        let mut seen = versions2.lock().expect("lock");
                        if !seen.contains(&v) {
                            seen.push(v);
                        }
                    }
                    Err(e) => failures.push(e),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failures)
        });
        Load {
            stop,
            thread: Some(thread),
            versions,
        }
    }

    /// Waits (at most 15 s) until the loop has had an answer from data version `v`.
    fn wait_seen(&self, v: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.versions.lock().expect("lock").iter().any(|s| s == v) {
            assert!(
                Instant::now() < deadline,
                "the load never got an answer from {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the loop; the number of good answers and the failures.
    fn finish(mut self) -> (u64, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let (ok, failures) = self
            .thread
            .take()
            .expect("running")
            .join()
            .expect("the load thread did not panic");
        let versions = self.versions.lock().expect("lock").clone();
        (ok, failures, versions)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn failed_reloads(s: &Server) -> String {
    admin_text(s, "/metrics")
        .lines()
        .find(|l| l.starts_with("regiongate_reloads_total{result=\"failed\"}"))
        .expect("the failed-reload counter is exported")
        .to_owned()
}

#[test]
fn object_storage_sync_swaps_releases_under_the_watcher() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sync = SyncScript {
        work: tmp.path().to_owned(),
        bucket: tmp.path().join("bucket"),
        dest: tmp.path().join("dest"),
    };
    let src = |name: &str| tmp.path().join("src").join(name);

    // v1: T1 licensed in DE. Published, synced, then the server starts on <dest>/current.
    write_release(&src("v1"), "\"DE\"");
    sync.publish(&src("v1"), "v1", true);
    let r = sync.sync(&[]);
    assert!(r.ok, "first sync:\n{}", r.stderr);
    assert_eq!(sync.current(), "releases/v1");
    let s = start(&sync.dest.join("current"));
    let (playable, v1) = ask(s.port).expect("answer");
    assert!(playable, "v1 licenses T1 in DE");
    assert!(admin_text(&s, "/readyz").contains(&v1));
    let load = Load::start(s.port);
    load.wait_seen(&v1);

    // v2: the licence moves to FR. The swap is seen by the watcher: new answer, new version.
    write_release(&src("v2"), "\"FR\"");
    sync.publish(&src("v2"), "v2", true);
    let r = sync.sync(&[]);
    assert!(r.ok, "sync of v2:\n{}", r.stderr);
    assert_eq!(sync.current(), "releases/v2");
    let v2 = wait_for(&s, "v2 served after the swap", false, &[&v1]);
    load.wait_seen(&v2);
    assert!(admin_text(&s, "/readyz").contains(&v2));
    assert!(
        admin_text(&s, "/metrics").contains(&format!(
            "regiongate_data_version_info{{data_version=\"{v2}\"}} 1"
        )),
        "the version metric follows"
    );

    // v3: a licence naming an unknown territory, published without validation (a producer
    // that skipped it). The sync's `regiongate validate` refuses it; v2 keeps serving.
    write_release(&src("v3"), "\"ATLANTIS\"");
    sync.publish(&src("v3"), "v3", false);
    let r = sync.sync(&[]);
    assert!(!r.ok, "a broken release must fail the pass:\n{}", r.stderr);
    assert!(
        r.stderr.contains("regiongate validate refused") && r.stderr.contains("ATLANTIS"),
        "{}",
        r.stderr
    );
    assert_eq!(sync.current(), "releases/v2");
    assert_eq!(
        sync.releases(),
        ["v1", "v2"],
        "no v3, no download left over"
    );
    let status = sync.status();
    for line in [
        "result=failed",
        "wanted=v3",
        "served=v2",
        &format!("data_version={v2}"),
    ] {
        assert!(status.lines().any(|l| l == line), "{line} in {status}");
    }

    // v4: a good release damaged in the bucket after publishing: the checksums refuse it.
    write_release(&src("v4"), "\"DE\", \"FR\"");
    sync.publish(&src("v4"), "v4", true);
    let damaged = sync.bucket.join("releases/v4/licenses/l.toml");
    let mut text = std::fs::read_to_string(&damaged).expect("read");
    text.push_str("# changed after publishing\n");
    std::fs::write(&damaged, text).expect("write");
    let r = sync.sync(&[]);
    assert!(!r.ok, "a damaged release must fail the pass:\n{}", r.stderr);
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert_eq!(sync.current(), "releases/v2");
    assert_eq!(sync.releases(), ["v1", "v2"]);
    // Neither refused release ever reached the server: same version, no failed reload.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(ask(s.port).expect("answer"), (false, v2.clone()));
    assert_eq!(
        failed_reloads(&s),
        "regiongate_reloads_total{result=\"failed\"} 0"
    );

    // Roll back by pinning a version: the local copy of v1 is checked again and swapped in.
    let r = sync.sync(&[("VERSION", "v1")]);
    assert!(r.ok, "rollback to v1:\n{}", r.stderr);
    assert!(r.stderr.contains("is here already"), "{}", r.stderr);
    assert_eq!(sync.current(), "releases/v1");
    let back = wait_for(&s, "v1 served again after the rollback", true, &[&v2]);
    assert_eq!(back, v1, "the same content is the same version");

    // v5 (DE and FR) from LATEST; KEEP=2 prunes v2, the least recently served.
    write_release(&src("v5"), "\"DE\", \"FR\"");
    sync.publish(&src("v5"), "v5", true);
    let r = sync.sync(&[]);
    assert!(r.ok, "sync of v5:\n{}", r.stderr);
    let v5 = wait_for(&s, "v5 served", true, &[&v1, &v2]);
    load.wait_seen(&v5);
    assert_eq!(sync.releases(), ["v1", "v5"]);

    // Through all of it, every request got a decision, from each version in turn.
    let (ok, failures, versions) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(3)]
    );
    assert!(ok >= 20, "only {ok} requests were made");
    // And only ever from the three good releases: no other data version (a snapshot mixing
    // two releases would hash differently) was served.
    let (mut seen, mut good) = (versions, vec![v1, v2, v5.clone()]);
    seen.sort();
    good.sort();
    assert_eq!(seen, good, "data versions answered during the test");
    assert_eq!(
        failed_reloads(&s),
        "regiongate_reloads_total{result=\"failed\"} 0"
    );
    // The status file names the release and the data version the server reports for it.
    let status = sync.status();
    for line in ["result=ok", "served=v5", &format!("data_version={v5}")] {
        assert!(status.lines().any(|l| l == line), "{line} in {status}");
    }
}

/// The configuration files in deploy/ load: the container image's own (embedded data, no
/// token), and those that name a data directory and an admin token file (a Secret mount or a
/// systemd credential, replaced here by a real file).
#[test]
fn deploy_config_files_load() {
    let image = Config::load(
        Some(include_str!("../../deploy/docker/regiongate.toml")),
        |_| None,
        Overrides::default(),
    )
    .unwrap_or_else(|e| panic!("deploy/docker/regiongate.toml does not load: {e}"));
    assert_eq!(image.regions, None, "the image serves the embedded data");
    assert_eq!(
        (image.listen.port(), image.admin_listen.port()),
        (8080, 9090),
        "the ports the Dockerfile exposes and the healthcheck asks"
    );
    assert!(!image.listen.ip().is_loopback() && !image.admin_listen.ip().is_loopback());

    let tmp = tempfile::tempdir().expect("tmp");
    let token = tmp.path().join("token");
    std::fs::write(&token, "a-test-token-of-32-characters-xx\n").expect("write");
    let files = [
        (
            "deploy/k8s/regiongate.toml",
            include_str!("../../deploy/k8s/regiongate.toml"),
            "/usr/share/regiongate/regions",
        ),
        (
            "deploy/k8s/s3-sync/regiongate.toml",
            include_str!("../../deploy/k8s/s3-sync/regiongate.toml"),
            "/var/lib/regiongate/current",
        ),
        (
            "deploy/systemd/regiongate.toml",
            include_str!("../../deploy/systemd/regiongate.toml"),
            "/var/lib/regiongate/current",
        ),
    ];
    for (name, text, regions) in files {
        let line = text
            .lines()
            .find(|l| l.starts_with("token_file"))
            .unwrap_or_else(|| panic!("{name} sets token_file"));
        let text = text.replace(line, &format!("token_file = {:?}", token.display()));
        let c = Config::load(Some(&text), |_| None, Overrides::default())
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        assert_eq!(
            c.regions.as_deref(),
            Some(Path::new(regions)),
            "{name}: regions"
        );
        assert!(c.watch, "{name}: hot reload");
        assert_eq!(
            c.admin_token.as_deref(),
            Some("a-test-token-of-32-characters-xx"),
            "{name}"
        );
        assert_eq!(c.admin_listen.port(), 9090, "{name}: the probes' port");
    }
}
