//! JavaScript scripts on an embedded QuickJS (`rquickjs`): one runtime per
//! script, a bounded heap, and an interrupt handler enforcing `timeout_ms`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rquickjs::{Array, BigInt, Context, Ctx, Function, Object, Runtime, Type, Value as JsValue};

use super::Outcome;
use crate::config::Params;
use crate::mapping::dec::Dec;
use crate::mapping::expr::Column;
use crate::mapping::types::{convert, text_of, type_label};
use crate::value::{DataType, Value};

/// Heap limit of one script's runtime.
const MEMORY_LIMIT: usize = 64 * 1024 * 1024;
/// Stack limit (deep recursion fails cleanly).
const STACK_LIMIT: usize = 1024 * 1024;
const FUNC: &str = "transform";
const PARAMS: &str = "__dbsync_params";
/// Integers JavaScript numbers hold exactly.
const SAFE_INT: i64 = (1 << 53) - 1;

/// A compiled JavaScript script.
pub struct JsScript {
    // The context is dropped before the runtime (field order).
    ctx: Context,
    _rt: Runtime,
    /// Nanoseconds since `epoch` after which a run is interrupted; 0 = none.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
    timeout: Duration,
}

impl JsScript {
    /// Evaluates the content (which must define `transform`) in a fresh runtime.
    pub fn compile(content: &str, params: &Params, timeout: Duration) -> Result<Self, String> {
        let rt = Runtime::new().map_err(|e| format!("cannot start the JavaScript engine: {e}"))?;
        rt.set_memory_limit(MEMORY_LIMIT);
        rt.set_max_stack_size(STACK_LIMIT);
        let deadline = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let d = deadline.clone();
        rt.set_interrupt_handler(Some(Box::new(move || {
            let at = d.load(Ordering::Relaxed);
            at != 0 && epoch.elapsed().as_nanos() as u64 > at
        })));
        let ctx =
            Context::full(&rt).map_err(|e| format!("cannot start the JavaScript engine: {e}"))?;
        let script = Self {
            ctx,
            _rt: rt,
            deadline,
            epoch,
            timeout,
        };
        let params_json = serde_json::to_string(params).map_err(|e| e.to_string())?;
        script.with_deadline(|| {
            script.ctx.with(|ctx| -> Result<(), String> {
                ctx.eval::<(), _>(content)
                    .map_err(|e| describe(&ctx, e, "loading the script", timeout))?;
                let f: JsValue = ctx.globals().get(FUNC).map_err(|e| e.to_string())?;
                if !f.is_function() {
                    return Err("the script must define function transform(record, params)".into());
                }
                let p = ctx
                    .json_parse(params_json.as_str())
                    .map_err(|e| describe(&ctx, e, "reading script_params", timeout))?;
                ctx.globals().set(PARAMS, p).map_err(|e| e.to_string())
            })
        })?;
        Ok(script)
    }

    fn with_deadline<T>(&self, f: impl FnOnce() -> T) -> T {
        let at = self.epoch.elapsed() + self.timeout;
        self.deadline
            .store((at.as_nanos() as u64).max(1), Ordering::Relaxed);
        let out = f();
        self.deadline.store(0, Ordering::Relaxed);
        out
    }

    /// Calls `transform(record, params)`; on success the record's columns are
    /// replaced by what it returned (on failure `row` is left as it was).
    pub fn run(&self, row: &mut [Value], cols: &[Column]) -> Result<Outcome, String> {
        self.with_deadline(|| {
            self.ctx.with(|ctx| {
                let obj = Object::new(ctx.clone()).map_err(|e| e.to_string())?;
                for (c, v) in cols.iter().zip(row.iter()) {
                    let js = to_js(&ctx, v).map_err(|e| e.to_string())?;
                    obj.set(c.name.as_str(), js).map_err(|e| e.to_string())?;
                }
                let globals = ctx.globals();
                let f: Function = globals.get(FUNC).map_err(|e| e.to_string())?;
                let p: JsValue = globals.get(PARAMS).map_err(|e| e.to_string())?;
                let ret: JsValue = f
                    .call((obj, p))
                    .map_err(|e| describe(&ctx, e, "transform", self.timeout))?;
                if ret.is_null() {
                    return Ok(Outcome::Drop);
                }
                let Some(out) = ret.as_object() else {
                    return Err(if ret.is_undefined() {
                        "transform returned nothing: return the record, or null to drop it".into()
                    } else {
                        "transform must return an object (the record) or null".into()
                    });
                };
                let mut values = Vec::with_capacity(cols.len());
                for (c, old) in cols.iter().zip(row.iter()) {
                    let v: JsValue = out.get(c.name.as_str()).map_err(|e| e.to_string())?;
                    let unsent = matches!(old, Value::Unchanged);
                    values.push(
                        from_js(&ctx, v, &c.ty, unsent).map_err(|e| {
                            format!("column {} ({}): {e}", c.name, type_label(&c.ty))
                        })?,
                    );
                }
                for (slot, v) in row.iter_mut().zip(values) {
                    *slot = v;
                }
                Ok(Outcome::Keep)
            })
        })
    }
}

/// Describes a failure without the values it may carry: built-in engine
/// errors keep their message; user-thrown errors only their kind and place.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error, during: &str, timeout: Duration) -> String {
    if !matches!(e, rquickjs::Error::Exception) {
        return format!("{during}: {e}");
    }
    let thrown = ctx.catch();
    let Some(ex) = thrown.as_exception() else {
        return format!("{during} threw a non-Error value (withheld: it may hold row values)");
    };
    let name: String = ex.get("name").unwrap_or_else(|_| "Error".into());
    let message = ex.message().unwrap_or_default();
    if name == "InternalError" && message.contains("interrupted") {
        return format!("{during} exceeded timeout_ms ({} ms)", timeout.as_millis());
    }
    let place = ex
        .stack()
        .and_then(|s| {
            s.lines()
                .find(|l| l.contains("at "))
                .map(|l| l.trim().to_string())
        })
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    match name.as_str() {
        "TypeError" | "ReferenceError" | "RangeError" | "InternalError" => {
            format!("{during}: {name}: {message}{place}")
        }
        "SyntaxError" if during == "loading the script" => {
            format!("{during}: {name}: {message}{place}")
        }
        _ => format!("{during} threw {name}{place} (message withheld: it may hold row values)"),
    }
}

fn js_str<'js>(ctx: &Ctx<'js>, s: &str) -> rquickjs::Result<JsValue<'js>> {
    rquickjs::String::from_str(ctx.clone(), s).map(|s| s.into_value())
}

/// A column value as JavaScript.
fn to_js<'js>(ctx: &Ctx<'js>, v: &Value) -> rquickjs::Result<JsValue<'js>> {
    Ok(match v {
        Value::Null => JsValue::new_null(ctx.clone()),
        Value::Unchanged => JsValue::new_undefined(ctx.clone()),
        Value::Bool(b) => JsValue::new_bool(ctx.clone(), *b),
        Value::Int16(i) => JsValue::new_int(ctx.clone(), *i as i32),
        Value::Int32(i) => JsValue::new_int(ctx.clone(), *i),
        Value::Int64(i) if (-SAFE_INT..=SAFE_INT).contains(i) => {
            JsValue::new_float(ctx.clone(), *i as f64)
        }
        Value::Int64(i) => BigInt::from_i64(ctx.clone(), *i)?.into_value(),
        Value::Float32(f) => JsValue::new_float(ctx.clone(), *f as f64),
        Value::Float64(f) => JsValue::new_float(ctx.clone(), *f),
        Value::Text(s) | Value::Decimal(s) | Value::Json(s) | Value::Other(s) => js_str(ctx, s)?,
        Value::Array(items) => {
            let a = Array::new(ctx.clone())?;
            for (i, it) in items.iter().enumerate() {
                a.set(i, to_js(ctx, it)?)?;
            }
            a.into_value()
        }
        other => js_str(ctx, &text_of(other))?,
    })
}

/// A JavaScript value as a value of column type `ty`.
fn from_js<'js>(
    ctx: &Ctx<'js>,
    v: JsValue<'js>,
    ty: &DataType,
    unsent: bool,
) -> Result<Value, String> {
    let natural = match v.type_of() {
        Type::Undefined | Type::Uninitialized if unsent => return Ok(Value::Unchanged),
        Type::Undefined | Type::Uninitialized | Type::Null => return Ok(Value::Null),
        Type::Bool => Value::Bool(v.as_bool().unwrap_or(false)),
        Type::Int => Value::Int64(v.as_int().unwrap_or(0) as i64),
        Type::Float => {
            let f = v.as_float().unwrap_or(f64::NAN);
            match ty {
                DataType::Decimal { .. } | DataType::Text { .. } | DataType::Char { .. } => {
                    match Dec::from_f64(f) {
                        Some(d) => Value::Decimal(d.to_text()),
                        None => Value::Float64(f),
                    }
                }
                DataType::Int16 | DataType::Int32 | DataType::Int64
                    if f.fract() == 0.0 && f.abs() <= SAFE_INT as f64 =>
                {
                    Value::Int64(f as i64)
                }
                _ => Value::Float64(f),
            }
        }
        Type::BigInt => Value::Int64(
            v.as_big_int()
                .cloned()
                .ok_or("not a BigInt")?
                .to_i64()
                .map_err(|_| "a BigInt out of the 64-bit range")?,
        ),
        Type::String => Value::Text(
            v.as_string()
                .ok_or("not a string")?
                .to_string()
                .map_err(|e| e.to_string())?,
        ),
        Type::Array => {
            let DataType::Array(elem) = ty else {
                return Err("an array cannot be stored in this column".into());
            };
            let a = v.as_array().ok_or("not an array")?;
            let mut items = Vec::with_capacity(a.len());
            for it in a.iter::<JsValue>() {
                items.push(from_js(ctx, it.map_err(|e| e.to_string())?, elem, false)?);
            }
            return Ok(Value::Array(items));
        }
        Type::Object if matches!(ty, DataType::Json | DataType::Jsonb) => {
            let s = ctx
                .json_stringify(v)
                .map_err(|e| e.to_string())?
                .ok_or("the object has no JSON form")?;
            return Ok(Value::Json(s.to_string().map_err(|e| e.to_string())?));
        }
        other => {
            return Err(format!(
                "a JavaScript {} cannot be stored in this column",
                other.as_str()
            ))
        }
    };
    convert(natural, ty).map_err(|e| e.0)
}
