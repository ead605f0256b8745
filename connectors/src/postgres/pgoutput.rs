//! Decoder for the `pgoutput` logical replication protocol (version 1).
//!
//! [`decode`] turns the payload of one `XLogData` message into a [`PgOutput`].
//! Besides the version-1 messages it accepts origin (`O`), type (`Y`) and
//! logical-decoding message (`M`) messages. Streaming messages of version 2+
//! are not requested by this client and are rejected like any unknown type.
//!
//! Decoding is zero-copy: column values are slices of the input [`Bytes`].
//! Errors say which message and field was malformed and never carry row data.

use bytes::Bytes;
use engine::Lsn;

/// One decoded pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutput {
    /// Start of a transaction; `final_lsn` is the LSN of its commit record.
    Begin {
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01 (see [`super::replication::pg_epoch_us_to_utc`]).
        commit_time_us: i64,
        xid: u32,
    },
    /// End of a transaction. Resuming after it means streaming from `end_lsn`.
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time_us: i64,
    },
    /// The transaction was replayed from another node (replication origin).
    Origin { lsn: Lsn, name: String },
    /// Describes a table; sent before the first change of a table in a
    /// session and again after its definition changed.
    Relation(RelationBody),
    /// Describes a non-built-in data type used by a following relation.
    Type {
        oid: u32,
        /// Schema of the type; empty for `pg_catalog`.
        namespace: String,
        name: String,
    },
    /// A new row.
    Insert { rel: u32, new: Tuple },
    /// A changed row. `old` is present when the replica identity changed
    /// (key-only, `key_only_old = true`) or the identity is `FULL`.
    Update {
        rel: u32,
        old: Option<Tuple>,
        key_only_old: bool,
        new: Tuple,
    },
    /// A removed row: its key (`key_only_old`) or, with identity `FULL`, the whole row.
    Delete {
        rel: u32,
        old: Tuple,
        key_only_old: bool,
    },
    /// Tables truncated together; `options` bit 1 = CASCADE, bit 2 = RESTART IDENTITY.
    Truncate { options: u8, rels: Vec<u32> },
    /// A message from `pg_logical_emit_message`.
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
}

/// A `Relation` message: the shape of a published table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationBody {
    pub oid: u32,
    /// Schema of the table; pgoutput sends an empty string for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    /// Replica identity setting: `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`RelationBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity key.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_mod: i32,
}

/// The column values of one row, in relation column order.
pub type Tuple = Vec<TupleValue>;

/// One column value of a [`Tuple`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    /// A TOASTed value that did not change; its content is not sent.
    UnchangedToast,
    /// The value in PostgreSQL's text output format.
    Text(Bytes),
    /// The value in PostgreSQL's binary format.
    Binary(Bytes),
}

/// A pgoutput message that could not be decoded. Never contains row data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("unknown pgoutput message type {} (0x{byte:02x}); the server may speak a newer protocol version than the one requested", show_byte(*byte))]
    UnknownMessage { byte: u8 },
    #[error("truncated pgoutput {msg} message: {field} needs {need} bytes at offset {offset}, only {have} left")]
    Truncated {
        msg: &'static str,
        field: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("malformed pgoutput {msg} message: {what}")]
    Malformed { msg: &'static str, what: String },
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        "(non-printable)".to_string()
    }
}

/// Decodes one `XLogData` payload.
pub fn decode(data: Bytes) -> Result<PgOutput, DecodeError> {
    let Some(&tag) = data.first() else {
        return Err(DecodeError::Empty);
    };
    let msg = match tag {
        b'B' => "begin",
        b'C' => "commit",
        b'O' => "origin",
        b'R' => "relation",
        b'Y' => "type",
        b'I' => "insert",
        b'U' => "update",
        b'D' => "delete",
        b'T' => "truncate",
        b'M' => "message",
        byte => return Err(DecodeError::UnknownMessage { byte }),
    };
    let mut r = Reader {
        buf: data,
        pos: 1,
        msg,
    };
    let out = match tag {
        b'B' => PgOutput::Begin {
            final_lsn: r.lsn("final lsn")?,
            commit_time_us: r.i64("commit time")?,
            xid: r.u32("xid")?,
        },
        b'C' => PgOutput::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.lsn("commit lsn")?,
            end_lsn: r.lsn("end lsn")?,
            commit_time_us: r.i64("commit time")?,
        },
        b'O' => PgOutput::Origin {
            lsn: r.lsn("origin lsn")?,
            name: r.string("origin name")?,
        },
        b'R' => PgOutput::Relation(r.relation()?),
        b'Y' => PgOutput::Type {
            oid: r.u32("type oid")?,
            namespace: r.string("type namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let rel = r.u32("relation oid")?;
            r.expect_new_marker()?;
            PgOutput::Insert {
                rel,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let rel = r.u32("relation oid")?;
            let (old, key_only_old) = match r.u8("tuple marker")? {
                b'N' => (None, false),
                m @ (b'K' | b'O') => {
                    let old = r.tuple()?;
                    r.expect_new_marker()?;
                    (Some(old), m == b'K')
                }
                other => return Err(r.bad_marker(other, "'K', 'O' or 'N'")),
            };
            PgOutput::Update {
                rel,
                old,
                key_only_old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let rel = r.u32("relation oid")?;
            let key_only_old = match r.u8("tuple marker")? {
                b'K' => true,
                b'O' => false,
                other => return Err(r.bad_marker(other, "'K' or 'O'")),
            };
            PgOutput::Delete {
                rel,
                old: r.tuple()?,
                key_only_old,
            }
        }
        b'T' => {
            let n = r.count32("relation count")?;
            let options = r.u8("options")?;
            r.need(n.saturating_mul(4), "relation oids")?;
            let rels = (0..n)
                .map(|_| r.u32("relation oid"))
                .collect::<Result<_, _>>()?;
            PgOutput::Truncate { options, rels }
        }
        _ => {
            // b'M', the only tag left.
            let flags = r.u8("flags")?;
            let lsn = r.lsn("message lsn")?;
            let prefix = r.string("prefix")?;
            let len = r.count32("content length")?;
            PgOutput::Message {
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content: r.take(len, "content")?,
            }
        }
    };
    r.finish()?;
    Ok(out)
}

/// A cursor over one message; every read checks the remaining length.
struct Reader {
    buf: Bytes,
    pos: usize,
    msg: &'static str,
}

impl Reader {
    fn need(&self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        let have = self.buf.len() - self.pos;
        if have < n {
            return Err(DecodeError::Truncated {
                msg: self.msg,
                field,
                offset: self.pos,
                need: n,
                have,
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        self.need(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(field)?)))
    }

    fn malformed(&self, what: String) -> DecodeError {
        DecodeError::Malformed {
            msg: self.msg,
            what,
        }
    }

    fn bad_marker(&self, got: u8, expected: &str) -> DecodeError {
        self.malformed(format!(
            "expected tuple marker {expected} at offset {}, got {} (0x{got:02x})",
            self.pos - 1,
            show_byte(got)
        ))
    }

    fn expect_new_marker(&mut self) -> Result<(), DecodeError> {
        match self.u8("tuple marker")? {
            b'N' => Ok(()),
            other => Err(self.bad_marker(other, "'N'")),
        }
    }

    /// A non-negative Int32 count or length.
    fn count32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = self.i32(field)?;
        usize::try_from(n).map_err(|_| self.malformed(format!("negative {field} {n}")))
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, field)?;
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// A NUL-terminated UTF-8 string (names, never row data).
    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let rest = &self.buf[self.pos..];
        let Some(end) = memchr::memchr(0, rest) else {
            return Err(DecodeError::Truncated {
                msg: self.msg,
                field,
                offset: self.pos,
                need: rest.len() + 1,
                have: rest.len(),
            });
        };
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.malformed(format!("{field} is not valid UTF-8")))?
            .to_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn relation(&mut self) -> Result<RelationBody, DecodeError> {
        let oid = self.u32("relation oid")?;
        let namespace = self.string("namespace")?;
        let name = self.string("relation name")?;
        let replica_identity = self.u8("replica identity")?;
        let n = self.i16("column count")?;
        let n =
            usize::try_from(n).map_err(|_| self.malformed(format!("negative column count {n}")))?;
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            columns.push(RelationColumn {
                key: self.u8("column flags")? & 1 != 0,
                name: self.string("column name")?,
                type_oid: self.u32("column type oid")?,
                type_mod: self.i32("column type modifier")?,
            });
        }
        Ok(RelationBody {
            oid,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16("tuple column count")?;
        let n = usize::try_from(n)
            .map_err(|_| self.malformed(format!("negative tuple column count {n}")))?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let value = match self.u8("column kind")? {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' => {
                    let len = self.count32("column value length")?;
                    TupleValue::Text(self.take(len, "column value")?)
                }
                b'b' => {
                    let len = self.count32("column value length")?;
                    TupleValue::Binary(self.take(len, "column value")?)
                }
                other => {
                    return Err(self.malformed(format!(
                        "unknown column kind {} (0x{other:02x}) at offset {}",
                        show_byte(other),
                        self.pos - 1
                    )))
                }
            };
            values.push(value);
        }
        Ok(values)
    }

    fn finish(self) -> Result<(), DecodeError> {
        let left = self.buf.len() - self.pos;
        if left != 0 {
            return Err(self.malformed(format!("{left} unexpected trailing bytes")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn cstr(b: &mut BytesMut, s: &str) {
        b.put_slice(s.as_bytes());
        b.put_u8(0);
    }

    /// Tuple: (1, NULL, unchanged TOAST, binary 0xff00).
    fn put_tuple(b: &mut BytesMut) {
        b.put_i16(4);
        b.put_u8(b't');
        b.put_i32(1);
        b.put_slice(b"1");
        b.put_u8(b'n');
        b.put_u8(b'u');
        b.put_u8(b'b');
        b.put_i32(2);
        b.put_slice(&[0xff, 0x00]);
    }

    fn tuple() -> Tuple {
        vec![
            TupleValue::Text(Bytes::from_static(b"1")),
            TupleValue::Null,
            TupleValue::UnchangedToast,
            TupleValue::Binary(Bytes::from_static(&[0xff, 0x00])),
        ]
    }

    fn msg(f: impl FnOnce(&mut BytesMut)) -> Bytes {
        let mut b = BytesMut::new();
        f(&mut b);
        b.freeze()
    }

    /// Every message type, hand-built, with the value it must decode to.
    fn samples() -> Vec<(Bytes, PgOutput)> {
        vec![
            (
                msg(|b| {
                    b.put_u8(b'B');
                    b.put_u64(0x1_0000_0020);
                    b.put_i64(700_000_000_000_000);
                    b.put_u32(4242);
                }),
                PgOutput::Begin {
                    final_lsn: Lsn(0x1_0000_0020),
                    commit_time_us: 700_000_000_000_000,
                    xid: 4242,
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'C');
                    b.put_u8(0);
                    b.put_u64(0x20);
                    b.put_u64(0x48);
                    b.put_i64(-5);
                }),
                PgOutput::Commit {
                    flags: 0,
                    commit_lsn: Lsn(0x20),
                    end_lsn: Lsn(0x48),
                    commit_time_us: -5,
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'O');
                    b.put_u64(7);
                    cstr(b, "node_a");
                }),
                PgOutput::Origin {
                    lsn: Lsn(7),
                    name: "node_a".into(),
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'R');
                    b.put_u32(16384);
                    cstr(b, "public");
                    cstr(b, "tä");
                    b.put_u8(b'd');
                    b.put_i16(2);
                    b.put_u8(1);
                    cstr(b, "id");
                    b.put_u32(23);
                    b.put_i32(-1);
                    b.put_u8(0);
                    cstr(b, "name");
                    b.put_u32(1043);
                    b.put_i32(14);
                }),
                PgOutput::Relation(RelationBody {
                    oid: 16384,
                    namespace: "public".into(),
                    name: "tä".into(),
                    replica_identity: b'd',
                    columns: vec![
                        RelationColumn {
                            key: true,
                            name: "id".into(),
                            type_oid: 23,
                            type_mod: -1,
                        },
                        RelationColumn {
                            key: false,
                            name: "name".into(),
                            type_oid: 1043,
                            type_mod: 14,
                        },
                    ],
                }),
            ),
            (
                msg(|b| {
                    b.put_u8(b'Y');
                    b.put_u32(16500);
                    cstr(b, "");
                    cstr(b, "mood");
                }),
                PgOutput::Type {
                    oid: 16500,
                    namespace: String::new(),
                    name: "mood".into(),
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'I');
                    b.put_u32(16384);
                    b.put_u8(b'N');
                    put_tuple(b);
                }),
                PgOutput::Insert {
                    rel: 16384,
                    new: tuple(),
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'U');
                    b.put_u32(1);
                    b.put_u8(b'N');
                    put_tuple(b);
                }),
                PgOutput::Update {
                    rel: 1,
                    old: None,
                    key_only_old: false,
                    new: tuple(),
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'U');
                    b.put_u32(2);
                    b.put_u8(b'K');
                    put_tuple(b);
                    b.put_u8(b'N');
                    put_tuple(b);
                }),
                PgOutput::Update {
                    rel: 2,
                    old: Some(tuple()),
                    key_only_old: true,
                    new: tuple(),
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'U');
                    b.put_u32(3);
                    b.put_u8(b'O');
                    put_tuple(b);
                    b.put_u8(b'N');
                    b.put_i16(0);
                }),
                PgOutput::Update {
                    rel: 3,
                    old: Some(tuple()),
                    key_only_old: false,
                    new: vec![],
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'D');
                    b.put_u32(4);
                    b.put_u8(b'K');
                    put_tuple(b);
                }),
                PgOutput::Delete {
                    rel: 4,
                    old: tuple(),
                    key_only_old: true,
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'D');
                    b.put_u32(5);
                    b.put_u8(b'O');
                    put_tuple(b);
                }),
                PgOutput::Delete {
                    rel: 5,
                    old: tuple(),
                    key_only_old: false,
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'T');
                    b.put_i32(2);
                    b.put_u8(3);
                    b.put_u32(10);
                    b.put_u32(11);
                }),
                PgOutput::Truncate {
                    options: 3,
                    rels: vec![10, 11],
                },
            ),
            (
                msg(|b| {
                    b.put_u8(b'M');
                    b.put_u8(1);
                    b.put_u64(99);
                    cstr(b, "pfx");
                    b.put_i32(3);
                    b.put_slice(b"abc");
                }),
                PgOutput::Message {
                    transactional: true,
                    lsn: Lsn(99),
                    prefix: "pfx".into(),
                    content: Bytes::from_static(b"abc"),
                },
            ),
        ]
    }

    #[test]
    fn decodes_every_message_type() {
        let samples = samples();
        let mut tags: Vec<u8> = samples.iter().map(|(b, _)| b[0]).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags, b"BCDIMORTUY".to_vec());
        for (bytes, want) in samples {
            assert_eq!(decode(bytes).unwrap(), want);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for (bytes, _) in samples() {
            for cut in 0..bytes.len() {
                let err = decode(bytes.slice(..cut)).expect_err("a truncated message decoded");
                if cut > 0 {
                    assert!(
                        matches!(err, DecodeError::Truncated { .. }),
                        "type {:?} cut at {cut}: {err}",
                        bytes[0] as char
                    );
                }
            }
        }
        assert_eq!(decode(Bytes::new()), Err(DecodeError::Empty));
    }

    #[test]
    fn truncated_value_error_names_field_not_data() {
        let b = msg(|b| {
            b.put_u8(b'I');
            b.put_u32(1);
            b.put_u8(b'N');
            b.put_i16(1);
            b.put_u8(b't');
            b.put_i32(100);
            b.put_slice(b"secret-row-data");
        });
        let err = decode(b).unwrap_err().to_string();
        assert!(
            err.contains("insert") && err.contains("column value"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn values_are_slices_of_the_input() {
        let b = msg(|b| {
            b.put_u8(b'I');
            b.put_u32(1);
            b.put_u8(b'N');
            put_tuple(b);
        });
        let range = b.as_ptr() as usize..b.as_ptr() as usize + b.len();
        let PgOutput::Insert { new, .. } = decode(b.clone()).unwrap() else {
            panic!("not an insert")
        };
        let TupleValue::Text(v) = &new[0] else {
            panic!("not text")
        };
        assert!(range.contains(&(v.as_ptr() as usize)));
    }

    #[test]
    fn unknown_message_type_is_named() {
        let err = decode(Bytes::from_static(b"S\0\0\0\x01")).unwrap_err();
        assert_eq!(err, DecodeError::UnknownMessage { byte: b'S' });
        assert!(err.to_string().contains("'S'"), "{err}");
        let err = decode(Bytes::from_static(&[0x01])).unwrap_err();
        assert!(err.to_string().contains("0x01"), "{err}");
    }

    #[test]
    fn malformed_parts_are_rejected() {
        // unknown column kind
        let b = msg(|b| {
            b.put_u8(b'I');
            b.put_u32(1);
            b.put_u8(b'N');
            b.put_i16(1);
            b.put_u8(b'x');
        });
        assert!(decode(b)
            .unwrap_err()
            .to_string()
            .contains("column kind 'x'"));
        // wrong tuple marker
        let b = msg(|b| {
            b.put_u8(b'D');
            b.put_u32(1);
            b.put_u8(b'N');
            put_tuple(b);
        });
        assert!(decode(b).unwrap_err().to_string().contains("marker"));
        // negative value length
        let b = msg(|b| {
            b.put_u8(b'I');
            b.put_u32(1);
            b.put_u8(b'N');
            b.put_i16(1);
            b.put_u8(b't');
            b.put_i32(-2);
        });
        assert!(decode(b).unwrap_err().to_string().contains("negative"));
        // trailing bytes
        let mut b = BytesMut::from(&samples()[0].0[..]);
        b.put_u8(0);
        assert!(decode(b.freeze())
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        // invalid UTF-8 in a name
        let b = msg(|b| {
            b.put_u8(b'Y');
            b.put_u32(1);
            b.put_slice(&[0xff, 0]);
            cstr(b, "t");
        });
        assert!(decode(b).unwrap_err().to_string().contains("UTF-8"));
    }
}
