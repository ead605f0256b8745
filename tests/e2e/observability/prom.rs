//! Talking to Prometheus and to dbsync's admin endpoint: a minimal HTTP
//! client, a private Prometheus server, and the vector selectors of a PromQL
//! expression.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A GET over plain HTTP/1.0 (the response ends when the server closes).
pub fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response from {addr}{path}: {head}"));
    (status, body.to_string())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private Prometheus server scraping one dbsync.
pub struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `bin` scraping `target` every second (job `dbsync`, with
    /// `token` as bearer token) and evaluating the `rules` file.
    pub fn start(bin: &Path, target: &str, token: &str, rules: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: dbsync\n    scrape_timeout: 1s\n    \
             authorization:\n      credentials: {token:?}\n    \
             static_configs:\n      - targets: [{target:?}]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let p = Self { child, addr, dir };
        let start = Instant::now();
        loop {
            let ready =
                TcpStream::connect(&p.addr).is_ok() && http_get(&p.addr, "/-/ready", None).0 == 200;
            if ready {
                return p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus not ready:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(&self.addr, path, None);
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("prometheus {path}: HTTP {status}, {e}: {body}"));
        v
    }

    /// An instant query: the result vector, or the error Prometheus gave.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self.api(&format!("/api/v1/query?query={}", urlencode(expr)));
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The single value of a query returning one series.
    pub fn value(&self, expr: &str) -> f64 {
        let r = self.query(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(r.len(), 1, "{expr} returned {r:?}");
        r[0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The vector selectors (metric name and matchers) of a PromQL expression.
pub fn selectors(expr: &str) -> Vec<String> {
    const LABEL_LIST: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["bool", "and", "or", "unless", "offset", "inf", "nan"];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    fn skip_string(b: &[u8], i: usize) -> usize {
        let q = b[i];
        let mut j = i + 1;
        while j < b.len() && b[j] != q {
            j += if b[j] == b'\\' && q != b'`' { 2 } else { 1 };
        }
        j + 1
    }
    /// Index just after the bracket closing the one at `i`.
    fn skip_group(b: &[u8], i: usize) -> usize {
        let (open, close) = (
            b[i],
            match b[i] {
                b'(' => b')',
                b'[' => b']',
                _ => b'}',
            },
        );
        let mut depth = 0;
        let mut j = i;
        while j < b.len() {
            match b[j] {
                b'"' | b'\'' | b'`' => {
                    j = skip_string(b, j);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        b.len()
    }
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if matches!(c, b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else if c == b'[' {
            i = skip_group(b, i);
        } else if c == b'{' {
            let end = skip_group(b, i).min(b.len());
            out.push(expr[i..end].to_string());
            i = end;
        } else if c.is_ascii_digit() || c == b'.' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if ident(c) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let next = b.get(j).copied();
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST.contains(&lower.as_str()) {
                if next == Some(b'(') {
                    i = skip_group(b, j);
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || next == Some(b'(')
                || AGGREGATIONS.contains(&lower.as_str())
            {
                // An operator, a function or an aggregation.
            } else if next == Some(b'{') {
                let end = skip_group(b, j);
                out.push(format!("{word}{}", &expr[j..end]));
                i = end;
            } else {
                out.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn promql_selectors_are_extracted_without_functions_labels_or_ranges() {
    assert_eq!(
        selectors(
            r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{task=~"$task", x="}"}[5m])))"#
        ),
        vec![r#"a_bucket{task=~"$task", x="}"}"#]
    );
    assert_eq!(
        selectors("x > 600 and on (instance, task) ((y == 2 and on(task) z > 0) or y == 1)"),
        vec!["x", "y", "z", "y"]
    );
    assert_eq!(
        selectors("sum by (instance, job, task) (increase(e_total[15m])) > 3 unless w offset 5m"),
        vec!["e_total", "w"]
    );
    assert_eq!(
        selectors(r#"topk(10, max without (job) (lag{a="b"})) / count(up == bool 1)"#),
        vec![r#"lag{a="b"}"#, "up"]
    );
}
