//! PostgreSQL streaming replication client for logical decoding.
//!
//! tokio-postgres cannot open replication connections, so this module speaks
//! the wire protocol itself on a [`TcpStream`]: startup with
//! `replication=database`, cleartext/md5/SCRAM-SHA-256 authentication, the
//! simple query protocol for replication commands, and the CopyBoth stream
//! started by `START_REPLICATION`. Frontend messages are encoded with
//! `postgres_protocol`; backend messages are framed here (type byte + Int32
//! length), because the stream needs `CopyBothResponse` and zero-copy bodies.
//!
//! TLS is not supported yet: `sslmode=require` is refused with a clear error.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use engine::{ErrorClass, Lsn};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::{ChannelBinding as Cb, Host, SslMode};

const UNIX_SOCKET: &str =
    "unix-domain socket hosts are not supported for replication connections yet; use a TCP host";
const NO_PASSWORD: &str = "the server asks for a password but none is configured \
    (set password_env or put it in the URL)";
const NO_SASL: &str =
    "the server offers no SASL mechanism this client supports (SCRAM-SHA-256 without TLS)";
const BAD_SIGNATURE: &str =
    "the server's SCRAM signature did not verify; it may not be the configured server";
const UNSUPPORTED_AUTH: &str = "the server asks for Kerberos/GSSAPI/SSPI authentication, \
    which is not supported; use scram-sha-256, md5 or password in pg_hba.conf";

/// Bytes reserved in the read buffer whenever its free space runs low.
const READ_RESERVE: usize = 256 * 1024;
/// Free space below which the read buffer is topped up before reading.
const MIN_FREE: usize = 32 * 1024;
/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Converts a server timestamp (microseconds since 2000-01-01 UTC) to UTC,
/// saturating at chrono's range (PostgreSQL's ±infinity map to the extremes).
pub fn pg_epoch_us_to_utc(us: i64) -> DateTime<Utc> {
    us.checked_add(PG_EPOCH_OFFSET_US)
        .and_then(DateTime::from_timestamp_micros)
        .unwrap_or(if us < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
}

fn now_pg_epoch_us() -> i64 {
    Utc::now().timestamp_micros() - PG_EPOCH_OFFSET_US
}

/// An `ErrorResponse` from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// What this client was doing (e.g. "authenticating").
    pub context: &'static str,
    /// Non-localized severity (`ERROR`, `FATAL`, ...).
    pub severity: String,
    /// SQLSTATE code.
    pub code: String,
    pub message: String,
    /// The server's detail; dropped for data-related SQLSTATE classes
    /// (22, 23), whose details can quote row values.
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres replication connection: {} failed: {} {} ({})",
            self.context, self.severity, self.message, self.code
        )?;
        if let Some(d) = &self.detail {
            write!(f, "; detail: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        let fix = match self.code.as_str() {
            "28P01" | "28000" => {
                "check the user and password (password_env or the URL) and pg_hba.conf on the source"
            }
            "42501" => "the source user needs the REPLICATION attribute (ALTER ROLE ... REPLICATION) or superuser",
            "42704" => "check that the replication slot and the publication exist in this database",
            "55006" => "the replication slot is in use by another connection, often an old one the server has not yet noticed is gone (it is freed after wal_sender_timeout)",
            "53300" => "the source has no free connection or WAL sender (raise max_connections / max_wal_senders)",
            _ => "",
        };
        if !fix.is_empty() {
            write!(f, "; to fix: {fix}")?;
        }
        Ok(())
    }
}

/// A failure of the replication connection. Messages say what failed and how
/// to fix it; they never contain passwords or row values.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("postgres replication connection: I/O error while {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("postgres replication connection: the server closed the connection while {context}")]
    Closed { context: &'static str },
    #[error("postgres replication connection: timed out while {context}")]
    Timeout { context: &'static str },
    #[error("{0}")]
    Server(Box<ServerError>),
    #[error("postgres replication connection: invalid configuration: {0}")]
    Config(String),
    #[error("postgres replication connection: TLS is not supported yet ({0}); use sslmode=disable or sslmode=prefer on a trusted network")]
    TlsUnsupported(&'static str),
    #[error("postgres replication connection: authentication failed: {0}")]
    Auth(String),
    #[error("postgres replication connection: protocol error while {context}: {what}")]
    Protocol { context: &'static str, what: String },
}

impl ReplError {
    /// Whether retrying can help: I/O problems, a server going away
    /// (SQLSTATE classes 08, 57), lack of resources (53), serialization
    /// failures and deadlocks (40001, 40P01) and a slot still held by a previous
    /// connection (55006) are transient; everything else is definite.
    pub fn class(&self) -> ErrorClass {
        match self {
            ReplError::Io { .. } | ReplError::Closed { .. } | ReplError::Timeout { .. } => {
                ErrorClass::Transient
            }
            ReplError::Server(e) => {
                let c = e.code.as_str();
                let transient = ["08", "57", "53"].iter().any(|p| c.starts_with(p))
                    || matches!(c, "40001" | "40P01" | "55006");
                if transient {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Definite
                }
            }
            ReplError::Config(_)
            | ReplError::TlsUnsupported(_)
            | ReplError::Auth(_)
            | ReplError::Protocol { .. } => ErrorClass::Definite,
        }
    }

    /// The SQLSTATE of a server error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ReplError::Server(e) => Some(&e.code),
            _ => None,
        }
    }
}

fn protocol(context: &'static str, what: impl Into<String>) -> ReplError {
    ReplError::Protocol {
        context,
        what: what.into(),
    }
}

/// One backend message: its type byte and body (without the length word).
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    tag: u8,
    body: Bytes,
}

/// Total length (type byte included) of the frame at the start of `buf`,
/// when its header is complete.
fn frame_len(buf: &[u8], context: &'static str) -> Result<Option<usize>, ReplError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        let what = format!(
            "invalid message length {len} for message type 0x{:02x}",
            buf[0]
        );
        return Err(protocol(context, what));
    }
    Ok(Some(1 + len as usize))
}

/// Removes one whole frame from the front of `buf`, if one is buffered.
fn take_frame(buf: &mut BytesMut, context: &'static str) -> Result<Option<Frame>, ReplError> {
    match frame_len(buf, context)? {
        Some(total) if buf.len() >= total => {
            let tag = buf[0];
            buf.advance(5);
            let body = buf.split_to(total - 5).freeze();
            Ok(Some(Frame { tag, body }))
        }
        _ => Ok(None),
    }
}

/// The socket with its read and write buffers.
struct Wire {
    sock: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Wire {
    /// The next frame. Cancel-safe: bytes are only consumed as whole frames
    /// and `read_buf` loses nothing when dropped.
    async fn read_frame(&mut self, context: &'static str) -> Result<Frame, ReplError> {
        loop {
            if let Some(f) = take_frame(&mut self.rbuf, context)? {
                return Ok(f);
            }
            let need = frame_len(&self.rbuf, context)?.unwrap_or(5);
            let free = self.rbuf.capacity() - self.rbuf.len();
            if free < MIN_FREE || self.rbuf.capacity() < need {
                self.rbuf
                    .reserve(READ_RESERVE.max(need.saturating_sub(self.rbuf.len())));
            }
            let n = self
                .sock
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|source| ReplError::Io { context, source })?;
            if n == 0 {
                return Err(ReplError::Closed { context });
            }
        }
    }

    /// Writes everything queued in `wbuf`. A cancelled call leaves the unsent
    /// rest queued, so the next call completes it.
    async fn send(&mut self, context: &'static str) -> Result<(), ReplError> {
        let io = |source| ReplError::Io { context, source };
        self.sock.write_all_buf(&mut self.wbuf).await.map_err(io)?;
        self.sock.flush().await.map_err(io)
    }
}

/// Splits `body` into NUL-terminated strings.
fn cstrings(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == 0).filter(|s| !s.is_empty())
}

/// Parses the fields of an `ErrorResponse` or `NoticeResponse`.
fn error_fields(body: &[u8], context: &'static str) -> ServerError {
    let mut e = ServerError {
        context,
        severity: String::new(),
        code: String::new(),
        message: String::new(),
        detail: None,
        hint: None,
    };
    for field in cstrings(body) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            // `V` (non-localized) wins over `S` (localized), which comes first.
            b'V' | b'S' => e.severity = value,
            b'C' => e.code = value,
            b'M' => e.message = value,
            b'D' => e.detail = Some(value),
            b'H' => e.hint = Some(value),
            _ => {}
        }
    }
    if e.code.starts_with("22") || e.code.starts_with("23") {
        e.detail = None;
    }
    e
}

fn server_error(body: &[u8], context: &'static str) -> ReplError {
    ReplError::Server(Box::new(error_fields(body, context)))
}

fn log_notice(body: &[u8]) {
    let n = error_fields(body, "");
    let (severity, code, message) = (&n.severity, &n.code, &n.message);
    if severity == "WARNING" {
        tracing::warn!(%code, %message, "postgres replication connection notice");
    } else {
        tracing::info!(%severity, %code, %message, "postgres replication connection notice");
    }
}

/// Result rows of a simple query, as text (`None` = NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// Parses a `DataRow` body into text columns.
fn data_row(mut body: Bytes, context: &'static str) -> Result<Vec<Option<String>>, ReplError> {
    let bad = || protocol(context, "truncated DataRow message");
    let n = body.try_get_i16().map_err(|_| bad())?;
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = body.try_get_i32().map_err(|_| bad())?;
        if len < 0 {
            row.push(None);
        } else if body.len() < len as usize {
            return Err(bad());
        } else {
            let v = String::from_utf8(body.split_to(len as usize).to_vec())
                .map_err(|_| protocol(context, "a result column is not valid UTF-8"))?;
            row.push(Some(v));
        }
    }
    Ok(row)
}

/// Escapes a value for the startup `options` parameter (`-c name=value`).
fn escape_option(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_whitespace() || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Result of `IDENTIFY_SYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifySystem {
    pub systemid: String,
    pub timeline: u32,
    /// Current WAL flush location.
    pub xlogpos: Lsn,
    /// Database of this connection.
    pub dbname: Option<String>,
}

/// Result of `CREATE_REPLICATION_SLOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub slot_name: String,
    /// Changes committed after this LSN are streamed by the slot.
    pub consistent_point: Lsn,
    /// The exported snapshot; usable by other sessions only while this
    /// connection stays idle.
    pub snapshot_name: Option<String>,
}

/// A connection in logical replication walsender mode (`replication=database`).
pub struct ReplicationConnection {
    wire: Wire,
    server_version: Option<String>,
    /// Set while a request is in progress; a dropped request leaves the
    /// connection in an unknown state, so it is refused afterwards.
    busy: bool,
}

impl ReplicationConnection {
    /// Connects with `replication=database` to the host/port/user/dbname/password of `config`
    /// (first host only). `options` are GUCs sent in the startup packet as the
    /// `options` parameter (`-c name=value ...`, spaces escaped with a backslash),
    /// after any `options` of `config`. application_name from config, or "dbsync".
    pub async fn connect(
        config: &tokio_postgres::Config,
        options: &[(&str, &str)],
    ) -> Result<Self, ReplError> {
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(ReplError::TlsUnsupported("sslmode=require"));
        }
        if !matches!(config.get_channel_binding(), Cb::Disable | Cb::Prefer) {
            return Err(ReplError::TlsUnsupported("channel_binding=require"));
        }
        let config_err = |m: &str| ReplError::Config(m.to_string());
        let user = config
            .get_user()
            .ok_or_else(|| config_err("the connection URL names no user"))?;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let host = match (config.get_hostaddrs().first(), config.get_hosts().first()) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(Host::Tcp(h))) => h.clone(),
            (None, Some(_)) => return Err(config_err(UNIX_SOCKET)),
            (None, None) => return Err(config_err("the connection URL names no host")),
        };
        let mut opts = config.get_options().unwrap_or("").to_string();
        for (name, value) in options {
            opts.push_str(if opts.is_empty() { "-c " } else { " -c " });
            escape_option(name, &mut opts);
            opts.push('=');
            escape_option(value, &mut opts);
        }
        let dbname = config.get_dbname().unwrap_or(user);
        let mut params = vec![
            ("user", user),
            ("database", dbname),
            ("replication", "database"),
            (
                "application_name",
                config.get_application_name().unwrap_or("dbsync"),
            ),
            ("client_encoding", "UTF8"),
        ];
        if !opts.is_empty() {
            params.push(("options", &opts));
        }
        let mut wbuf = BytesMut::with_capacity(1024);
        frontend::startup_message(params, &mut wbuf)
            .map_err(|_| config_err("a connection parameter contains a NUL byte"))?;
        let establish = async {
            let context = "connecting";
            let io = |source| ReplError::Io { context, source };
            let sock = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| io(std::io::Error::new(e.kind(), format!("{host}:{port}: {e}"))))?;
            sock.set_nodelay(true).map_err(io)?;
            let rbuf = BytesMut::with_capacity(READ_RESERVE);
            let mut conn = ReplicationConnection {
                wire: Wire { sock, rbuf, wbuf },
                server_version: None,
                busy: false,
            };
            conn.wire.send(context).await?;
            conn.authenticate(user, config.get_password()).await?;
            Ok(conn)
        };
        let timed_out = |_| ReplError::Timeout {
            context: "connecting",
        };
        let conn = match config.get_connect_timeout() {
            Some(t) => tokio::time::timeout(*t, establish)
                .await
                .map_err(timed_out)??,
            None => establish.await?,
        };
        let version = conn.server_version.as_deref().unwrap_or("unknown");
        tracing::debug!(
            user,
            dbname,
            server_version = version,
            "postgres replication connection established"
        );
        Ok(conn)
    }

    /// Answers authentication requests, then reads until ReadyForQuery.
    async fn authenticate(&mut self, user: &str, password: Option<&[u8]>) -> Result<(), ReplError> {
        let context = "authenticating";
        let auth = |m: String| ReplError::Auth(m);
        let need_pw = || password.ok_or_else(|| auth(NO_PASSWORD.into()));
        let mut scram: Option<ScramSha256> = None;
        loop {
            let f = self.wire.read_frame(context).await?;
            match f.tag {
                b'R' if f.body.len() >= 4 => {
                    let code = i32::from_be_bytes([f.body[0], f.body[1], f.body[2], f.body[3]]);
                    let (data, buf) = (&f.body[4..], &mut self.wire.wbuf);
                    let encoded = match (code, scram.as_mut()) {
                        (0, _) => continue,
                        (3, _) => frontend::password_message(need_pw()?, buf),
                        (5, _) if data.len() >= 4 => {
                            let salt = [data[0], data[1], data[2], data[3]];
                            let hash = md5_hash(user.as_bytes(), need_pw()?, salt);
                            frontend::password_message(hash.as_bytes(), buf)
                        }
                        (10, _) if cstrings(data).any(|m| m == SCRAM_SHA_256.as_bytes()) => {
                            let s = ScramSha256::new(need_pw()?, ChannelBinding::unrequested());
                            let r =
                                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), buf);
                            scram = Some(s);
                            r
                        }
                        (10, _) => return Err(auth(NO_SASL.into())),
                        (11, Some(s)) => {
                            let bad =
                                |e| auth(format!("invalid SCRAM message from the server: {e}"));
                            s.update(data).map_err(bad)?;
                            frontend::sasl_response(s.message(), buf)
                        }
                        (12, Some(s)) => {
                            s.finish(data)
                                .map_err(|e| auth(format!("{BAD_SIGNATURE} ({e})")))?;
                            continue;
                        }
                        (2 | 6 | 7 | 8 | 9, _) => {
                            return Err(auth(format!("{UNSUPPORTED_AUTH} (request {code})")))
                        }
                        _ => {
                            let what = format!("unexpected authentication request {code}");
                            return Err(protocol(context, what));
                        }
                    };
                    encoded.map_err(|e| auth(format!("cannot encode the reply: {e}")))?;
                    self.wire.send(context).await?;
                }
                // After AuthenticationOk: parameters, backend key, ready.
                b'S' => self.parameter_status(&f.body),
                b'K' => {}
                b'Z' => return Ok(()),
                b'E' => return Err(server_error(&f.body, context)),
                b'N' => log_notice(&f.body),
                other => return Err(unexpected(context, other)),
            }
        }
    }

    fn parameter_status(&mut self, body: &[u8]) {
        let mut parts = cstrings(body);
        if let (Some(b"server_version"), Some(v)) = (parts.next(), parts.next()) {
            self.server_version = Some(String::from_utf8_lossy(v).into_owned());
        }
    }

    /// The `server_version` the server reported at startup (e.g. "16.2").
    pub fn server_version(&self) -> Option<&str> {
        self.server_version.as_deref()
    }

    /// Sends one simple query and collects its rows. With `copy_both`, stops
    /// successfully at the CopyBothResponse that starts a replication stream.
    async fn query(
        &mut self,
        sql: &str,
        context: &'static str,
        copy_both: bool,
    ) -> Result<Rows, ReplError> {
        if self.busy {
            return Err(protocol(
                context,
                "an earlier request on this connection was interrupted; reconnect",
            ));
        }
        self.busy = true;
        frontend::query(sql, &mut self.wire.wbuf)
            .map_err(|_| protocol(context, "the statement contains a NUL byte"))?;
        self.wire.send(context).await?;
        let (mut rows, mut error) = (Vec::new(), None);
        loop {
            // A FATAL error is followed by the server closing the connection.
            let f = match self.wire.read_frame(context).await {
                Ok(f) => f,
                Err(e) => return Err(error.unwrap_or(e)),
            };
            match f.tag {
                b'D' => rows.push(data_row(f.body, context)?),
                // Row descriptions, completions and COPY TO output are not returned.
                b'T' | b'C' | b'I' | b'n' | b'H' | b'd' | b'c' => {}
                b'W' if copy_both => return Ok(rows),
                b'S' => self.parameter_status(&f.body),
                b'N' => log_notice(&f.body),
                b'E' if copy_both => return Err(server_error(&f.body, context)),
                b'E' => error = Some(server_error(&f.body, context)),
                b'Z' => break,
                other => return Err(unexpected(context, other)),
            }
        }
        self.busy = false;
        error.map_or(Ok(rows), Err)
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<IdentifySystem, ReplError> {
        let context = "identifying the system";
        let rows = self.query("IDENTIFY_SYSTEM", context, false).await?;
        let row = rows.first().map_or(&[][..], |r| &r[..]);
        Ok(IdentifySystem {
            systemid: col(row, 0, context)?.to_string(),
            timeline: col(row, 1, context)?
                .parse()
                .map_err(|_| protocol(context, "timeline is not a number"))?,
            xlogpos: lsn_col(row, 2, context)?,
            dbname: row.get(3).cloned().flatten(),
        })
    }

    /// `CREATE_REPLICATION_SLOT "name" LOGICAL pgoutput` with `EXPORT_SNAPSHOT`
    /// (when `export_snapshot`) or `NOEXPORT_SNAPSHOT` (legacy syntax, accepted by
    /// PostgreSQL 10 to 17). An exported snapshot stays usable only until the
    /// next command on this connection.
    pub async fn create_slot(
        &mut self,
        name: &str,
        export_snapshot: bool,
    ) -> Result<SlotInfo, ReplError> {
        let context = "creating the replication slot";
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}",
            quote_ident(name),
            if export_snapshot {
                "EXPORT_SNAPSHOT"
            } else {
                "NOEXPORT_SNAPSHOT"
            }
        );
        let rows = self.query(&sql, context, false).await?;
        let row = rows.first().map_or(&[][..], |r| &r[..]);
        Ok(SlotInfo {
            slot_name: col(row, 0, context)?.to_string(),
            consistent_point: lsn_col(row, 1, context)?,
            snapshot_name: row.get(2).cloned().flatten(),
        })
    }

    /// Runs a replication command or simple query; returns the rows of all
    /// result sets as text (`None` = NULL).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Rows, ReplError> {
        self.query(sql, "running a query", false).await
    }

    /// `START_REPLICATION SLOT "slot" LOGICAL start (proto_version '1',
    /// publication_names '"publication"')`.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        publication: &str,
    ) -> Result<ReplicationStream, ReplError> {
        let context = "starting replication";
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start} (proto_version '1', publication_names '{}')",
            quote_ident(slot),
            quote_ident(publication).replace('\'', "''")
        );
        self.query(&sql, context, true).await?;
        tracing::info!(slot, %start, publication, "postgres logical replication started");
        Ok(ReplicationStream {
            wire: self.wire,
            state: StreamState::Streaming,
        })
    }
}

fn unexpected(context: &'static str, tag: u8) -> ReplError {
    let what = format!(
        "unexpected message type {:?} (0x{tag:02x}) from the server",
        tag as char
    );
    protocol(context, what)
}

/// Column `i` of a result row, which must not be NULL.
fn col<'a>(
    row: &'a [Option<String>],
    i: usize,
    context: &'static str,
) -> Result<&'a str, ReplError> {
    row.get(i)
        .and_then(|v| v.as_deref())
        .ok_or_else(|| protocol(context, format!("the result lacks column {}", i + 1)))
}

fn lsn_col(row: &[Option<String>], i: usize, context: &'static str) -> Result<Lsn, ReplError> {
    col(row, i, context)?
        .parse()
        .map_err(|e: String| protocol(context, e))
}

/// One message of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// WAL data: one pgoutput message in `data` (see [`super::pgoutput::decode`]).
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        server_time_us: i64,
        data: Bytes,
    },
    /// Primary keepalive; answer with [`ReplicationStream::send_status`] when
    /// `reply_requested`, or the server ends the connection after `wal_sender_timeout`.
    Keepalive {
        wal_end: Lsn,
        server_time_us: i64,
        reply_requested: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Streaming,
    Ended,
    Failed,
}

/// The CopyBoth stream of a started logical replication.
pub struct ReplicationStream {
    wire: Wire,
    state: StreamState,
}

const STREAM_CONTEXT: &str = "streaming changes";

impl ReplicationStream {
    /// Next message; `Ok(None)` when the server ended the copy. Cancel-safe:
    /// bytes are consumed only as whole frames. A server `ErrorResponse`
    /// becomes [`ReplError::Server`] with its SQLSTATE.
    pub async fn next(&mut self) -> Result<Option<ReplicationMessage>, ReplError> {
        match self.state {
            StreamState::Streaming => {}
            StreamState::Ended => return Ok(None),
            StreamState::Failed => {
                return Err(protocol(
                    STREAM_CONTEXT,
                    "the replication stream already failed; reconnect",
                ))
            }
        }
        let result = self.read_message().await;
        match result {
            Ok(None) => {
                tracing::info!("postgres server ended the replication stream");
                self.state = StreamState::Ended;
            }
            Err(_) => self.state = StreamState::Failed,
            Ok(Some(_)) => {}
        }
        result
    }

    async fn read_message(&mut self) -> Result<Option<ReplicationMessage>, ReplError> {
        loop {
            let f = self.wire.read_frame(STREAM_CONTEXT).await?;
            return match f.tag {
                b'd' => parse_copy_data(f.body).map(Some),
                b'N' => {
                    log_notice(&f.body);
                    continue;
                }
                b'S' => continue,
                // CopyDone, or CommandComplete from a walsender shutting down.
                b'c' | b'C' => Ok(None),
                b'E' => Err(server_error(&f.body, STREAM_CONTEXT)),
                other => Err(unexpected(STREAM_CONTEXT, other)),
            };
        }
    }

    /// True when a whole message is already buffered, so [`Self::next`] will not wait.
    pub fn has_buffered_message(&self) -> bool {
        self.state != StreamState::Streaming || has_whole_message(&self.wire.rbuf)
    }

    /// Sends a standby status update with these write/flush/apply LSNs (as
    /// given, no +1), the client time and the reply-requested flag, and
    /// flushes the socket.
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplError> {
        let mut msg = [0u8; 34];
        let mut b = &mut msg[..];
        b.put_u8(b'r');
        b.put_u64(write.0);
        b.put_u64(flush.0);
        b.put_u64(apply.0);
        b.put_i64(now_pg_epoch_us());
        b.put_u8(u8::from(reply_requested));
        frontend::CopyData::new(&msg[..])
            .map_err(|e| protocol("sending a status update", e.to_string()))?
            .write(&mut self.wire.wbuf);
        self.wire.send("sending a status update").await
    }
}

/// Whether `buf` holds a whole frame that `next()` returns (or fails on)
/// without reading: notices and parameter reports before it are skipped.
fn has_whole_message(mut buf: &[u8]) -> bool {
    loop {
        match frame_len(buf, STREAM_CONTEXT) {
            Ok(Some(total)) if buf.len() >= total && matches!(buf[0], b'N' | b'S') => {
                buf = &buf[total..]
            }
            Ok(Some(total)) => return buf.len() >= total,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

fn parse_copy_data(mut body: Bytes) -> Result<ReplicationMessage, ReplError> {
    let kind = body.first().copied();
    match kind {
        Some(b'w') if body.len() >= 25 => {
            body.advance(1);
            let wal_start = Lsn(body.get_u64());
            let wal_end = Lsn(body.get_u64());
            let server_time_us = body.get_i64();
            Ok(ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                server_time_us,
                data: body,
            })
        }
        Some(b'k') if body.len() >= 18 => {
            body.advance(1);
            Ok(ReplicationMessage::Keepalive {
                wal_end: Lsn(body.get_u64()),
                server_time_us: body.get_i64(),
                reply_requested: body.get_u8() != 0,
            })
        }
        Some(b'w' | b'k') => Err(protocol(STREAM_CONTEXT, "truncated replication message")),
        Some(other) => Err(unexpected(STREAM_CONTEXT, other)),
        None => Err(protocol(STREAM_CONTEXT, "empty CopyData message")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn xlog(start: u64, data: &[u8]) -> Vec<u8> {
        let mut b = vec![b'w'];
        b.extend_from_slice(&start.to_be_bytes());
        b.extend_from_slice(&(start + 100).to_be_bytes());
        b.extend_from_slice(&77i64.to_be_bytes());
        b.extend_from_slice(data);
        frame(b'd', &b)
    }

    #[test]
    fn frames_survive_every_split_point() {
        let mut wire = xlog(1, b"hello");
        wire.extend(frame(b'N', b"SNOTICE\0Mhi\0\0"));
        let mut k = vec![b'k'];
        k.extend_from_slice(&9u64.to_be_bytes());
        k.extend_from_slice(&5i64.to_be_bytes());
        k.push(1);
        wire.extend(frame(b'd', &k));
        wire.extend(frame(b'c', b""));
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for piece in [&wire[..a], &wire[a..b], &wire[b..]] {
                    buf.extend_from_slice(piece);
                    let whole = has_whole_message(&buf);
                    let before = got.len();
                    while let Some(f) = take_frame(&mut buf, "test").unwrap() {
                        got.push(f);
                    }
                    let message = got[before..].iter().any(|f| f.tag != b'N');
                    assert_eq!(whole, message, "split {a}/{b}");
                }
                assert!(buf.is_empty(), "split {a}/{b} left bytes");
                let tags: Vec<u8> = got.iter().map(|f| f.tag).collect();
                assert_eq!(tags, b"dNdc", "split {a}/{b}");
                assert_eq!(
                    parse_copy_data(got[0].body.clone()).unwrap(),
                    ReplicationMessage::XLogData {
                        wal_start: Lsn(1),
                        wal_end: Lsn(101),
                        server_time_us: 77,
                        data: Bytes::from_static(b"hello"),
                    }
                );
                assert_eq!(
                    parse_copy_data(got[2].body.clone()).unwrap(),
                    ReplicationMessage::Keepalive {
                        wal_end: Lsn(9),
                        server_time_us: 5,
                        reply_requested: true,
                    }
                );
            }
        }
    }

    #[test]
    fn bad_lengths_and_copy_data_are_protocol_errors() {
        let mut buf = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        let err = take_frame(&mut buf, "test").unwrap_err();
        assert_eq!(err.class(), ErrorClass::Definite);
        assert!(
            err.to_string().contains("invalid message length 3"),
            "{err}"
        );
        assert!(parse_copy_data(Bytes::from_static(b"w\0\0")).is_err());
        assert!(parse_copy_data(Bytes::from_static(b"k\0")).is_err());
        let err = parse_copy_data(Bytes::from_static(b"q")).unwrap_err();
        assert!(err.to_string().contains("0x71"), "{err}");
    }

    #[test]
    fn server_errors_are_classified_and_explained() {
        let body = |code: &str| {
            format!("SFATAL\0VFATAL\0C{code}\0Mthe message\0Ddetail (1, secret)\0Hthe hint\0\0")
        };
        let class = |code: &str| server_error(body(code).as_bytes(), "test").class();
        for code in [
            "57P01", "57P03", "08006", "40001", "40P01", "53300", "55006",
        ] {
            assert_eq!(class(code), ErrorClass::Transient, "{code}");
        }
        for code in [
            "28P01", "28000", "42501", "42704", "42710", "55000", "XX000",
        ] {
            assert_eq!(class(code), ErrorClass::Definite, "{code}");
        }
        let e = server_error(body("28P01").as_bytes(), "authenticating");
        assert_eq!(e.sqlstate(), Some("28P01"));
        let s = e.to_string();
        assert!(
            s.contains("authenticating") && s.contains("the message"),
            "{s}"
        );
        assert!(s.contains("the hint") && s.contains("password_env"), "{s}");
        let s = server_error(body("23505").as_bytes(), "test").to_string();
        assert!(!s.contains("secret"), "{s}");
        let io = ReplError::Io {
            context: "x",
            source: std::io::ErrorKind::ConnectionReset.into(),
        };
        assert_eq!(io.class(), ErrorClass::Transient);
        assert_eq!(
            ReplError::Closed { context: "x" }.class(),
            ErrorClass::Transient
        );
    }

    #[test]
    fn data_rows_parse_nulls_and_reject_truncation() {
        let mut b = BytesMut::new();
        b.put_i16(2);
        b.put_i32(-1);
        b.put_i32(2);
        b.put_slice(b"ab");
        let body = b.freeze();
        assert_eq!(
            data_row(body.clone(), "t").unwrap(),
            vec![None, Some("ab".into())]
        );
        for cut in 0..body.len() {
            assert!(data_row(body.slice(..cut), "t").is_err(), "cut {cut}");
        }
    }

    #[test]
    fn options_escape_spaces_and_backslashes() {
        let mut s = String::new();
        escape_option(r"ISO, D\MY", &mut s);
        assert_eq!(s, r"ISO,\ D\\MY");
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
