//! Binlog event framing and decoding (v4 format): the common header, CRC32
//! checksums, and every event type a MySQL 5.7/8.x or MariaDB 10.x server
//! sends to a replica. Row images are decoded in `rows.rs`.
//!
//! Where the servers differ:
//! - **GTIDs.** MariaDB sends its own `GTID_EVENT` (162: seq_no, domain_id,
//!   flags; a standalone flag for DDL; it replaces `BEGIN`) and
//!   `GTID_LIST_EVENT` (163) once the replica declares
//!   `@mariadb_slave_capability=4`. MySQL sends `GTID_LOG_EVENT` (33: a
//!   16-byte source UUID and a transaction number) or `ANONYMOUS_GTID_LOG_EVENT`
//!   (34), each followed by a `BEGIN` query for DML; `PREVIOUS_GTIDS` (35)
//!   opens every file.
//! - **Row events.** MariaDB 10.x writes v1 row events (23/24/25) and, with
//!   `log_bin_compress`, zlib-compressed ones (166–171); MySQL 8 writes v2
//!   (30/31/32) with an extra-data block, and may wrap a transaction in a
//!   zstd `TRANSACTION_PAYLOAD_EVENT` (40), which the driver expands.
//! - **Heartbeats.** Both send `HEARTBEAT_LOG_EVENT` (27, file name in the
//!   body, position in the header); MySQL 8.0.26+ may send the v2 form (41,
//!   type-length-value fields).
//! - **Annotations.** MariaDB `ANNOTATE_ROWS_EVENT` (160) and MySQL
//!   `ROWS_QUERY_LOG_EVENT` (29) carry the statement text of the next row
//!   events; informational only.
//!
//! An event type not listed here is an error unless its header carries
//! `LOG_EVENT_IGNORABLE_F` (the server's own promise that a replica may skip it).

use std::borrow::Cow;
use std::io::Read;

/// Length of the v4 common header.
pub const HEADER_LEN: usize = 19;
/// Length of a CRC32 checksum.
pub const CHECKSUM_LEN: usize = 4;
/// The four bytes that open every binlog file.
pub const FILE_MAGIC: &[u8; 4] = b"\xfebin";

/// Event type codes.
pub mod kind {
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const INTVAR: u8 = 5;
    pub const RAND: u8 = 13;
    pub const USER_VAR: u8 = 14;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const BEGIN_LOAD_QUERY: u8 = 17;
    pub const EXECUTE_LOAD_QUERY: u8 = 18;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const IGNORABLE: u8 = 28;
    pub const ROWS_QUERY: u8 = 29;
    pub const WRITE_ROWS_V2: u8 = 30;
    pub const UPDATE_ROWS_V2: u8 = 31;
    pub const DELETE_ROWS_V2: u8 = 32;
    pub const MYSQL_GTID: u8 = 33;
    pub const MYSQL_ANONYMOUS_GTID: u8 = 34;
    pub const MYSQL_PREVIOUS_GTIDS: u8 = 35;
    pub const MYSQL_TRANSACTION_CONTEXT: u8 = 36;
    pub const MYSQL_VIEW_CHANGE: u8 = 37;
    pub const MYSQL_XA_PREPARE: u8 = 38;
    pub const MYSQL_PARTIAL_UPDATE_ROWS: u8 = 39;
    pub const MYSQL_TRANSACTION_PAYLOAD: u8 = 40;
    pub const MYSQL_HEARTBEAT_V2: u8 = 41;
    pub const MYSQL_GTID_TAGGED: u8 = 42;
    pub const MARIA_ANNOTATE_ROWS: u8 = 160;
    pub const MARIA_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIA_GTID: u8 = 162;
    pub const MARIA_GTID_LIST: u8 = 163;
    pub const MARIA_START_ENCRYPTION: u8 = 164;
    pub const MARIA_QUERY_COMPRESSED: u8 = 165;
    pub const MARIA_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    pub const MARIA_UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    pub const MARIA_DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    pub const MARIA_WRITE_ROWS_COMPRESSED: u8 = 169;
    pub const MARIA_UPDATE_ROWS_COMPRESSED: u8 = 170;
    pub const MARIA_DELETE_ROWS_COMPRESSED: u8 = 171;
}

/// Header flag: the binlog file is still open (cleared for checksums).
pub const FLAG_BINLOG_IN_USE: u16 = 0x0001;
/// Header flag: the event was made up by the server for this stream.
pub const FLAG_ARTIFICIAL: u16 = 0x0020;
/// Header flag: a replica that does not know the event type may skip it.
pub const FLAG_IGNORABLE: u16 = 0x0080;

/// A binlog decoding failure. Never contains row values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error result with `msg`.
pub fn err<T>(msg: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(msg.into()))
}

/// A bounds-checked little-endian reader over event bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names it in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, pos: 0, what }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Everything not read yet (the reader is then at its end).
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }

    /// The next `n` bytes, or an error naming what is truncated.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return err(format!(
                "{} is truncated: needs {n} more bytes at offset {}, has {}",
                self.what,
                self.pos,
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned little-endian integer of `n` (≤ 8) bytes.
    pub fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(self.uint(2)? as u16)
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(self.uint(4)? as u32)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.uint(8)
    }

    /// A length-encoded integer (protocol `int<lenenc>`).
    pub fn lenenc(&mut self) -> Result<u64, DecodeError> {
        match self.u8()? {
            n @ 0..=0xfa => Ok(u64::from(n)),
            0xfc => self.uint(2),
            0xfd => self.uint(3),
            0xfe => self.uint(8),
            b => err(format!(
                "{}: invalid length-encoded integer prefix {b:#x}",
                self.what
            )),
        }
    }

    /// A length-encoded length, checked against what is left.
    pub fn lenenc_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.lenenc()?;
        if n > self.remaining() as u64 {
            return err(format!("{}: length {n} exceeds the event", self.what));
        }
        Ok(n as usize)
    }
}

/// The v4 common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub timestamp: u32,
    pub kind: u8,
    pub server_id: u32,
    pub event_size: u32,
    /// Position just after this event in its file (0 for artificial events).
    pub log_pos: u32,
    pub flags: u16,
}

impl EventHeader {
    /// Parses the first 19 bytes of an event.
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b, "event header");
        Ok(Self {
            timestamp: r.u32()?,
            kind: r.u8()?,
            server_id: r.u32()?,
            event_size: r.u32()?,
            log_pos: r.u32()?,
            flags: r.u16()?,
        })
    }

    /// The header's wire form (for checksums).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.timestamp.to_le_bytes());
        b[4] = self.kind;
        b[5..9].copy_from_slice(&self.server_id.to_le_bytes());
        b[9..13].copy_from_slice(&self.event_size.to_le_bytes());
        b[13..17].copy_from_slice(&self.log_pos.to_le_bytes());
        b[17..19].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Position of the event's first byte in its file (0 when unknown).
    pub fn start_pos(&self) -> u64 {
        u64::from(self.log_pos).saturating_sub(u64::from(self.event_size))
    }
}

/// CRC32 of an event as the server computes it: over the header (with the
/// in-use flag cleared) and the body without its checksum. For a format
/// description event `body` includes the checksum-algorithm byte.
pub fn event_crc(header: &EventHeader, body: &[u8]) -> u32 {
    let mut h = *header;
    h.flags &= !FLAG_BINLOG_IN_USE;
    let mut c = crc32fast::Hasher::new();
    c.update(&h.to_bytes());
    c.update(body);
    c.finalize()
}

/// One raw event: its header and its body, the checksum already verified
/// and removed.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    pub header: EventHeader,
    pub body: &'a [u8],
}

/// The format description event: the binlog version, server version and the
/// post-header length of every event type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDescription {
    pub binlog_version: u16,
    pub server_version: String,
    pub post_header_lens: Vec<u8>,
    /// Whether events carry a CRC32 checksum.
    pub checksum: bool,
}

impl Default for FormatDescription {
    /// What a v4 server without checksums would say (used before the real one arrives).
    fn default() -> Self {
        Self {
            binlog_version: 4,
            server_version: String::new(),
            post_header_lens: Vec::new(),
            checksum: false,
        }
    }
}

impl FormatDescription {
    /// Parses the body of a FORMAT_DESCRIPTION_EVENT including its checksum
    /// trailer; returns the event and the body length before the trailer.
    pub fn parse(header: &EventHeader, full_body: &[u8]) -> Result<(Self, usize), DecodeError> {
        let mut r = Reader::new(full_body, "format description event");
        let binlog_version = r.u16()?;
        if binlog_version != 4 {
            return err(format!(
                "binlog version {binlog_version} is not supported (only v4)"
            ));
        }
        let sv = r.take(50)?;
        let server_version =
            String::from_utf8_lossy(sv.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
        r.skip(4)?; // create timestamp
        let header_len = r.u8()?;
        if usize::from(header_len) != HEADER_LEN {
            return err(format!("event header length {header_len} is not supported"));
        }
        // The rest: one post-header length per event type, then (servers with
        // checksum support: MySQL ≥ 5.6.1, MariaDB ≥ 5.3) 1 byte algorithm + 4 bytes CRC.
        let rest = r.rest();
        let supports_checksum = version_at_least(&server_version, (5, 6, 1))
            || server_version.to_ascii_lowercase().contains("mariadb");
        if supports_checksum && rest.len() >= 5 {
            let alg = rest[rest.len() - 5];
            let lens = rest[..rest.len() - 5].to_vec();
            let body_len = full_body.len() - 4;
            let checksum = match alg {
                0 => false,
                1 => true,
                0xff => false,
                a => return err(format!("binlog checksum algorithm {a} is not supported")),
            };
            if checksum {
                let stored =
                    u32::from_le_bytes(rest[rest.len() - 4..].try_into().unwrap_or([0; 4]));
                if event_crc(header, &full_body[..body_len]) != stored {
                    return err("checksum mismatch in the format description event");
                }
            }
            Ok((
                Self {
                    binlog_version,
                    server_version,
                    post_header_lens: lens,
                    checksum,
                },
                body_len,
            ))
        } else {
            Ok((
                Self {
                    binlog_version,
                    server_version,
                    post_header_lens: rest.to_vec(),
                    checksum: false,
                },
                full_body.len(),
            ))
        }
    }

    /// Post-header length of an event type (`default` when not listed).
    pub fn post_header_len(&self, kind: u8, default: usize) -> usize {
        self.post_header_lens
            .get(usize::from(kind).wrapping_sub(1))
            .map_or(default, |&l| usize::from(l))
    }
}

fn version_at_least(v: &str, min: (u32, u32, u32)) -> bool {
    let mut parts = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let got = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    got >= min
}

/// Splits one full event (header, body, checksum) into a [`RawEvent`],
/// verifying the checksum when `fde.checksum` is on. A format description
/// event is always checked by its own trailer.
pub fn split_event<'a>(
    bytes: &'a [u8],
    fde: &FormatDescription,
) -> Result<(RawEvent<'a>, Option<FormatDescription>), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return err(format!(
            "event of {} bytes is shorter than its header",
            bytes.len()
        ));
    }
    let header = EventHeader::parse(&bytes[..HEADER_LEN])?;
    if header.event_size as usize != bytes.len() {
        return err(format!(
            "event size {} in the header does not match the {} bytes received",
            header.event_size,
            bytes.len()
        ));
    }
    let body = &bytes[HEADER_LEN..];
    if header.kind == kind::FORMAT_DESCRIPTION {
        let (new_fde, body_len) = FormatDescription::parse(&header, body)?;
        return Ok((
            RawEvent {
                header,
                body: &body[..body_len],
            },
            Some(new_fde),
        ));
    }
    let body = if fde.checksum {
        strip_checksum(&header, body)?
    } else if header.kind == kind::ROTATE && header.flags & FLAG_ARTIFICIAL != 0 {
        // The first, artificial ROTATE comes before the format description
        // and carries the checksum the server's binlog uses, if any.
        strip_checksum(&header, body).unwrap_or(body)
    } else {
        body
    };
    Ok((RawEvent { header, body }, None))
}

/// Verifies and removes the trailing CRC32 of an event body.
pub fn strip_checksum<'a>(header: &EventHeader, body: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    if body.len() < CHECKSUM_LEN {
        return err("event too short for its checksum");
    }
    let (data, sum) = body.split_at(body.len() - CHECKSUM_LEN);
    let stored = u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]);
    if event_crc(header, data) != stored {
        return err(format!(
            "checksum mismatch in a type {} event ending at position {}",
            header.kind, header.log_pos
        ));
    }
    Ok(data)
}

/// A MariaDB GTID (`domain-server-seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

impl std::fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// MariaDB GTID event flags.
pub mod maria_flags {
    pub const STANDALONE: u8 = 1;
    pub const GROUP_COMMIT_ID: u8 = 2;
    pub const PREPARED_XA: u8 = 64;
    pub const COMPLETED_XA: u8 = 128;
}

/// Which row change a rows event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    Write,
    Update,
    Delete,
}

/// A rows event before its row images are decoded.
#[derive(Debug, Clone)]
pub struct RowsEvent<'a> {
    pub kind: RowsKind,
    pub table_id: u64,
    pub flags: u16,
    pub column_count: usize,
    /// Columns present in the (before) image.
    pub present: Cow<'a, [u8]>,
    /// Columns present in the after image (updates).
    pub present_after: Option<Cow<'a, [u8]>>,
    /// The row images.
    pub rows: Cow<'a, [u8]>,
}

/// Rows event flag: the last rows event of a statement.
pub const ROWS_FLAG_STMT_END: u16 = 0x0001;

/// A decoded event.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    FormatDescription(FormatDescription),
    Rotate {
        next_file: String,
        position: u64,
    },
    Query {
        /// Default database of the statement.
        db: String,
        sql: Cow<'a, str>,
        error_code: u16,
    },
    Xid(u64),
    TableMap(super::tablemap::TableMap),
    Rows(RowsEvent<'a>),
    MariaGtid {
        gtid: MariaGtid,
        flags: u8,
    },
    MariaGtidList(Vec<MariaGtid>),
    MysqlGtid {
        sid: [u8; 16],
        gno: u64,
    },
    MysqlAnonymousGtid,
    /// The binlog file name the server is at (the position is the header's `log_pos`).
    Heartbeat {
        file: String,
        position: u64,
    },
    /// An event whose content has no effect on the stream (annotations,
    /// checkpoints, previous-GTIDs, statement-based variables, ...): its name.
    Informational(&'static str),
    /// MySQL's partial JSON update rows event (`binlog_row_value_options =
    /// PARTIAL_JSON`), which dbsync cannot apply: only its table id.
    PartialRows {
        table_id: u64,
    },
    /// An event that makes the stream unsafe to follow (incident, XA
    /// prepare, partial JSON update, ...): its name.
    Unsupported(&'static str),
    Stop,
}

/// Decodes the body of an event.
pub fn decode<'a>(ev: RawEvent<'a>, fde: &FormatDescription) -> Result<Event<'a>, DecodeError> {
    let b = ev.body;
    let mut r = Reader::new(b, "event");
    Ok(match ev.header.kind {
        kind::FORMAT_DESCRIPTION => {
            return err("a format description event must go through split_event");
        }
        kind::ROTATE => {
            let position = r.u64()?;
            let next_file = String::from_utf8(r.rest().to_vec())
                .map_err(|_| DecodeError("rotate event: file name is not UTF-8".into()))?;
            Event::Rotate {
                next_file,
                position,
            }
        }
        kind::QUERY | kind::MARIA_QUERY_COMPRESSED => decode_query(ev, fde)?,
        kind::XID => Event::Xid(r.u64()?),
        kind::TABLE_MAP => Event::TableMap(super::tablemap::TableMap::parse(b, fde)?),
        kind::WRITE_ROWS_V1
        | kind::UPDATE_ROWS_V1
        | kind::DELETE_ROWS_V1
        | kind::WRITE_ROWS_V2
        | kind::UPDATE_ROWS_V2
        | kind::DELETE_ROWS_V2
        | kind::MARIA_WRITE_ROWS_COMPRESSED_V1
        | kind::MARIA_UPDATE_ROWS_COMPRESSED_V1
        | kind::MARIA_DELETE_ROWS_COMPRESSED_V1
        | kind::MARIA_WRITE_ROWS_COMPRESSED
        | kind::MARIA_UPDATE_ROWS_COMPRESSED
        | kind::MARIA_DELETE_ROWS_COMPRESSED => Event::Rows(decode_rows(ev, fde)?),
        kind::MARIA_GTID => {
            let seq = r.u64()?;
            let domain = r.u32()?;
            let flags = r.u8()?;
            Event::MariaGtid {
                gtid: MariaGtid {
                    domain,
                    server: ev.header.server_id,
                    seq,
                },
                flags,
            }
        }
        kind::MARIA_GTID_LIST => {
            let n = r.u32()? & 0x0fff_ffff;
            if n as usize > r.remaining() / 16 {
                return err("GTID list event: count exceeds the event");
            }
            let mut list = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let domain = r.u32()?;
                let server = r.u32()?;
                let seq = r.u64()?;
                list.push(MariaGtid {
                    domain,
                    server,
                    seq,
                });
            }
            Event::MariaGtidList(list)
        }
        kind::MYSQL_GTID => {
            r.skip(1)?; // commit flag
            let sid: [u8; 16] = r
                .take(16)?
                .try_into()
                .map_err(|_| DecodeError("GTID event: bad source id".into()))?;
            let gno = r.u64()?;
            Event::MysqlGtid { sid, gno }
        }
        kind::MYSQL_ANONYMOUS_GTID => Event::MysqlAnonymousGtid,
        kind::HEARTBEAT => Event::Heartbeat {
            file: String::from_utf8(b.to_vec())
                .map_err(|_| DecodeError("heartbeat: file name is not UTF-8".into()))?,
            position: u64::from(ev.header.log_pos),
        },
        kind::MYSQL_HEARTBEAT_V2 => decode_heartbeat_v2(b)?,
        kind::STOP => Event::Stop,
        kind::MARIA_ANNOTATE_ROWS => Event::Informational("annotate rows"),
        kind::ROWS_QUERY => Event::Informational("rows query"),
        kind::MARIA_BINLOG_CHECKPOINT => Event::Informational("binlog checkpoint"),
        kind::MYSQL_PREVIOUS_GTIDS => Event::Informational("previous gtids"),
        kind::INTVAR => Event::Informational("intvar"),
        kind::RAND => Event::Informational("rand"),
        kind::USER_VAR => Event::Informational("user var"),
        kind::IGNORABLE => Event::Informational("ignorable"),
        kind::MYSQL_TRANSACTION_CONTEXT => Event::Informational("transaction context"),
        kind::MYSQL_VIEW_CHANGE => Event::Informational("view change"),
        // The driver expands the payload into the events it holds.
        kind::MYSQL_TRANSACTION_PAYLOAD => Event::Informational("transaction payload"),
        kind::BEGIN_LOAD_QUERY => Event::Informational("begin load query"),
        kind::EXECUTE_LOAD_QUERY => Event::Unsupported("LOAD DATA in statement format"),
        kind::INCIDENT => Event::Unsupported("incident (the source lost changes)"),
        kind::MYSQL_XA_PREPARE => Event::Unsupported("XA PREPARE"),
        kind::MYSQL_PARTIAL_UPDATE_ROWS => {
            let post = fde.post_header_len(kind::MYSQL_PARTIAL_UPDATE_ROWS, 10);
            Event::PartialRows {
                table_id: r.uint(if post == 6 { 4 } else { 6 })?,
            }
        }
        kind::MYSQL_GTID_TAGGED => Event::Unsupported("tagged GTID (MySQL 8.3+)"),
        kind::MARIA_START_ENCRYPTION => Event::Unsupported("start encryption"),
        _ if ev.header.flags & FLAG_IGNORABLE != 0 => Event::Informational("ignorable (unknown type)"),
        k => {
            return err(format!(
                "unknown binlog event type {k} (ending at position {}): this server version is not supported",
                ev.header.log_pos
            ))
        }
    })
}

fn decode_query<'a>(ev: RawEvent<'a>, fde: &FormatDescription) -> Result<Event<'a>, DecodeError> {
    let mut r = Reader::new(ev.body, "query event");
    let post = fde.post_header_len(kind::QUERY, 13);
    if post < 13 {
        return err("query event post-header shorter than 13 bytes");
    }
    r.skip(8)?; // thread id, exec time
    let db_len = usize::from(r.u8()?);
    let error_code = r.u16()?;
    let status_len = usize::from(r.u16()?);
    r.skip(post - 13)?;
    r.skip(status_len)?;
    let db = String::from_utf8_lossy(r.take(db_len)?).into_owned();
    r.skip(1)?; // NUL
    let text = r.rest();
    let sql: Cow<'a, str> = if ev.header.kind == kind::MARIA_QUERY_COMPRESSED {
        Cow::Owned(
            String::from_utf8(maria_uncompress(text)?)
                .map_err(|_| DecodeError("compressed query is not UTF-8".into()))?,
        )
    } else {
        // Statements are in the connection charset; replace anything not UTF-8
        // (only identifiers and DDL matter here).
        String::from_utf8_lossy(text)
    };
    Ok(Event::Query {
        db,
        sql,
        error_code,
    })
}

fn decode_rows<'a>(
    ev: RawEvent<'a>,
    fde: &FormatDescription,
) -> Result<RowsEvent<'a>, DecodeError> {
    use kind::*;
    let k = ev.header.kind;
    let (kind, v2, compressed) = match k {
        WRITE_ROWS_V1 => (RowsKind::Write, false, false),
        UPDATE_ROWS_V1 => (RowsKind::Update, false, false),
        DELETE_ROWS_V1 => (RowsKind::Delete, false, false),
        WRITE_ROWS_V2 => (RowsKind::Write, true, false),
        UPDATE_ROWS_V2 => (RowsKind::Update, true, false),
        DELETE_ROWS_V2 => (RowsKind::Delete, true, false),
        MARIA_WRITE_ROWS_COMPRESSED_V1 => (RowsKind::Write, false, true),
        MARIA_UPDATE_ROWS_COMPRESSED_V1 => (RowsKind::Update, false, true),
        MARIA_DELETE_ROWS_COMPRESSED_V1 => (RowsKind::Delete, false, true),
        MARIA_WRITE_ROWS_COMPRESSED => (RowsKind::Write, true, true),
        MARIA_UPDATE_ROWS_COMPRESSED => (RowsKind::Update, true, true),
        _ => (RowsKind::Delete, true, true),
    };
    let mut r = Reader::new(ev.body, "rows event");
    let post = fde.post_header_len(k, if v2 { 10 } else { 8 });
    let id_len = if post == 6 { 4 } else { 6 };
    let table_id = r.uint(id_len)?;
    let flags = r.u16()?;
    if v2 {
        let extra = usize::from(r.u16()?);
        if extra < 2 {
            return err("rows event: extra data length below 2");
        }
        r.skip(extra - 2)?;
    }
    let used = r.position();
    if post > used {
        r.skip(post - used)?;
    }
    let column_count = usize::try_from(r.lenenc()?).unwrap_or(usize::MAX);
    if column_count > 4096 {
        return err(format!(
            "rows event: {column_count} columns is more than any table can have"
        ));
    }
    let bitmap_len = column_count.div_ceil(8);
    let present = Cow::Borrowed(r.take(bitmap_len)?);
    let present_after = if kind == RowsKind::Update {
        Some(Cow::Borrowed(r.take(bitmap_len)?))
    } else {
        None
    };
    let rest = r.rest();
    let rows = if compressed {
        Cow::Owned(maria_uncompress(rest)?)
    } else {
        Cow::Borrowed(rest)
    };
    Ok(RowsEvent {
        kind,
        table_id,
        flags,
        column_count,
        present,
        present_after,
        rows,
    })
}

/// MariaDB's compressed binlog payload: one header byte (`0x80 | n`, n = 1..4
/// bytes of big-endian uncompressed length), the length, then zlib data.
pub fn maria_uncompress(b: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut r = Reader::new(b, "compressed event");
    let head = r.u8()?;
    let lenlen = usize::from(head & 0x07);
    if head & 0x80 == 0 || lenlen == 0 || lenlen > 4 {
        return err("compressed event: bad header byte");
    }
    let len = r
        .take(lenlen)?
        .iter()
        .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
    if len > 1 << 30 {
        return err("compressed event: uncompressed length above 1 GiB");
    }
    let mut out = Vec::with_capacity(len);
    flate2::read::ZlibDecoder::new(r.rest())
        .take(len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError("compressed event: zlib data is corrupt".into()))?;
    if out.len() != len {
        return err("compressed event: uncompressed length does not match");
    }
    Ok(out)
}

fn decode_heartbeat_v2(b: &[u8]) -> Result<Event<'static>, DecodeError> {
    let mut r = Reader::new(b, "heartbeat v2");
    let mut file = String::new();
    let mut position = 0;
    while r.remaining() > 0 {
        let field = r.u8()?;
        let len = r.lenenc_len()?;
        let v = r.take(len)?;
        match field {
            1 => {
                file = String::from_utf8(v.to_vec())
                    .map_err(|_| DecodeError("heartbeat: file name is not UTF-8".into()))?
            }
            2 => {
                position = Reader::new(v, "heartbeat position").lenenc()?;
            }
            _ => {}
        }
    }
    Ok(Event::Heartbeat { file, position })
}
