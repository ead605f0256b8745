//! PostgreSQL column types as engine [`DataType`]s.
//!
//! Built-in types are recognized by OID (stable across servers and versions);
//! their `atttypmod` gives lengths, precisions and scales. Everything else
//! (enums, domains, geometric and network types, ...) is
//! [`DataType::Other`], whose values travel as PostgreSQL text.

use engine::DataType;

/// Built-in type OIDs (`pg_type.oid`, fixed in PostgreSQL's catalog).
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `"char" (single byte)`
    pub const CHAR: u32 = 18;
    /// `name`
    pub const NAME: u32 = 19;
    /// `int8 / bigint`
    pub const INT8: u32 = 20;
    /// `int2 / smallint`
    pub const INT2: u32 = 21;
    /// `int4 / integer`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `oid`
    pub const OID: u32 = 26;
    /// `json`
    pub const JSON: u32 = 114;
    /// `float4 / real`
    pub const FLOAT4: u32 = 700;
    /// `float8 / double precision`
    pub const FLOAT8: u32 = 701;
    /// `bpchar / character(n)`
    pub const BPCHAR: u32 = 1042;
    /// `varchar / character varying(n)`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time without time zone`
    pub const TIME: u32 = 1083;
    /// `timestamp without time zone`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamp with time zone`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
    /// `jsonb`
    pub const JSONB: u32 = 3802;
}

/// `(array type OID, element type OID)` of the built-in arrays of the types above.
const ARRAYS: &[(u32, u32)] = &[
    (1000, oid::BOOL),
    (1001, oid::BYTEA),
    (1002, oid::CHAR),
    (1003, oid::NAME),
    (1016, oid::INT8),
    (1005, oid::INT2),
    (1007, oid::INT4),
    (1009, oid::TEXT),
    (1028, oid::OID),
    (199, oid::JSON),
    (1021, oid::FLOAT4),
    (1022, oid::FLOAT8),
    (1014, oid::BPCHAR),
    (1015, oid::VARCHAR),
    (1182, oid::DATE),
    (1183, oid::TIME),
    (1115, oid::TIMESTAMP),
    (1185, oid::TIMESTAMPTZ),
    (1187, oid::INTERVAL),
    (1231, oid::NUMERIC),
    (2951, oid::UUID),
    (3807, oid::JSONB),
];

/// `atttypmod` overhead: length-style typmods count the 4-byte varlena header.
const VARHDRSZ: i32 = 4;

/// Maps a PostgreSQL column to an engine [`DataType`].
///
/// `type_oid`, `type_mod` (atttypmod), `elem_oid` (pg_type.typelem for arrays, 0 otherwise),
/// `formatted` = format_type(oid, typmod) as the catalog returns it.
///
/// For an array the typmod applies to its elements (`varchar(10)[]`). An
/// array whose element type is not modelled is `Other` as a whole.
pub fn data_type(type_oid: u32, type_mod: i32, elem_oid: u32, formatted: &str) -> DataType {
    if let Some(scalar) = scalar_type(type_oid, type_mod) {
        return scalar;
    }
    let elem = ARRAYS
        .iter()
        .find(|(array, _)| *array == type_oid)
        .map(|(_, elem)| *elem)
        // An array type not in the table whose element is a modelled type.
        .or_else(|| (elem_oid != 0 && formatted.ends_with("[]")).then_some(elem_oid));
    if let Some(elem) = elem.and_then(|e| scalar_type(e, type_mod)) {
        return DataType::Array(Box::new(elem));
    }
    DataType::Other {
        name: formatted.to_string(),
    }
}

/// The modelled non-array types; `None` for anything else.
fn scalar_type(type_oid: u32, type_mod: i32) -> Option<DataType> {
    Some(match type_oid {
        oid::BOOL => DataType::Bool,
        oid::BYTEA => DataType::Bytes,
        oid::INT2 => DataType::Int16,
        oid::INT4 => DataType::Int32,
        oid::INT8 => DataType::Int64,
        // Unsigned 32-bit: only a 64-bit integer holds every value.
        oid::OID => DataType::Int64,
        oid::FLOAT4 => DataType::Float32,
        oid::FLOAT8 => DataType::Float64,
        oid::NUMERIC => numeric(type_mod),
        oid::TEXT => DataType::Text { max_len: None },
        // `name` holds up to 63 bytes; its text form is plain text.
        oid::NAME => DataType::Text { max_len: None },
        // The single-byte `"char"`: its text form is one character or, for a
        // byte above 127, an octal escape like `\377` (so no length limit is claimed).
        oid::CHAR => DataType::Text { max_len: None },
        oid::VARCHAR => DataType::Text {
            max_len: length(type_mod),
        },
        oid::BPCHAR => DataType::Char {
            len: length(type_mod),
        },
        oid::DATE => DataType::Date,
        oid::TIME => DataType::Time {
            precision: precision(type_mod),
        },
        oid::TIMESTAMP => DataType::Timestamp {
            precision: precision(type_mod),
        },
        oid::TIMESTAMPTZ => DataType::TimestampTz {
            precision: precision(type_mod),
        },
        oid::INTERVAL => DataType::Interval,
        oid::UUID => DataType::Uuid,
        oid::JSON => DataType::Json,
        oid::JSONB => DataType::Jsonb,
        _ => return None,
    })
}

/// `varchar(n)` / `char(n)`: typmod is `n + 4`; `-1` means no limit.
fn length(type_mod: i32) -> Option<u32> {
    (type_mod >= VARHDRSZ).then(|| (type_mod - VARHDRSZ) as u32)
}

/// `time(p)` / `timestamp(p)`: typmod is `p`; `-1` means the default (6).
fn precision(type_mod: i32) -> Option<u32> {
    u32::try_from(type_mod).ok()
}

/// `numeric(p, s)`: typmod is `((p << 16) | (s & 0x7ff)) + 4`; `-1` means
/// unconstrained. PostgreSQL 15+ allows a negative scale (`numeric(5,-2)`
/// rounds to hundreds): such a column holds integers of up to `p - s` digits,
/// exactly what `numeric(p - s, 0)` holds, which is how it is described.
fn numeric(type_mod: i32) -> DataType {
    if type_mod < VARHDRSZ {
        return DataType::Decimal {
            precision: None,
            scale: None,
        };
    }
    let m = type_mod - VARHDRSZ;
    let precision = (m >> 16) & 0xffff;
    // The scale is an 11-bit two's complement number.
    let scale = ((m & 0x7ff) ^ 0x400) - 0x400;
    let (precision, scale) = if scale < 0 {
        (precision - scale, 0)
    } else {
        (precision, scale)
    };
    DataType::Decimal {
        precision: Some(precision as u32),
        scale: Some(scale as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(elem: DataType) -> DataType {
        DataType::Array(Box::new(elem))
    }

    /// The typmod `numeric(p, s)` gets from PostgreSQL.
    fn numeric_typmod(p: i32, s: i32) -> i32 {
        ((p << 16) | (s & 0x7ff)) + VARHDRSZ
    }

    #[test]
    fn simple_scalars() {
        let cases = [
            (oid::BOOL, "boolean", DataType::Bool),
            (oid::BYTEA, "bytea", DataType::Bytes),
            (oid::INT2, "smallint", DataType::Int16),
            (oid::INT4, "integer", DataType::Int32),
            (oid::INT8, "bigint", DataType::Int64),
            (oid::OID, "oid", DataType::Int64),
            (oid::FLOAT4, "real", DataType::Float32),
            (oid::FLOAT8, "double precision", DataType::Float64),
            (oid::TEXT, "text", DataType::Text { max_len: None }),
            (oid::NAME, "name", DataType::Text { max_len: None }),
            (oid::CHAR, "\"char\"", DataType::Text { max_len: None }),
            (oid::DATE, "date", DataType::Date),
            (oid::INTERVAL, "interval", DataType::Interval),
            (oid::UUID, "uuid", DataType::Uuid),
            (oid::JSON, "json", DataType::Json),
            (oid::JSONB, "jsonb", DataType::Jsonb),
        ];
        for (type_oid, formatted, want) in cases {
            assert_eq!(data_type(type_oid, -1, 0, formatted), want, "{formatted}");
        }
    }

    #[test]
    fn interval_typmods_do_not_matter() {
        // interval(3) and interval day to second carry typmods; the values are intervals.
        assert_eq!(
            data_type(oid::INTERVAL, 2147418115, 0, "interval(3)"),
            DataType::Interval
        );
    }

    #[test]
    fn numeric_precision_and_scale() {
        let unconstrained = DataType::Decimal {
            precision: None,
            scale: None,
        };
        assert_eq!(data_type(oid::NUMERIC, -1, 0, "numeric"), unconstrained);
        let dec = |p, s| DataType::Decimal {
            precision: Some(p),
            scale: Some(s),
        };
        assert_eq!(
            data_type(oid::NUMERIC, numeric_typmod(10, 2), 0, "numeric(10,2)"),
            dec(10, 2)
        );
        // Known typmod values as the catalog stores them.
        assert_eq!(
            data_type(oid::NUMERIC, 655366, 0, "numeric(10,2)"),
            dec(10, 2)
        );
        assert_eq!(
            data_type(oid::NUMERIC, 1310724, 0, "numeric(20,0)"),
            dec(20, 0)
        );
        assert_eq!(
            data_type(
                oid::NUMERIC,
                numeric_typmod(1000, 1000),
                0,
                "numeric(1000,1000)"
            ),
            dec(1000, 1000)
        );
        // PostgreSQL 15: scale above precision, and negative scale.
        assert_eq!(
            data_type(oid::NUMERIC, numeric_typmod(2, 5), 0, "numeric(2,5)"),
            dec(2, 5)
        );
        assert_eq!(
            data_type(oid::NUMERIC, numeric_typmod(5, -2), 0, "numeric(5,-2)"),
            dec(7, 0)
        );
        assert_eq!(
            data_type(
                oid::NUMERIC,
                numeric_typmod(1, -1000),
                0,
                "numeric(1,-1000)"
            ),
            dec(1001, 0)
        );
    }

    #[test]
    fn character_lengths() {
        assert_eq!(
            data_type(oid::VARCHAR, 14, 0, "character varying(10)"),
            DataType::Text { max_len: Some(10) }
        );
        assert_eq!(
            data_type(oid::VARCHAR, -1, 0, "character varying"),
            DataType::Text { max_len: None }
        );
        assert_eq!(
            data_type(oid::BPCHAR, 9, 0, "character(5)"),
            DataType::Char { len: Some(5) }
        );
        assert_eq!(
            data_type(oid::BPCHAR, -1, 0, "bpchar"),
            DataType::Char { len: None }
        );
    }

    #[test]
    fn time_precisions() {
        assert_eq!(
            data_type(oid::TIME, -1, 0, "time without time zone"),
            DataType::Time { precision: None }
        );
        assert_eq!(
            data_type(oid::TIME, 3, 0, "time(3) without time zone"),
            DataType::Time { precision: Some(3) }
        );
        assert_eq!(
            data_type(oid::TIMESTAMP, 0, 0, "timestamp(0) without time zone"),
            DataType::Timestamp { precision: Some(0) }
        );
        assert_eq!(
            data_type(oid::TIMESTAMP, -1, 0, "timestamp without time zone"),
            DataType::Timestamp { precision: None }
        );
        assert_eq!(
            data_type(oid::TIMESTAMPTZ, 6, 0, "timestamp(6) with time zone"),
            DataType::TimestampTz { precision: Some(6) }
        );
        assert_eq!(
            data_type(oid::TIMESTAMPTZ, -1, 0, "timestamp with time zone"),
            DataType::TimestampTz { precision: None }
        );
    }

    #[test]
    fn arrays_of_every_modelled_type() {
        for &(array, elem) in ARRAYS {
            let want = arr(scalar_type(elem, -1).expect("element is modelled"));
            assert_eq!(data_type(array, -1, elem, "x[]"), want, "array oid {array}");
            // Callers that leave elem_oid out still get the array.
            assert_eq!(data_type(array, -1, 0, "x[]"), want, "array oid {array}");
        }
        assert_eq!(
            data_type(1007, -1, oid::INT4, "integer[]"),
            arr(DataType::Int32)
        );
        assert_eq!(
            data_type(3807, -1, oid::JSONB, "jsonb[]"),
            arr(DataType::Jsonb)
        );
    }

    #[test]
    fn array_typmods_apply_to_elements() {
        assert_eq!(
            data_type(1015, 14, oid::VARCHAR, "character varying(10)[]"),
            arr(DataType::Text { max_len: Some(10) })
        );
        assert_eq!(
            data_type(1014, 7, oid::BPCHAR, "character(3)[]"),
            arr(DataType::Char { len: Some(3) })
        );
        assert_eq!(
            data_type(1231, numeric_typmod(12, 4), oid::NUMERIC, "numeric(12,4)[]"),
            arr(DataType::Decimal {
                precision: Some(12),
                scale: Some(4)
            })
        );
        assert_eq!(
            data_type(1185, 3, oid::TIMESTAMPTZ, "timestamp(3) with time zone[]"),
            arr(DataType::TimestampTz { precision: Some(3) })
        );
    }

    #[test]
    fn everything_else_is_other() {
        let other = |name: &str| DataType::Other { name: name.into() };
        // timetz, inet, point, money, an enum, a domain over integer.
        assert_eq!(
            data_type(1266, -1, 0, "time with time zone"),
            other("time with time zone")
        );
        assert_eq!(data_type(869, -1, 0, "inet"), other("inet"));
        assert_eq!(data_type(600, -1, 0, "point"), other("point"));
        assert_eq!(data_type(790, -1, 0, "money"), other("money"));
        assert_eq!(data_type(16_384, -1, 0, "mood"), other("mood"));
        assert_eq!(
            data_type(16_390, -1, 0, "positive_int"),
            other("positive_int")
        );
        // Arrays of unmodelled types, including user-defined ones.
        assert_eq!(data_type(1041, -1, 869, "inet[]"), other("inet[]"));
        assert_eq!(data_type(16_383, -1, 16_384, "mood[]"), other("mood[]"));
        // `name` has a typelem (18) without being an array.
        assert_eq!(
            data_type(oid::NAME, -1, oid::CHAR, "name"),
            DataType::Text { max_len: None }
        );
        // int2vector has a typelem but is not an array type in the table.
        assert_eq!(
            data_type(22, -1, oid::INT2, "int2vector"),
            other("int2vector")
        );
    }
}
