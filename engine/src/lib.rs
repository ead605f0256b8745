//! dbsync engine: the change model, the `Source`/`Sink`/`CheckpointStore`
//! contracts, configuration types and the pipeline. No database drivers live
//! here; connectors, sinks and stores implement the contracts.

pub mod batch;
pub mod config;
pub mod contracts;
pub mod error;
pub mod event;
pub mod mapping;
pub mod metrics;
pub mod pgtext;
pub mod pipeline;
pub mod position;
pub mod schema;
pub mod value;

pub use contracts::{
    check_monotonic, CheckOutcome, CheckpointStore, EventSender, GuardFuture, PartialUpdate, Sink,
    Source, SourceContext, TableChanges, TaskGuard,
};
pub use error::{Error, ErrorClass, Result};
pub use event::ChangeEvent;
pub use mapping::ConflictPolicy;
pub use position::{Checkpoint, Lsn, Offset, SnapshotState, SourcePosition, TableSnapshotProgress};
pub use schema::{ColumnSchema, Dialect, TableId, TableSchema};
pub use value::{DataType, Interval, Row, Value};
