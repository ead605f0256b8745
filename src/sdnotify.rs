//! systemd's service notification protocol (`sd_notify(3)`), spoken directly
//! over a Unix datagram socket: no libsystemd.
//!
//! Under `Type=notify` systemd passes `NOTIFY_SOCKET` (a path, or an abstract
//! socket written `@name`); each datagram holds newline-separated `KEY=value`
//! assignments. dbsync sends `READY=1` once it serves and its tasks run,
//! `STATUS=…` for `systemctl status`, `STOPPING=1` when it starts draining, and
//! `RELOADING=1` with `MONOTONIC_USEC` when it re-reads its config (the form
//! `Type=notify-reload` expects). With `WatchdogSec=` systemd also passes
//! `WATCHDOG_USEC` (and maybe `WATCHDOG_PID`): [`Notifier::start_watchdog`]
//! then sends `WATCHDOG=1` every half of it from its own thread, but only
//! while a liveness check passes, so a wedged daemon stops pinging and
//! systemd restarts it. [`runtime_liveness`] is such a check: it fails when
//! the Tokio runtime stops running tasks.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

/// A connection to systemd's notification socket. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// The last `STATUS=` sent, restored when the watchdog recovers.
    status: Mutex<String>,
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET`; `None` when it is unset (not started
    /// by systemd with `Type=notify`) or unusable (logged).
    pub fn from_env() -> Option<Self> {
        let value = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|v| !v.is_empty())?;
        match Self::connect(&value) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(error = %e, "NOTIFY_SOCKET is set but unusable: systemd will not hear from dbsync");
                None
            }
        }
    }

    /// A notifier sending to `socket`: an absolute path, or `@name` for an
    /// abstract socket.
    pub fn connect(socket: &str) -> io::Result<Self> {
        let addr = parse_address(socket)?;
        let sock = UnixDatagram::unbound()?;
        // Never block the async runtime on a full socket queue.
        sock.set_nonblocking(true)?;
        Ok(Self {
            inner: Arc::new(Inner {
                socket: sock,
                addr,
                status: Mutex::new(String::new()),
            }),
        })
    }

    /// Sends one datagram of `KEY=value` lines.
    fn send(&self, state: &str) -> io::Result<()> {
        self.inner
            .socket
            .send_to_addr(state.as_bytes(), &self.inner.addr)
            .map(drop)
    }

    fn notify(&self, state: &str) {
        match self.send(state) {
            Ok(()) => debug!(state, "notified systemd"),
            Err(e) => warn!(error = %e, state, "cannot notify systemd"),
        }
    }

    fn remember(&self, status: &str) -> String {
        let line = one_line(status);
        *self
            .inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = line.clone();
        line
    }

    /// `READY=1`: start-up is complete; `status` is shown by `systemctl status`.
    pub fn ready(&self, status: &str) {
        let status = self.remember(status);
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `STATUS=…`: a one-line status for `systemctl status`.
    pub fn status(&self, status: &str) {
        let status = self.remember(status);
        self.notify(&format!("STATUS={status}"));
    }

    /// `STOPPING=1`: shutdown has begun (in-flight batches drain).
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping: draining in-flight batches");
    }

    /// `RELOADING=1` with the current `CLOCK_MONOTONIC` time, as
    /// `Type=notify-reload` requires; send [`Notifier::ready`] when the reload
    /// is done.
    pub fn reloading(&self) {
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    /// Starts the watchdog when systemd asked for one (`WATCHDOG_USEC`, for
    /// this process when `WATCHDOG_PID` is set), judging liveness by the Tokio
    /// runtime (see [`runtime_liveness`]; needs a Tokio runtime).
    pub fn start_runtime_watchdog(&self) -> Option<Watchdog> {
        let interval = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )?;
        Some(self.start_watchdog(interval, runtime_liveness(interval)))
    }

    /// Sends `WATCHDOG=1` every `interval` from a thread of its own while
    /// `alive()` returns true. Stops when the returned [`Watchdog`] is dropped.
    pub fn start_watchdog(
        &self,
        interval: Duration,
        alive: impl Fn() -> bool + Send + 'static,
    ) -> Watchdog {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let this = self.clone();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sd-watchdog".into())
            .spawn(move || this.watchdog_loop(interval, alive, &stop2));
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(error = %e, "cannot start the systemd watchdog thread");
                None
            }
        };
        Watchdog { stop, thread }
    }

    fn watchdog_loop(
        &self,
        interval: Duration,
        alive: impl Fn() -> bool,
        stop: &(Mutex<bool>, Condvar),
    ) {
        let mut healthy = true;
        let (lock, wake) = stop;
        let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stopped {
            if alive() {
                if !healthy {
                    healthy = true;
                    warn!("liveness check passes again: pinging the systemd watchdog");
                    let status = self
                        .inner
                        .status
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    self.status(&status);
                }
                if let Err(e) = self.send("WATCHDOG=1") {
                    warn!(error = %e, "cannot ping the systemd watchdog");
                }
            } else if healthy {
                healthy = false;
                warn!("liveness check failed: not pinging the systemd watchdog (systemd restarts a daemon that stays stuck)");
                self.notify("STATUS=stuck: the async runtime does not respond; the watchdog will restart dbsync");
            }
            stopped = wake
                .wait_timeout(stopped, interval)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The running watchdog thread; dropping it stops the pings.
pub struct Watchdog {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A liveness check that is true while the Tokio runtime keeps running a
/// small task that beats at least every `max_stall` (it beats four times as
/// often). Must be called inside a Tokio runtime; the task ends when the
/// check is dropped.
pub fn runtime_liveness(max_stall: Duration) -> impl Fn() -> bool + Send + 'static {
    let base = Instant::now();
    let beat = Arc::new(AtomicU64::new(0));
    let period = (max_stall / 4).max(Duration::from_millis(5));
    let weak = Arc::downgrade(&beat);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(beat) = weak.upgrade() else { return };
            beat.store(millis(base.elapsed()), Ordering::Relaxed);
        }
    });
    let limit = millis(max_stall);
    move || millis(base.elapsed()).saturating_sub(beat.load(Ordering::Relaxed)) <= limit
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Half of `WATCHDOG_USEC`, when it is set, positive, and meant for `my_pid`
/// (`WATCHDOG_PID` unset or equal to it).
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(my_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// `NOTIFY_SOCKET` to an address: `/path` or `@abstract-name`.
fn parse_address(value: &str) -> io::Result<SocketAddr> {
    if let Some(name) = value.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(name.as_bytes());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract sockets exist only on Linux",
            ));
        }
    }
    if value.starts_with('/') {
        return SocketAddr::from_pathname(value);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "NOTIFY_SOCKET must be an absolute path or @name (other socket kinds are not supported)",
    ))
}

/// A status fits on one line: the protocol separates assignments by newlines.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn monotonic_usec() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000 + nanos / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A bound socket standing in for systemd, and a notifier pointed at it.
    fn listener(dir: &tempfile::TempDir) -> (UnixDatagram, Notifier) {
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (sock, Notifier::connect(path.to_str().unwrap()).unwrap())
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_follow_the_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, n) = listener(&dir);
        n.ready("running 2 task(s)\nsecond line");
        assert_eq!(recv(&sock), "READY=1\nSTATUS=running 2 task(s) second line");
        n.status("draining");
        assert_eq!(recv(&sock), "STATUS=draining");
        n.stopping();
        assert!(recv(&sock).starts_with("STOPPING=1\n"));
        let before = monotonic_usec();
        n.reloading();
        let msg = recv(&sock);
        let mut lines = msg.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{msg}"));
        assert!(
            usec >= before && usec - before < 5_000_000,
            "{usec} vs {before}"
        );
    }

    #[test]
    fn abstract_sockets_are_reached() {
        let name = format!("dbsync-test-{}-{:?}", std::process::id(), Instant::now());
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Notifier::connect(&format!("@{name}")).unwrap().stopping();
        assert!(recv(&sock).starts_with("STOPPING=1"));
    }

    #[test]
    fn bad_socket_addresses_are_refused() {
        for bad in ["relative/path", "", "vsock:2:1234"] {
            let e = Notifier::connect(bad).err().expect(bad);
            assert!(e.to_string().contains("absolute path"), "{bad}: {e}");
        }
    }

    #[test]
    fn watchdog_interval_honours_usec_and_pid() {
        let half = Some(Duration::from_millis(15_000));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("-5"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn the_watchdog_pings_only_while_alive() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, n) = listener(&dir);
        n.status("running 1 task(s)");
        assert_eq!(recv(&sock), "STATUS=running 1 task(s)");
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let dog = n.start_watchdog(Duration::from_millis(20), move || {
            flag.load(Ordering::SeqCst)
        });
        for _ in 0..3 {
            assert_eq!(recv(&sock), "WATCHDOG=1");
        }
        alive.store(false, Ordering::SeqCst);
        // Pings already queued, then the stuck status, then silence.
        let msg = loop {
            let m = recv(&sock);
            if m != "WATCHDOG=1" {
                break m;
            }
        };
        assert!(msg.starts_with("STATUS=stuck"), "{msg}");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        let silent = sock.recv(&mut buf);
        assert!(silent.is_err(), "pinged while not alive");
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        alive.store(true, Ordering::SeqCst);
        assert_eq!(recv(&sock), "STATUS=running 1 task(s)", "status restored");
        assert_eq!(recv(&sock), "WATCHDOG=1");
        drop(dog);
        // The thread has ended: once the queue is drained nothing more arrives.
        sock.set_nonblocking(true).unwrap();
        while sock.recv(&mut buf).is_ok() {}
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            sock.recv(&mut buf).is_err(),
            "pinged after the watchdog was dropped"
        );
    }

    #[test]
    fn runtime_liveness_fails_while_the_runtime_is_blocked() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let alive = runtime_liveness(Duration::from_millis(80));
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(alive());
            // The only worker thread is blocked: the beat cannot run.
            std::thread::sleep(Duration::from_millis(300));
            assert!(!alive());
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(alive());
        });
    }
}
