//! dbsync as a system service: the systemd notification protocol spoken by
//! the real daemon (READY, WATCHDOG, RELOADING, STOPPING), the unit file as
//! systemd itself judges it, the Debian package, the example configs, and
//! `dbsync secret`.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Daemon, Env};

const BIN: &str = env!("CARGO_BIN_EXE_dbsync");
const UNIT: &str = "deploy/systemd/dbsync.service";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a tool that must be installed; a missing one fails with the install hint.
fn tool(cmd: &mut Command, hint: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}; {hint}", cmd.get_program()))
}

const SYSTEMD_HINT: &str =
    "systemd-analyze is missing: apt-get install -y systemd (.ci/run installs it)";

// ---------------------------------------------------------------- sd_notify

/// Starts `dbsync run` with systemd's notification variables.
fn spawn_notified(env: &Env, config: &Path, vars: &[(&str, &str)]) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.log_path())
        .unwrap();
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("DBSYNC_LOG", "info")
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawning dbsync");
    Daemon { child }
}

/// The next datagram, or None after `timeout`.
fn next(sock: &UnixDatagram, timeout: Duration) -> Option<String> {
    sock.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Reads datagrams until one satisfies `want`; panics with what came instead.
fn wait_for(sock: &UnixDatagram, env: &Env, what: &str, want: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(m) = next(sock, Duration::from_millis(500)) {
            if want(&m) {
                return m;
            }
            seen.push(m);
        }
    }
    panic!(
        "no {what} notification; got {seen:?}\n--- dbsync log ---\n{}",
        env.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tells_systemd_ready_watchdog_and_stopping() {
    let env = Env::new().await;
    env.source()
        .await
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let cfg = env.write_config("FULL_INCREMENTAL", "", &[]);

    // A socket path, and a watchdog every 0.5 s (WATCHDOG_USEC / 2).
    let path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let d = spawn_notified(
        &env,
        &cfg,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let ready = wait_for(&sock, &env, "READY=1", |m| m.contains("READY=1"));
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=running 1 ")),
        "{ready}"
    );
    let start = Instant::now();
    let mut pings = 0;
    while pings < 4 {
        wait_for(&sock, &env, "WATCHDOG=1", |m| m == "WATCHDOG=1");
        pings += 1;
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1000),
        "4 pings in {elapsed:?}: faster than every WATCHDOG_USEC/2"
    );
    // SIGHUP (the unit's ExecReload) re-reads the config: RELOADING=1 with
    // the monotonic time (Type=notify-reload's form), then READY=1 again.
    let hup = Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloading = wait_for(&sock, &env, "RELOADING=1", |m| {
        m.starts_with("RELOADING=1\n")
    });
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading}");
    wait_for(&sock, &env, "READY=1 after the reload", |m| {
        m.contains("READY=1")
    });
    assert_eq!(d.terminate(), Some(0), "clean exit:\n{}", env.log());
    // The process has exited: everything it sent is queued.
    let mut rest = Vec::new();
    while let Some(m) = next(&sock, Duration::from_millis(200)) {
        rest.push(m);
    }
    assert!(
        rest.iter().any(|m| m.lines().next() == Some("STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {rest:?}"
    );

    // An abstract socket, and a watchdog meant for another process
    // (WATCHDOG_PID): ready, but no pings.
    let name = format!(
        "dbsync-e2e-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    );
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    };
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    let d = spawn_notified(
        &env,
        &cfg,
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    wait_for(&sock, &env, "READY=1", |m| m.contains("READY=1"));
    let deadline = Instant::now() + Duration::from_millis(1500);
    while let Some(m) = next(&sock, deadline.saturating_duration_since(Instant::now())) {
        assert_ne!(m, "WATCHDOG=1", "pinged a watchdog meant for another pid");
        if Instant::now() >= deadline {
            break;
        }
    }
    assert_eq!(d.terminate(), Some(0), "clean exit:\n{}", env.log());
}

// ---------------------------------------------------------------- the unit

/// The unit with `/usr/bin/dbsync` replaced by the freshly built binary
/// (systemd-analyze checks that the commands exist), written to `dir`.
fn unit_copy(unit_text: &str, dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, unit_text.replace("/usr/bin/dbsync", BIN)).unwrap();
    p
}

fn verify(unit: &Path) -> Output {
    tool(
        Command::new("systemd-analyze").arg("verify").arg(unit),
        SYSTEMD_HINT,
    )
}

fn directive<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_unit_passes_systemd_analyze_verify_without_a_warning() {
    let unit = std::fs::read_to_string(repo().join(UNIT)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = unit_copy(&unit, dir.path(), "dbsync.service");
    let out = verify(&copy);
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "systemd-analyze verify {UNIT}:\n{}",
        text(&out)
    );
    // The same check does see a mistake.
    let typo = unit_copy(
        &unit.replace("ProtectSystem=", "ProtectSystm="),
        dir.path(),
        "typo.service",
    );
    assert!(text(&verify(&typo)).contains("ProtectSystm"));

    // What the service relies on.
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30"),
        (
            "ExecStartPre",
            "/usr/bin/dbsync check --config /etc/dbsync/dbsync.toml",
        ),
        (
            "ExecStart",
            "/usr/bin/dbsync run --config /etc/dbsync/dbsync.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
        ("User", "dbsync"),
        ("Group", "dbsync"),
        ("StateDirectory", "dbsync"),
        ("ConfigurationDirectory", "dbsync"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
    ] {
        assert_eq!(directive(&unit, key), Some(want), "{key}= in {UNIT}");
    }
    assert!(directive(&unit, "LimitNOFILE").is_some());
    // The stop timeout leaves room for the default drain.
    let stop: u64 = directive(&unit, "TimeoutStopSec").unwrap().parse().unwrap();
    let drain = engine::config::DaemonConfig::default().drain_timeout_secs;
    assert!(
        stop > drain && stop <= drain + 30,
        "TimeoutStopSec={stop}, drain {drain}"
    );
    // The data_dir of the examples is the StateDirectory.
    assert!(unit.contains("StateDirectory=dbsync"));

    // systemd's own exposure score stays low.
    let out = tool(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&copy),
        SYSTEMD_HINT,
    );
    let report = text(&out);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for dbsync.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score:\n{report}"));
    assert!(score <= 2.0, "exposure {score} (was 1.5):\n{report}");
}

// ---------------------------------------------------------------- configs

#[test]
fn the_example_configs_parse_and_pass_the_config_check() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["dbsync.toml", "dbsync-fleet.toml"] {
        let path = repo().join("deploy/config").join(name);
        let cfg = engine::config::Config::load(&path)
            .unwrap_or_else(|e| panic!("deploy/config/{name}: {e}"));
        assert_eq!(cfg.daemon.data_dir, Path::new("/var/lib/dbsync"), "{name}");
        // `dbsync check` on a copy whose data_dir is a temporary directory:
        // the config is valid (exit 2 would be a config error).
        let original = std::fs::read_to_string(&path).unwrap();
        let data = dir.path().join(name).with_extension("data");
        let copy = dir.path().join(name);
        std::fs::write(
            &copy,
            original.replace(
                "data_dir = \"/var/lib/dbsync\"",
                &format!("data_dir = \"{}\"", data.display()),
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&copy)
            .env_remove("DBSYNC_METASTORE_PASSWORD")
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(2), "{name}:\n{}", text(&out));
        assert!(
            text(&out).contains("ok   config: valid"),
            "{name}:\n{}",
            text(&out)
        );
    }
    let fleet =
        engine::config::Config::load(&repo().join("deploy/config/dbsync-fleet.toml")).unwrap();
    assert!(
        fleet.tasks.is_empty(),
        "the fleet example keeps tasks in the database"
    );
    let m = fleet.metastore.expect("[metastore]");
    assert_eq!(
        m.secret_key_file.as_deref(),
        Some(Path::new("/etc/dbsync/secret.key"))
    );
    assert!(m.password_env.is_some() && !m.auto_migrate);
    // Every field is shown, so the example documents them all.
    let text = std::fs::read_to_string(repo().join("deploy/config/dbsync-fleet.toml")).unwrap();
    for field in [
        "url",
        "password_env",
        "secret_key_file",
        "node_id",
        "lease_ttl_secs",
        "poll_interval_secs",
        "auto_migrate",
        "[metastore.pool]",
        "max_connections",
        "min_connections",
        "acquire_timeout_ms",
        "idle_timeout_secs",
        "max_lifetime_secs",
    ] {
        assert!(
            text.contains(field),
            "dbsync-fleet.toml does not show {field}"
        );
    }
}

// ---------------------------------------------------------------- secrets

/// `dbsync secret …` with `stdin` piped in.
fn secret(args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(BIN)
        .arg("secret")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn secret_commands_encrypt_from_stdin_and_never_print_the_password() {
    use std::os::unix::fs::PermissionsExt;
    let pw = "S3cr3t-pw-42 with spaces";
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secret.key");
    let k = key.to_str().unwrap();

    let (code, _, err) = secret(&["keygen", "--out", k], "");
    assert_eq!(code, Some(0), "{err}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = secret(&["keygen", "--out", k], "");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key was overwritten"
    );

    let (code, out, err) = secret(&["encrypt", "--key-file", k], &format!("{pw}\n"));
    assert_eq!(code, Some(0), "{err}");
    let stored = out.trim();
    assert!(
        stored.starts_with("enc:v1:") && !out.contains(pw) && !err.contains(pw),
        "{out}{err}"
    );
    // It is what the daemon will decrypt.
    let sk = metastore::secrets::SecretKey::load(&key).unwrap();
    assert_eq!(sk.decrypt(stored).unwrap().expose(), pw);

    let (code, out, err) = secret(&["decrypt-check", "--key-file", k], &out);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("OK") && !out.contains(pw) && !err.contains(pw),
        "{out}{err}"
    );

    // Another key, a plain-text value, a tampered one: why not, and no value echoed.
    let other = dir.path().join("other.key");
    secret(&["keygen", "--out", other.to_str().unwrap()], "");
    let (code, out, err) = secret(
        &["decrypt-check", "--key-file", other.to_str().unwrap()],
        stored,
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("wrong secret key file") && !err.contains(stored),
        "{out}{err}"
    );
    let (code, _, err) = secret(&["decrypt-check", "--key-file", k], pw);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("dbsync secret encrypt") && !err.contains(pw),
        "{err}"
    );
    let tampered = format!("{}A{}", &stored[..20], &stored[21..]);
    let (code, _, err) = secret(&["decrypt-check", "--key-file", k], &tampered);
    assert_eq!(code, Some(1), "{err}");

    // Several lines or nothing: refused.
    let (code, out, err) = secret(&["encrypt", "--key-file", k], "a\nb\n");
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    let (code, _, err) = secret(&["encrypt", "--key-file", k], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("no password"), "{err}");

    // A key file others can read is refused with the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = secret(&["encrypt", "--key-file", k], pw);
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(err.contains(&format!("chmod 600 {k}")), "{err}");
}

// ---------------------------------------------------------------- package

/// Packages the binary the tests use (`cargo deb --no-build` over a private
/// target directory holding it as the release build; a real package is plain
/// `cargo deb`) and inspects the result.
#[test]
fn the_debian_package_holds_binary_unit_config_and_user_setup() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(BIN, target.join("release/dbsync")).unwrap();
    let debs = dir.path().join("debs");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &target)
        .args(["deb", "--no-build", "--fast", "--output"])
        .arg(format!("{}/", debs.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb failed (install it with `cargo install cargo-deb --locked`; .ci/run does):\n{}",
        text(&out)
    );
    let version = env!("CARGO_PKG_VERSION");
    let deb = debs.join(format!("dbsync_{version}-1_amd64.deb"));
    let dbgsym = debs.join(format!("dbsync-dbgsym_{version}-1_amd64.ddeb"));
    assert!(deb.is_file() && dbgsym.is_file(), "{}", text(&out));
    let dpkg = |args: &[&str]| {
        let out = tool(
            Command::new("dpkg-deb").args(args).arg(&deb),
            "dpkg-deb comes with dpkg",
        );
        assert!(out.status.success(), "dpkg-deb {args:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listing = dpkg(&["-c"]);
    for (path, mode) in [
        ("./usr/bin/dbsync", "-rwxr-xr-x"),
        ("./usr/lib/systemd/system/dbsync.service", "-rw-r--r--"),
        ("./etc/dbsync/dbsync.toml", "-rw-r-----"),
        (
            "./usr/share/doc/dbsync/examples/dbsync-fleet.toml",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/dbsync/README.md", "-rw-r--r--"),
        ("./usr/share/doc/dbsync/copyright", "-rw-r--r--"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        assert!(line.starts_with(mode), "{line}");
        assert!(
            line.contains(" 0/0 ") || line.contains("root/root"),
            "{line}"
        );
    }
    let depends = dpkg(&["-f"]);
    let depends = depends
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{depends}"));
    assert!(
        depends.contains("adduser") && depends.contains("librocksdb"),
        "{depends}"
    );

    let control = dir.path().join("control");
    let out = tool(
        Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control),
        "dpkg-deb comes with dpkg",
    );
    assert!(out.status.success(), "{}", text(&out));
    let read = |f: &str| std::fs::read_to_string(control.join(f)).unwrap_or_default();
    assert_eq!(read("conffiles").trim(), "/etc/dbsync/dbsync.toml");
    let postinst = read("postinst");
    assert!(postinst.contains("adduser --system") && postinst.contains("chmod 0750 /etc/dbsync"));
    assert!(
        postinst.contains("deb-systemd-helper enable dbsync.service")
            && !postinst.contains("#DEBHELPER#"),
        "systemd snippets not merged:\n{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start"),
        "starts before it is configured"
    );
    assert!(read("postrm").contains("deb-systemd-helper purge dbsync.service"));
    for script in ["postinst", "prerm", "postrm"] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(control.join(script))
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {}", text(&out));
    }

    // The packaged binary runs, and the packaged unit is the verified one.
    let root = dir.path().join("root");
    let out = tool(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "dpkg-deb comes with dpkg",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = Command::new(root.join("usr/bin/dbsync"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(text(&out).starts_with("dbsync "), "{}", text(&out));
    let sections = tool(
        Command::new("readelf")
            .args(["-S", "-W"])
            .arg(root.join("usr/bin/dbsync")),
        "readelf is missing: apt-get install -y binutils",
    );
    let sections = String::from_utf8_lossy(&sections.stdout);
    assert!(
        !sections.contains(".debug_info") && !sections.contains(".debug_line"),
        "the packaged binary still carries debug info (it belongs in dbsync-dbgsym)"
    );
    assert!(sections.contains(".gnu_debuglink"), "{sections}");
    assert_eq!(
        std::fs::read_to_string(root.join("usr/lib/systemd/system/dbsync.service")).unwrap(),
        std::fs::read_to_string(repo().join(UNIT)).unwrap()
    );
}
