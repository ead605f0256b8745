//! Reading events: from a binlog file's bytes ([`FileEvents`], for tests
//! and tools), from the driver's replication stream ([`DriverReader`]:
//! checksum verified, body decoded), and a decode-only reader that counts
//! what a stretch of binlog holds ([`decode_range`], the benchmark's
//! "reader-only" figure).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use engine::config::MysqlSourceConfig;
use engine::position::BinlogPosition;
use engine::TableId;
use futures::StreamExt;
use mysql_async::binlog::events::Event as DriverEvent;

use super::binlog::{
    self, decode, err, split_event, DecodeError, Event, EventHeader, FormatDescription, RawEvent,
    FILE_MAGIC, HEADER_LEN,
};
use super::client;
use super::error::MysqlSourceError;
use super::rows::{Plan, RowIter};
use super::schema::Schemas;
use super::stream::{self, StreamSettings};
use super::values::ValueOpts;

/// Iterates over the events of a binlog file's bytes (for tests and tools):
/// checks the magic, then yields each event split and checksum-verified.
pub struct FileEvents<'a> {
    bytes: &'a [u8],
    pos: usize,
    pub fde: FormatDescription,
}

impl<'a> FileEvents<'a> {
    /// Reads `bytes`, a whole binlog file (magic first).
    pub fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 4 || &bytes[..4] != FILE_MAGIC {
            return err("not a binlog file (bad magic)");
        }
        Ok(Self {
            bytes,
            pos: 4,
            fde: FormatDescription::default(),
        })
    }

    /// The next event and its start position, or `None` at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<(u64, RawEvent<'a>), DecodeError>> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let start = self.pos;
        let rest = &self.bytes[start..];
        if rest.len() < HEADER_LEN {
            self.pos = self.bytes.len();
            return Some(err("truncated event header at the end of the file"));
        }
        let size = u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
        if size < HEADER_LEN || size > rest.len() {
            self.pos = self.bytes.len();
            return Some(err(format!(
                "event at {start} has an impossible size {size}"
            )));
        }
        self.pos += size;
        Some(split_event(&rest[..size], &self.fde).map(|(ev, fde)| {
            if let Some(f) = fde {
                self.fde = f;
            }
            (start as u64, ev)
        }))
    }
}

/// Turns the driver's events into decoded [`Event`]s: follows the format
/// description, verifies each event's CRC32 (the driver strips it without
/// checking) and decodes the body.
#[derive(Debug, Default)]
pub struct DriverReader {
    pub fde: FormatDescription,
}

impl DriverReader {
    /// The header and decoded event; `None` for a format description event
    /// (which only updates the reader).
    pub fn read<'e>(
        &mut self,
        ev: &'e DriverEvent,
    ) -> Result<Option<(EventHeader, Event<'e>)>, DecodeError> {
        let h = ev.header();
        let header = EventHeader {
            timestamp: h.timestamp(),
            kind: h.event_type_raw(),
            server_id: h.server_id(),
            event_size: h.event_size(),
            log_pos: h.log_pos(),
            flags: h.flags_raw(),
        };
        let data = ev.data();
        if header.kind == binlog::kind::FORMAT_DESCRIPTION {
            let mut full = data.to_vec();
            if let Ok(Some(alg)) = ev.footer().get_checksum_alg() {
                full.push(alg as u8);
                full.extend_from_slice(&ev.checksum().unwrap_or([0; 4]));
            }
            let (fde, _) = FormatDescription::parse(&header, &full)?;
            self.fde = fde;
            return Ok(None);
        }
        // Events inside a MySQL transaction payload carry no checksum; the
        // driver marks them so.
        let body = if self.fde.checksum && ev.footer().get_checksum_enabled() {
            let stored = ev
                .checksum()
                .ok_or_else(|| DecodeError("event without its checksum".into()))?;
            if binlog::event_crc(&header, data) != u32::from_le_bytes(stored) {
                return err(format!("checksum mismatch in a type {} event", header.kind));
            }
            data
        } else if header.kind == binlog::kind::ROTATE && header.flags & binlog::FLAG_ARTIFICIAL != 0
        {
            // The first, artificial ROTATE comes before the format
            // description and carries the binlog's checksum, if any.
            binlog::strip_checksum(&header, data).unwrap_or(data)
        } else {
            data
        };
        let event = decode(RawEvent { header, body }, &self.fde)?;
        Ok(Some((header, event)))
    }
}

/// What [`decode_range`] read.
#[derive(Debug, Clone, Default)]
pub struct RangeStats {
    pub events: u64,
    pub bytes: u64,
    /// Row changes decoded into engine values (an update counts once).
    pub rows: u64,
    pub elapsed: Duration,
}

/// Reads the binlog from `from` to `to` with the source's replica
/// connection and decodes every row of the URL database's tables into
/// engine values, without a pipeline: the decoder's own throughput.
pub async fn decode_range(
    cfg: &MysqlSourceConfig,
    server_id: u32,
    from: &BinlogPosition,
    to: &BinlogPosition,
) -> Result<RangeStats, MysqlSourceError> {
    let opts = client::opts(cfg)?;
    let mut conn = client::connect(&opts).await?;
    let info = client::server_info(&mut conn).await?;
    let dbs: Vec<String> = cfg.url_database().into_iter().collect();
    let (catalog, _) = super::catalog::load(&mut conn, &dbs, info.flavor).await?;
    let mut schemas = Schemas::new(catalog);
    let settings = StreamSettings {
        server_id,
        heartbeat: Duration::from_secs(1),
        use_gtid: false,
        flavor: info.flavor,
        opts: ValueOpts::default(),
    };
    let mut s = stream::open(
        &opts,
        &settings,
        &BinlogPosition {
            gtid_set: None,
            ..from.clone()
        },
    )
    .await?;
    let mut reader = DriverReader::default();
    let mut plans: HashMap<u64, Option<Plan>> = HashMap::new();
    let mut file = from.file.to_string();
    let mut stats = RangeStats::default();
    let started = Instant::now();
    let target = (to.file_seq(), to.pos);
    let bad = |e: DecodeError| MysqlSourceError::Decode(e.to_string());
    while let Some(ev) = s.next().await {
        let ev = ev.map_err(stream::stream_error)?;
        stats.events += 1;
        stats.bytes += u64::from(ev.header().event_size());
        let Some((header, event)) = reader.read(&ev).map_err(bad)? else {
            continue;
        };
        match event {
            Event::Rotate { next_file, .. } => file = next_file,
            Event::TableMap(map) => {
                let id = TableId::new(map.db.clone(), map.table.clone());
                let plan = match (schemas.get(&id).cloned(), schemas.schema(&id)) {
                    (Some(def), Some(t)) => Some(
                        Plan::new(&map, &def, t, settings.opts)
                            .map_err(MysqlSourceError::Schema)?,
                    ),
                    _ => None,
                };
                plans.insert(map.table_id, plan);
            }
            Event::Rows(rows) => {
                if let Some(Some(plan)) = plans.get(&rows.table_id) {
                    for change in RowIter::new(&rows, plan).map_err(bad)? {
                        std::hint::black_box(change.map_err(bad)?);
                        stats.rows += 1;
                    }
                }
            }
            _ => {}
        }
        let here = BinlogPosition {
            file: file.as_str().into(),
            pos: u64::from(header.log_pos),
            gtid_set: None,
        };
        if header.log_pos > 0 && (here.file_seq(), here.pos) >= target {
            break;
        }
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}
