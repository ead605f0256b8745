//! The streaming phase: a replica connection (`COM_REGISTER_SLAVE` +
//! `COM_BINLOG_DUMP[_GTID]` through `mysql_async`), each event's checksum
//! verified, event groups turned into transactions of change events.
//!
//! Positions, decided here once:
//! - Every event of a transaction carries the position of the transaction's
//!   first event (GTID, or `BEGIN`) in its file, plus its ordinal; the
//!   transaction's resume offset is the position just after its `XID` /
//!   `COMMIT` (or after a standalone DDL), ordinal 0, with the GTID state
//!   including it. Restarting there never repeats or skips a transaction.
//! - Only resume offsets (commits, heartbeats) carry the GTID state in
//!   `gtid_set`; offsets inside a transaction leave it empty (they are only
//!   compared by file and position).
//! - Transactions that touch no replicated table are not sent; the position
//!   after them, and the position a server heartbeat reports while idle, are
//!   sent as `Heartbeat`s at most every `heartbeat_interval_secs`, so the
//!   checkpoint moves on while the replicated tables are idle.
//! - A DDL changes the tracked catalog in memory, is written to the schema
//!   history at the end of its event group (before its commit is sent), and
//!   becomes a `Relation` (changed or new table) or `Truncate` event of a
//!   watched table.
//! - Backpressure: while the pipeline queue is full, the stream is not
//!   polled, so the socket fills and the server's dump thread waits (the
//!   replica session sets `net_write_timeout` to an hour).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::event::{Begin, Commit, Delete, Heartbeat, Insert, Relation, Update};
use engine::position::BinlogPosition;
use engine::{ChangeEvent, Offset, SourceContext, SourcePosition, TableId, TableSchema};
use futures::{FutureExt, StreamExt};
use mysql_async::binlog::events::Event as DriverEvent;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};
use tracing::{debug, warn};

use super::binlog::{self, maria_flags, Event, EventHeader, MariaGtid};
use super::client::Flavor;
use super::error::{self, MysqlSourceError};
use super::gtid::GtidState;
use super::reader::DriverReader;
use super::rows::{Plan, RowChange, RowIter};
use super::schema::Schemas;
use super::schema_history::{Applied, History, Scope};
use super::tablemap::TableMap;
use super::values::ValueOpts;

/// How often the lag metric is refreshed.
const LAG_POLL_EVERY: Duration = Duration::from_secs(10);

/// Settings of the replica connection.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub server_id: u32,
    pub heartbeat: Duration,
    pub use_gtid: bool,
    pub flavor: Flavor,
    pub opts: ValueOpts,
}

/// Opens the replica connection at `start`.
pub async fn open(
    opts: &Opts,
    s: &StreamSettings,
    start: &BinlogPosition,
) -> Result<BinlogStream, MysqlSourceError> {
    let mut conn = Conn::new(opts.clone())
        .await
        .map_err(|e| MysqlSourceError::Connect(error::describe(&e)))?;
    let ns = s
        .heartbeat
        .as_nanos()
        .min(u128::from(u32::MAX) * 1_000_000_000 / 1000);
    let mut setup = vec![
        format!("SET @master_heartbeat_period = {ns}"),
        format!("SET @source_heartbeat_period = {ns}"),
        "SET SESSION net_write_timeout = 3600".to_string(),
    ];
    let gtid = start.gtid_set.as_deref().filter(|_| s.use_gtid);
    if s.flavor == Flavor::MariaDb {
        // GTID and annotate events arrive as themselves (not as dummy queries).
        setup.push("SET @mariadb_slave_capability = 4".into());
        if let Some(g) = gtid {
            setup.push(format!(
                "SET @slave_connect_state = '{}'",
                g.replace('\'', "")
            ));
            setup.push("SET @slave_gtid_strict_mode = 0".into());
            setup.push("SET @slave_gtid_ignore_duplicates = 0".into());
        }
    }
    for q in setup {
        conn.query_drop(q)
            .await
            .map_err(|e| MysqlSourceError::query("preparing the replica session", e))?;
    }
    let file = start.file.as_bytes().to_vec();
    let mut req = BinlogStreamRequest::new(s.server_id);
    let sids: Vec<mysql_async::Sid<'static>>;
    match (s.flavor, gtid) {
        (Flavor::MariaDb, Some(_)) => req = req.with_filename(b"").with_pos(4),
        (Flavor::MySql, Some(g)) => {
            sids = g
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<mysql_async::Sid<'static>>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    MysqlSourceError::Decode(format!("stored GTID set {g:?} is not valid"))
                })?;
            req = req
                .with_gtid()
                .with_gtid_set(sids)
                .with_filename(b"")
                .with_pos(4);
        }
        _ => req = req.with_filename(&file).with_pos(start.pos),
    }
    conn.get_binlog_stream(req).await.map_err(stream_error)
}

/// Classifies an error of the binlog stream.
pub fn stream_error(e: mysql_async::Error) -> MysqlSourceError {
    match error::server_code(&e) {
        // ER_MASTER_FATAL_ERROR_READING_BINLOG: the position or GTID is gone.
        Some(1236) => MysqlSourceError::Resync(format!(
            "the source cannot send the binlog from this task's position ({}): re-snapshot needed — \
             re-sync the task (dbsync offsets reset --task <name>) to copy the tables again, and keep \
             binlogs longer (binlog_expire_logs_seconds)",
            error::describe(&e)
        )),
        _ if e.is_fatal() => MysqlSourceError::Lost(error::describe(&e)),
        _ => MysqlSourceError::query("reading the binlog", e),
    }
}

/// Which tables are tracked and replicated.
pub struct Selection {
    pub dbs: std::collections::BTreeSet<String>,
    pub matches: Box<dyn Fn(&TableId) -> bool + Send + Sync>,
}

impl Scope for Selection {
    fn tracked(&self, db: &str) -> bool {
        self.dbs.contains(db)
    }
    fn watched(&self, id: &TableId) -> bool {
        self.dbs.contains(&id.schema) && (self.matches)(id)
    }
}

pub(super) struct Group {
    pub(super) file: Arc<str>,
    pub(super) start: u64,
    pub(super) ordinal: u64,
    /// `Begin` was sent (the group touches a watched table).
    pub(super) begun: bool,
    /// A transaction (BEGIN or a non-standalone MariaDB GTID): it ends with
    /// XID or COMMIT; otherwise the group is one statement.
    pub(super) transaction: bool,
    pub(super) maria_gtid: Option<MariaGtid>,
    pub(super) mysql_gtid: Option<([u8; 16], u64)>,
    pub(super) xa: bool,
    pub(super) timestamp: u32,
    pub(super) ddl: Applied,
}

/// The streaming state.
pub struct Streamer<'a> {
    pub ctx: &'a mut SourceContext,
    pub settings: StreamSettings,
    pub schemas: Schemas,
    pub scope: Selection,
    pub history: History,
    pub gtid: GtidState,
    /// The current binlog file.
    pub file: Arc<str>,
    /// The highest resume position sent.
    pub last_resume: BinlogPosition,
    /// A regular connection for the lag metric.
    pub side: Option<Conn>,
    pub(super) reader: DriverReader,
    pub(super) maps: HashMap<u64, (TableMap, Option<Arc<Plan>>)>,
    pub(super) announced: HashMap<TableId, Arc<TableSchema>>,
    pub(super) group: Option<Group>,
    idle_resume: Option<BinlogPosition>,
    last_heartbeat: Instant,
    next_lag_poll: Instant,
    payload_end: u64,
}

fn pos_gt(a: &BinlogPosition, b: &BinlogPosition) -> bool {
    (a.file_seq(), a.pos) > (b.file_seq(), b.pos)
}

impl<'a> Streamer<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &'a mut SourceContext,
        settings: StreamSettings,
        schemas: Schemas,
        scope: Selection,
        history: History,
        gtid: GtidState,
        start: BinlogPosition,
        side: Option<Conn>,
    ) -> Self {
        Self {
            ctx,
            settings,
            schemas,
            scope,
            history,
            gtid,
            file: start.file.clone(),
            last_resume: start,
            side,
            reader: DriverReader::default(),
            maps: HashMap::new(),
            announced: HashMap::new(),
            group: None,
            idle_resume: None,
            last_heartbeat: Instant::now(),
            next_lag_poll: Instant::now(),
            payload_end: 0,
        }
    }

    /// Reads and handles events until shutdown or an error.
    pub async fn run(&mut self, mut stream: BinlogStream) -> Result<(), MysqlSourceError> {
        let mut tick = tokio::time::interval(self.settings.heartbeat.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Take what is already buffered without waiting; flush before waiting.
            let next = match AssertUnwindSafe(stream.next())
                .catch_unwind()
                .now_or_never()
            {
                Some(n) => n,
                None => {
                    self.flush().await?;
                    tokio::select! {
                        biased;
                        _ = self.ctx.shutdown.cancelled() => return Err(MysqlSourceError::Stopped),
                        n = AssertUnwindSafe(stream.next()).catch_unwind() => n,
                        _ = tick.tick() => {
                            self.on_tick().await?;
                            continue;
                        }
                    }
                }
            };
            let ev = match next {
                Err(_) => {
                    return Err(MysqlSourceError::Decode(
                        "the binlog driver failed on malformed event data".into(),
                    ))
                }
                Ok(None) => {
                    return Err(MysqlSourceError::Lost(
                        "the server ended the binlog stream".into(),
                    ))
                }
                Ok(Some(Err(e))) => return Err(stream_error(e)),
                Ok(Some(Ok(ev))) => ev,
            };
            self.on_driver_event(&ev).await?;
            if self.ctx.shutdown.is_cancelled() {
                return Err(MysqlSourceError::Stopped);
            }
            // Under a steady stream the tick above never fires: refresh the
            // lag metric between events too.
            if self.group.is_none() && Instant::now() >= self.next_lag_poll {
                self.next_lag_poll = Instant::now() + LAG_POLL_EVERY;
                self.poll_lag().await;
            }
        }
    }

    async fn on_tick(&mut self) -> Result<(), MysqlSourceError> {
        if self.group.is_none() {
            self.maybe_heartbeat(false).await?;
        }
        if Instant::now() >= self.next_lag_poll {
            self.next_lag_poll = Instant::now() + LAG_POLL_EVERY;
            self.poll_lag().await;
        }
        Ok(())
    }

    /// Refreshes the binlog-bytes-behind metric from `SHOW BINARY LOGS`.
    async fn poll_lag(&mut self) {
        let acked = match self.ctx.acked.borrow().as_ref().map(|o| &o.commit) {
            Some(SourcePosition::Mysql(p)) => p.clone(),
            _ => return,
        };
        let Some(conn) = self.side.as_mut() else {
            return;
        };
        let logs =
            tokio::time::timeout(Duration::from_secs(5), super::catalog::binary_logs(conn)).await;
        match logs {
            Ok(Ok(files)) => {
                let seq = acked.file_seq();
                let behind: u64 = files
                    .iter()
                    .map(|(name, size)| {
                        let p = BinlogPosition {
                            file: name.as_str().into(),
                            pos: 0,
                            gtid_set: None,
                        };
                        match (p.file_seq(), seq) {
                            (Some(a), Some(b)) if a > b => *size,
                            (Some(a), Some(b)) if a == b => size.saturating_sub(acked.pos),
                            _ => 0,
                        }
                    })
                    .sum();
                self.ctx.events.reporter().source_lag_bytes(behind);
            }
            Ok(Err(e)) => debug!(error = %e, "reading the binlog lag failed"),
            Err(_) => debug!("reading the binlog lag timed out"),
        }
    }

    /// Sends every buffered event.
    async fn flush(&mut self) -> Result<(), MysqlSourceError> {
        if !self.ctx.events.has_pending() {
            return Ok(());
        }
        tokio::select! {
            biased;
            _ = self.ctx.shutdown.cancelled() => Err(MysqlSourceError::Stopped),
            r = self.ctx.events.flush() => r.map_err(|_| MysqlSourceError::Stopped),
        }
    }

    pub(super) async fn emit(&mut self, ev: ChangeEvent) -> Result<(), MysqlSourceError> {
        // Only a full chunk makes `push` wait: flush it first (watching for
        // shutdown), so that the common case is a plain buffer append.
        if self.ctx.events.is_full() {
            self.send_full_chunk().await?;
        }
        self.ctx
            .events
            .push(ev)
            .await
            .map_err(|_| MysqlSourceError::Stopped)
    }

    async fn send_full_chunk(&mut self) -> Result<(), MysqlSourceError> {
        tokio::select! {
            biased;
            _ = self.ctx.shutdown.cancelled() => Err(MysqlSourceError::Stopped),
            r = self.ctx.events.flush() => r.map_err(|_| MysqlSourceError::Stopped),
        }
    }

    /// Sends the pending idle position as a heartbeat (`force`: regardless of the interval).
    async fn maybe_heartbeat(&mut self, force: bool) -> Result<(), MysqlSourceError> {
        let Some(p) = self.idle_resume.clone() else {
            return Ok(());
        };
        if !pos_gt(&p, &self.last_resume) {
            self.idle_resume = None;
            return Ok(());
        }
        if !force && self.last_heartbeat.elapsed() < self.settings.heartbeat {
            return Ok(());
        }
        self.idle_resume = None;
        self.last_resume = p.clone();
        self.last_heartbeat = Instant::now();
        self.emit(ChangeEvent::Heartbeat(Heartbeat {
            resume: Offset::new(SourcePosition::Mysql(p), 0),
        }))
        .await
    }

    async fn on_driver_event(&mut self, ev: &DriverEvent) -> Result<(), MysqlSourceError> {
        let read = self.reader.read(ev).map_err(|e| {
            MysqlSourceError::Decode(format!(
                "{e} (binlog {} near position {})",
                self.file,
                ev.header().log_pos()
            ))
        })?;
        match read {
            Some((header, event)) => self.handle(&header, event).await,
            None => Ok(()),
        }
    }

    pub(super) fn ensure_group(&mut self, header: &EventHeader) -> &mut Group {
        let file = self.file.clone();
        self.group.get_or_insert_with(|| Group {
            file,
            start: header.start_pos(),
            ordinal: 0,
            begun: false,
            transaction: false,
            maria_gtid: None,
            mysql_gtid: None,
            xa: false,
            timestamp: header.timestamp,
            ddl: Applied::default(),
        })
    }

    pub(super) fn offset(g: &Group, ordinal: u64) -> Offset {
        Offset::new(
            SourcePosition::Mysql(BinlogPosition {
                file: g.file.clone(),
                pos: g.start,
                gtid_set: None,
            }),
            ordinal,
        )
    }

    /// The next offset inside the group, sending `Begin` first if needed.
    pub(super) async fn next_offset(
        &mut self,
        header: &EventHeader,
    ) -> Result<Offset, MysqlSourceError> {
        let g = self.ensure_group(header);
        if !g.begun {
            g.begun = true;
            let begin = Begin {
                offset: Self::offset(g, 0),
                commit_time: chrono::DateTime::from_timestamp(i64::from(g.timestamp), 0),
                xid: g.maria_gtid.map(|m| m.seq),
            };
            self.emit(ChangeEvent::Begin(begin)).await?;
        }
        let g = self
            .group
            .as_mut()
            .ok_or_else(|| MysqlSourceError::Decode("internal: no open group".into()))?;
        g.ordinal += 1;
        Ok(Self::offset(g, g.ordinal))
    }

    /// Ends the current event group at `end` (the position after its last event).
    pub(super) async fn finish_group(&mut self, end: u64) -> Result<(), MysqlSourceError> {
        let Some(g) = self.group.take() else {
            return Ok(());
        };
        if let Some(m) = g.maria_gtid {
            self.gtid.add_maria(m);
        }
        if let Some((sid, gno)) = g.mysql_gtid {
            self.gtid.add_mysql(sid, gno);
        }
        let resume = BinlogPosition {
            file: self.file.clone(),
            pos: end,
            gtid_set: self.gtid.text().map(Into::into),
        };
        if !g.ddl.changed.is_empty() || !g.ddl.removed.is_empty() || !g.ddl.dbs.is_empty() {
            let mut tables = g.ddl.changed.clone();
            tables.extend(g.ddl.removed.iter().cloned());
            self.history
                .put_change(&resume, &self.schemas.catalog, &tables, &g.ddl.dbs)
                .await?;
        }
        if g.begun {
            let offset = Self::offset(&g, g.ordinal + 1);
            self.last_resume = resume.clone();
            self.idle_resume = None;
            self.emit(ChangeEvent::Commit(Commit {
                offset,
                resume: Offset::new(SourcePosition::Mysql(resume), 0),
                commit_time: chrono::DateTime::from_timestamp(i64::from(g.timestamp), 0),
            }))
            .await
        } else {
            self.idle_resume = Some(resume);
            self.maybe_heartbeat(false).await
        }
    }

    async fn handle(
        &mut self,
        header: &EventHeader,
        event: Event<'_>,
    ) -> Result<(), MysqlSourceError> {
        match event {
            Event::FormatDescription(f) => self.reader.fde = f,
            Event::Rotate {
                next_file,
                position,
            } => {
                if self.group.is_some() && header.flags & binlog::FLAG_ARTIFICIAL == 0 {
                    return Err(MysqlSourceError::Decode(format!(
                        "binlog rotated to {next_file} inside a transaction"
                    )));
                }
                debug!(file = %next_file, position, "binlog rotated");
                self.file = next_file.as_str().into();
                self.maps.clear();
                if header.flags & binlog::FLAG_ARTIFICIAL == 0 {
                    self.idle_resume = Some(BinlogPosition {
                        file: self.file.clone(),
                        pos: position,
                        gtid_set: self.gtid.text().map(Into::into),
                    });
                }
            }
            Event::MariaGtid { gtid, flags } => {
                self.check_no_group(header)?;
                let g = self.ensure_group(header);
                g.maria_gtid = Some(gtid);
                g.transaction = flags & maria_flags::STANDALONE == 0;
                g.xa = flags & (maria_flags::PREPARED_XA | maria_flags::COMPLETED_XA) != 0;
            }
            Event::MysqlGtid { sid, gno } => {
                self.check_no_group(header)?;
                self.ensure_group(header).mysql_gtid = Some((sid, gno));
            }
            Event::MysqlAnonymousGtid => {
                self.check_no_group(header)?;
                self.ensure_group(header);
            }
            Event::Query { db, sql, .. } => self.on_query(header, &db, &sql).await?,
            Event::Xid(_) => {
                let end = if header.log_pos == 0 {
                    self.payload_end
                } else {
                    u64::from(header.log_pos)
                };
                self.finish_group(end).await?;
            }
            Event::TableMap(map) => self.on_table_map(map)?,
            Event::Rows(rows) => self.on_rows(header, rows).await?,
            Event::PartialRows { table_id } => {
                if matches!(self.maps.get(&table_id), Some((_, Some(_)))) {
                    return Err(MysqlSourceError::Prerequisite(
                        "a partial JSON update reached a replicated table: run SET GLOBAL \
                         binlog_row_value_options = '' on the source, then re-sync the task"
                            .into(),
                    ));
                }
            }
            Event::Heartbeat { file, position } => {
                if self.group.is_none() && !file.is_empty() && position > 0 {
                    let p = BinlogPosition {
                        file: file.as_str().into(),
                        pos: position,
                        gtid_set: self.gtid.text().map(Into::into),
                    };
                    if self.idle_resume.as_ref().is_none_or(|i| pos_gt(&p, i)) {
                        self.idle_resume = Some(p);
                    }
                    self.maybe_heartbeat(true).await?;
                }
            }
            Event::Informational(name) if name.contains("unknown") => {
                warn!(
                    event_type = header.kind,
                    file = %self.file,
                    position = header.log_pos,
                    "skipping an unknown binlog event the server marked ignorable"
                );
            }
            Event::Informational(name) => {
                if header.kind == binlog::kind::MYSQL_TRANSACTION_PAYLOAD {
                    self.payload_end = u64::from(header.log_pos);
                }
                debug!(event = name, "informational binlog event");
            }
            Event::MariaGtidList(_) | Event::Stop => {}
            Event::Unsupported(name) => {
                let in_watched = self.group.as_ref().is_some_and(|g| g.begun);
                if header.kind == binlog::kind::MYSQL_XA_PREPARE && !in_watched {
                    self.finish_group(u64::from(header.log_pos)).await?;
                } else {
                    return Err(MysqlSourceError::Decode(format!(
                        "cannot follow the binlog past a {name} event ({} near position {})",
                        self.file, header.log_pos
                    )));
                }
            }
        }
        Ok(())
    }

    fn check_no_group(&self, header: &EventHeader) -> Result<(), MysqlSourceError> {
        if self.group.is_some() {
            return Err(MysqlSourceError::Decode(format!(
                "a new transaction starts at {}:{} before the previous one ended",
                self.file,
                header.start_pos()
            )));
        }
        Ok(())
    }

    fn on_table_map(&mut self, map: TableMap) -> Result<(), MysqlSourceError> {
        let id = TableId::new(map.db.clone(), map.table.clone());
        if let Some((old, Some(plan))) = self.maps.get(&map.table_id) {
            let current = self.schemas.schema(&id);
            if *old == map && current.is_some_and(|s| Arc::ptr_eq(&s, &plan.table)) {
                return Ok(());
            }
        }
        let plan = if self.scope.watched(&id) {
            let def = self.schemas.get(&id).cloned().ok_or_else(|| {
                MysqlSourceError::Schema(format!(
                    "rows for {id} arrived but its schema is not tracked (was it created while dbsync \
                     was not following the binlog?): re-sync the task"
                ))
            })?;
            let table = self
                .schemas
                .schema(&id)
                .ok_or_else(|| MysqlSourceError::Schema(format!("no schema for {id}")))?;
            let plan = Plan::new(&map, &def, table, self.settings.opts).map_err(|e| {
                MysqlSourceError::Schema(format!(
                    "{e}: the schema history does not match the binlog (DDL run with sql_log_bin=0, or a \
                     history from another server?); re-sync the task"
                ))
            })?;
            Some(Arc::new(plan))
        } else {
            None
        };
        self.maps.insert(map.table_id, (map, plan));
        Ok(())
    }

    async fn on_rows(
        &mut self,
        header: &EventHeader,
        rows: binlog::RowsEvent<'_>,
    ) -> Result<(), MysqlSourceError> {
        let plan = match self.maps.get(&rows.table_id) {
            None => {
                return Err(MysqlSourceError::Decode(format!(
                    "rows event for table id {} without a table map ({} near position {})",
                    rows.table_id, self.file, header.log_pos
                )))
            }
            Some((_, None)) => return Ok(()),
            Some((_, Some(p))) => p.clone(),
        };
        if self.ensure_group(header).xa {
            return Err(MysqlSourceError::Decode(format!(
                "XA transactions on replicated tables are not supported ({})",
                plan.table.id
            )));
        }
        let announced = self
            .announced
            .get(&plan.table.id)
            .is_some_and(|s| Arc::ptr_eq(s, &plan.table));
        if !announced {
            let offset = self.next_offset(header).await?;
            self.announced
                .insert(plan.table.id.clone(), plan.table.clone());
            self.emit(ChangeEvent::Relation(Relation {
                offset,
                table: plan.table.clone(),
            }))
            .await?;
        }
        let iter = RowIter::new(&rows, &plan).map_err(|e| {
            MysqlSourceError::Decode(format!(
                "{e} (binlog {} near position {})",
                self.file, header.log_pos
            ))
        })?;
        for change in iter {
            let change = change.map_err(|e| {
                MysqlSourceError::Decode(format!(
                    "{e} (binlog {} near position {})",
                    self.file, header.log_pos
                ))
            })?;
            let offset = self.next_offset(header).await?;
            let table = plan.table.clone();
            let ev = match change {
                RowChange::Insert(row) => ChangeEvent::Insert(Insert { offset, table, row }),
                RowChange::Update { before, after } => ChangeEvent::Update(Update {
                    offset,
                    table,
                    before: Some(before),
                    after,
                }),
                RowChange::Delete(before) => ChangeEvent::Delete(Delete {
                    offset,
                    table,
                    before,
                }),
            };
            self.emit(ev).await?;
        }
        Ok(())
    }
}
