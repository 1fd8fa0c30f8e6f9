//! The Open Inference Protocol (KServe V2) REST messages: decoding an inference request —
//! JSON, with `data` flat or nested, or with the binary tensor data extension (a JSON header
//! of `Inference-Header-Content-Length` bytes, then each input's raw bytes in order, sized by
//! its `binary_data_size` parameter) — and encoding a response, JSON or binary per output.
//!
//! Decoding never panics and never trusts a size: every count is checked against the shape,
//! the datatype and the bytes actually there, and every error is a [`ProtocolError`] naming
//! the input, the field and what was expected (the server answers it with 400).

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A V2 tensor datatype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `BOOL`: one byte, 0 or 1.
    Bool,
    /// `UINT8`.
    Uint8,
    /// `UINT16`.
    Uint16,
    /// `UINT32`.
    Uint32,
    /// `UINT64`.
    Uint64,
    /// `INT8`.
    Int8,
    /// `INT16`.
    Int16,
    /// `INT32`.
    Int32,
    /// `INT64`.
    Int64,
    /// `FP16` (binary only: JSON has no half-precision numbers).
    Fp16,
    /// `FP32`.
    Fp32,
    /// `FP64`.
    Fp64,
    /// `BYTES`: strings; in binary, each element a 4-byte little-endian length and its bytes.
    Bytes,
}

impl DataType {
    /// Every datatype.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol's name (`FP32`).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// The datatype named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element in binary (`None` for `BYTES`, whose elements carry their length).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }
}

/// A request the protocol cannot accept: the server's 400, with this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn bad(message: impl Into<String>) -> ProtocolError {
    ProtocolError(message.into())
}

/// A decoded tensor's values, each datatype at its own width (row-major).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `BOOL`.
    Bool(Vec<bool>),
    /// `UINT8`.
    Uint8(Vec<u8>),
    /// `UINT16`.
    Uint16(Vec<u16>),
    /// `UINT32`.
    Uint32(Vec<u32>),
    /// `UINT64`.
    Uint64(Vec<u64>),
    /// `INT8`.
    Int8(Vec<i8>),
    /// `INT16`.
    Int16(Vec<i16>),
    /// `INT32`.
    Int32(Vec<i32>),
    /// `INT64`.
    Int64(Vec<i64>),
    /// `FP16`, widened to `f32` (exactly: every half-precision value is an `f32`).
    Fp16(Vec<f32>),
    /// `FP32`.
    Fp32(Vec<f32>),
    /// `FP64`.
    Fp64(Vec<f64>),
    /// `BYTES`.
    Bytes(Vec<Vec<u8>>),
}

impl TensorData {
    /// The number of elements.
    ///
    /// ```
    /// use mlops_serve::http::protocol::TensorData;
    /// assert_eq!(TensorData::Fp32(vec![1.0, 2.0]).len(), 2);
    /// assert!(TensorData::Int64(vec![]).is_empty());
    /// ```
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::Uint8(v) => v.len(),
            TensorData::Uint16(v) => v.len(),
            TensorData::Uint32(v) => v.len(),
            TensorData::Uint64(v) => v.len(),
            TensorData::Int8(v) => v.len(),
            TensorData::Int16(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Fp16(v) | TensorData::Fp32(v) => v.len(),
            TensorData::Fp64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoded input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Its name.
    pub name: String,
    /// Its shape (every dimension ≥ 0; the element count is their product).
    pub shape: Vec<usize>,
    /// Its datatype.
    pub datatype: DataType,
    /// Its values, row-major.
    pub data: TensorData,
}

/// An output asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Its name.
    pub name: String,
    /// Whether to send it in binary.
    pub binary: bool,
}

/// A decoded inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The request's `id`, echoed in the response when given.
    pub id: Option<String>,
    /// The inputs.
    pub inputs: Vec<Tensor>,
    /// The outputs asked for (`None`: all).
    pub outputs: Option<Vec<RequestedOutput>>,
    /// Whether outputs not asked for individually go in binary (`binary_data_output`).
    pub binary_output: bool,
    /// The request's sensitive group (`parameters.group`: a string that
    /// [`group_name_problem`](crate::step_stats::group_name_problem) accepts), kept with its
    /// labeled rows for the `fairness` canary check and the monitor's group gauges.
    pub group: Option<String>,
    /// The request's `parameters` object as sent (the endpoints that read more of it, such as
    /// `explain`, check their own keys).
    pub parameters: Option<serde_json::Map<String, Value>>,
}

/// Most elements a tensor may declare: bounds the work a hostile shape can ask for before
/// the data is seen.
const MAX_ELEMENTS: usize = 1 << 28;

fn element_count(name: &str, shape: &[usize]) -> Result<usize, ProtocolError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            bad(format!(
                "input {name:?}: shape {shape:?} has more than {MAX_ELEMENTS} elements"
            ))
        })
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ProtocolError> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what}: expected a JSON object, got {}", kind(v))))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn flag(parameters: Option<&Value>, key: &str, what: &str) -> Result<bool, ProtocolError> {
    match parameters.and_then(|p| p.get(key)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(bad(format!(
            "{what}: parameter {key:?} must be a boolean, got {}",
            kind(other)
        ))),
    }
}

/// Flattens JSON `data` (row-major) into `out`. Flat data (an array of scalars) is taken as
/// it is (its count is checked against the shape by the caller); nested data must follow the
/// shape exactly — `shape[d]` items at depth `d`, scalars at the last — so ragged rows
/// (`[[9 values], [11 values]]` for `[2, 10]`) are refused, never re-cut across rows.
fn flatten<'a>(
    v: &'a Value,
    shape: &[usize],
    out: &mut Vec<&'a Value>,
    name: &str,
) -> Result<(), ProtocolError> {
    match v {
        Value::Array(items) if items.iter().any(Value::is_array) => {
            nested(v, shape, &mut Vec::new(), out, name)
        }
        Value::Array(items) => {
            out.extend(items);
            Ok(())
        }
        scalar => {
            out.push(scalar);
            Ok(())
        }
    }
}

/// `data[i][j]...` for the indices in `path`.
fn path_text(path: &[usize]) -> String {
    let mut text = String::from("data");
    for i in path {
        text.push_str(&format!("[{i}]"));
    }
    text
}

/// Nested `data` at the depth of `path` (the indices that led to `v`), checked against `shape`.
fn nested<'a>(
    v: &'a Value,
    shape: &[usize],
    path: &mut Vec<usize>,
    out: &mut Vec<&'a Value>,
    name: &str,
) -> Result<(), ProtocolError> {
    let depth = path.len();
    match (v, shape.get(depth)) {
        (Value::Array(items), Some(&expected)) => {
            if items.len() != expected {
                return Err(bad(format!(
                    "input {name:?}: {} has {} elements but shape {shape:?} expects {expected} at depth {depth} (nested data must follow the shape)",
                    path_text(path),
                    items.len()
                )));
            }
            for (i, item) in items.iter().enumerate() {
                path.push(i);
                nested(item, shape, path, out, name)?;
                path.pop();
            }
            Ok(())
        }
        (Value::Array(_), None) => Err(bad(format!(
            "input {name:?}: {} is nested deeper than shape {shape:?}",
            path_text(path)
        ))),
        (scalar, None) => {
            out.push(scalar);
            Ok(())
        }
        (scalar, Some(_)) => Err(bad(format!(
            "input {name:?}: {} is {} where shape {shape:?} expects an array at depth {depth}",
            path_text(path),
            kind(scalar)
        ))),
    }
}

/// A numeric element of a tensor, decoded from a JSON number at its own width.
trait Element: Sized + Copy {
    /// From a JSON integer that fits an `i64`; `None` when out of this type's range.
    fn from_i64(n: i64) -> Option<Self>;
    /// From a JSON integer that fits a `u64`; `None` when out of this type's range.
    fn from_u64(n: u64) -> Option<Self>;
    /// From a JSON number with a fraction or an exponent; `None` for integer types, and for
    /// a finite value beyond the type's range.
    fn from_f64(x: f64) -> Option<Self>;
    /// Whether this is a floating-point type (any JSON number is accepted, rounded).
    const FLOAT: bool;
    /// What a value is expected to be, for an error.
    fn expected() -> String;
    /// The decoded values.
    fn wrap(values: Vec<Self>) -> TensorData;
}

macro_rules! integer_element {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl Element for $t {
            const FLOAT: bool = false;
            fn from_i64(n: i64) -> Option<Self> {
                <$t>::try_from(n).ok()
            }
            fn from_u64(n: u64) -> Option<Self> {
                <$t>::try_from(n).ok()
            }
            fn from_f64(_: f64) -> Option<Self> {
                None
            }
            fn expected() -> String {
                format!("an integer in [{}, {}]", <$t>::MIN, <$t>::MAX)
            }
            fn wrap(values: Vec<Self>) -> TensorData {
                TensorData::$variant(values)
            }
        }
    )*};
}

integer_element!(u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64);

impl Element for f32 {
    const FLOAT: bool = true;
    // As the JSON number's f64 (what `serde_json::Value::as_f64` gives), then rounded once.
    fn from_i64(n: i64) -> Option<Self> {
        Some(n as f64 as f32)
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(n as f64 as f32)
    }
    fn from_f64(x: f64) -> Option<Self> {
        let f = x as f32;
        (f.is_finite() || !x.is_finite()).then_some(f)
    }
    fn expected() -> String {
        "a number".into()
    }
    fn wrap(values: Vec<Self>) -> TensorData {
        TensorData::Fp32(values)
    }
}

impl Element for f64 {
    const FLOAT: bool = true;
    fn from_i64(n: i64) -> Option<Self> {
        Some(n as f64)
    }
    fn from_u64(n: u64) -> Option<Self> {
        Some(n as f64)
    }
    fn from_f64(x: f64) -> Option<Self> {
        Some(x)
    }
    fn expected() -> String {
        "a number".into()
    }
    fn wrap(values: Vec<Self>) -> TensorData {
        TensorData::Fp64(values)
    }
}

/// `data` as the request carries it: parsed into a tree, or the raw JSON text (the decoder's
/// fast path, which reads numbers straight into their typed vector).
#[derive(Clone, Copy)]
enum Data<'a> {
    Tree(&'a Value),
    Raw(&'a RawValue),
}

/// JSON `data` into values of `datatype`: numbers read straight from the text into a vector
/// of their own width (one write per value, no tree) when the data is well formed; anything
/// else goes through the tree, which names what is wrong.
fn json_data(
    name: &str,
    datatype: DataType,
    data: Data<'_>,
    shape: &[usize],
    count: usize,
) -> Result<TensorData, ProtocolError> {
    let raw = match data {
        Data::Tree(tree) => return tree_data(name, datatype, tree, shape, count),
        Data::Raw(raw) => raw,
    };
    let fast = match datatype {
        DataType::Fp32 => numbers::<f32>(raw, shape, count),
        DataType::Fp64 => numbers::<f64>(raw, shape, count),
        DataType::Uint8 => numbers::<u8>(raw, shape, count),
        DataType::Uint16 => numbers::<u16>(raw, shape, count),
        DataType::Uint32 => numbers::<u32>(raw, shape, count),
        DataType::Uint64 => numbers::<u64>(raw, shape, count),
        DataType::Int8 => numbers::<i8>(raw, shape, count),
        DataType::Int16 => numbers::<i16>(raw, shape, count),
        DataType::Int32 => numbers::<i32>(raw, shape, count),
        DataType::Int64 => numbers::<i64>(raw, shape, count),
        DataType::Bool | DataType::Fp16 | DataType::Bytes => None,
    };
    if let Some(data) = fast {
        return Ok(data);
    }
    let tree: Value = serde_json::from_str(raw.get())
        .map_err(|e| bad(format!("input {name:?}: data: not valid JSON: {e}")))?;
    tree_data(name, datatype, &tree, shape, count)
}

/// The numbers of raw JSON `data` when it is well formed for `shape` (flat, a scalar, or
/// nested exactly as the shape), holding exactly `count` values of `T`; `None` otherwise
/// (the tree decoder then says why).
fn numbers<T: Element>(raw: &RawValue, shape: &[usize], count: usize) -> Option<TensorData> {
    // A JSON number takes at least two bytes with its separator: a hostile shape cannot
    // make this reserve more than the text holds.
    let mut out = Vec::with_capacity(count.min(raw.get().len() / 2 + 1));
    let mut reader = serde_json::Deserializer::from_str(raw.get());
    let top = stream::Top {
        out: &mut out,
        shape,
        count,
    };
    serde::de::DeserializeSeed::deserialize(top, &mut reader).ok()?;
    (out.len() == count).then(|| T::wrap(out))
}

/// The streaming readers of [`numbers`]: every shape error is a plain refusal (the tree
/// decoder words it).
mod stream {
    use std::fmt;

    use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

    use super::Element;

    fn refuse<E: de::Error>() -> E {
        E::custom("not a well-formed tensor")
    }

    fn push<T: Element, E: de::Error>(out: &mut Vec<T>, v: Option<T>) -> Result<(), E> {
        out.push(v.ok_or_else(refuse)?);
        Ok(())
    }

    /// The whole `data`: a scalar, a flat array of numbers, or nested arrays (when its
    /// first item is an array) that follow the shape exactly.
    pub(super) struct Top<'s, T> {
        pub(super) out: &'s mut Vec<T>,
        pub(super) shape: &'s [usize],
        pub(super) count: usize,
    }

    /// One number.
    struct Scalar<'s, T>(&'s mut Vec<T>);

    /// The first item of the top array: a number (flat data) or an array (nested data).
    struct First<'s, T> {
        out: &'s mut Vec<T>,
        shape: &'s [usize],
    }

    /// An item at `depth` of nested data: an array of `shape[depth]` items, or a number at
    /// the shape's last depth.
    struct Nested<'s, T> {
        out: &'s mut Vec<T>,
        shape: &'s [usize],
        depth: usize,
    }

    macro_rules! numbers_into {
        ($out:expr) => {
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                push($out(self), T::from_i64(n)).map(|()| Default::default())
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                push($out(self), T::from_u64(n)).map(|()| Default::default())
            }
            fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
                push($out(self), T::from_f64(x)).map(|()| Default::default())
            }
        };
    }

    /// The items of an array at `depth`: exactly `shape[depth]`, each [`Nested`] one deeper.
    /// `seen` items were read already.
    fn rest_of_array<'de, T: Element, A: SeqAccess<'de>>(
        mut seq: A,
        out: &mut Vec<T>,
        shape: &[usize],
        depth: usize,
        mut seen: usize,
    ) -> Result<(), A::Error> {
        let expected = *shape.get(depth).ok_or_else(refuse)?;
        while seq
            .next_element_seed(Nested {
                out: &mut *out,
                shape,
                depth: depth + 1,
            })?
            .is_some()
        {
            seen += 1;
            if seen > expected {
                return Err(refuse());
            }
        }
        if seen == expected {
            Ok(())
        } else {
            Err(refuse())
        }
    }

    impl<'de, T: Element> DeserializeSeed<'de> for Top<'_, T> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de, T: Element> Visitor<'de> for Top<'_, T> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("tensor data")
        }
        numbers_into!(|s: Self| s.out);
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let Top { out, shape, count } = self;
            let first = First {
                out: &mut *out,
                shape,
            };
            match seq.next_element_seed(first)? {
                None => Ok(()),
                // Flat: numbers only, no more than the shape holds.
                Some(false) => {
                    while seq.next_element_seed(Scalar(&mut *out))?.is_some() {
                        if out.len() > count {
                            return Err(refuse());
                        }
                    }
                    Ok(())
                }
                // Nested: this array is depth 0 and its first item was read.
                Some(true) => rest_of_array(seq, out, shape, 0, 1),
            }
        }
    }

    impl<'de, T: Element> DeserializeSeed<'de> for Scalar<'_, T> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de, T: Element> Visitor<'de> for Scalar<'_, T> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        numbers_into!(|s: Self| s.0);
    }

    impl<'de, T: Element> DeserializeSeed<'de> for First<'_, T> {
        /// Whether the item was an array.
        type Value = bool;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de, T: Element> Visitor<'de> for First<'_, T> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number or an array")
        }
        numbers_into!(|s: Self| s.out);
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
            // Depth 0 must be an array too.
            if self.shape.is_empty() {
                return Err(refuse());
            }
            rest_of_array(seq, self.out, self.shape, 1, 0).map(|()| true)
        }
    }

    impl<'de, T: Element> DeserializeSeed<'de> for Nested<'_, T> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de, T: Element> Visitor<'de> for Nested<'_, T> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("nested tensor data")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
            self.scalar(T::from_i64(n))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
            self.scalar(T::from_u64(n))
        }
        fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
            self.scalar(T::from_f64(x))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
            rest_of_array(seq, self.out, self.shape, self.depth, 0)
        }
    }

    impl<T: Element> Nested<'_, T> {
        /// A number, allowed only at the shape's last depth.
        fn scalar<E: de::Error>(self, v: Option<T>) -> Result<(), E> {
            if self.depth == self.shape.len() {
                push(self.out, v)
            } else {
                Err(refuse())
            }
        }
    }
}

/// JSON `data`, parsed into a tree, into values of `datatype`; every refusal names the
/// element and what was expected.
fn tree_data(
    name: &str,
    datatype: DataType,
    data: &Value,
    shape: &[usize],
    count: usize,
) -> Result<TensorData, ProtocolError> {
    let mut flat = Vec::new();
    flatten(data, shape, &mut flat, name)?;
    if flat.len() != count {
        return Err(bad(format!(
            "input {name:?}: data has {} elements but its shape holds {count}",
            flat.len()
        )));
    }
    let at = |i: usize, v: &Value, expected: &str| {
        bad(format!(
            "input {name:?}: data[{i}] is {} ({v}); expected {expected} for {}",
            kind(v),
            datatype.name()
        ))
    };
    fn typed<T: Element>(
        flat: &[&Value],
        at: impl Fn(usize, &Value, &str) -> ProtocolError,
        beyond: impl Fn(usize, f64) -> ProtocolError,
    ) -> Result<TensorData, ProtocolError> {
        flat.iter()
            .enumerate()
            .map(|(i, v)| {
                let value = match v.as_i64() {
                    Some(n) => T::from_i64(n),
                    None => match v.as_u64() {
                        Some(n) => T::from_u64(n),
                        None => match v.as_f64() {
                            Some(x) => {
                                return T::from_f64(x).ok_or_else(|| {
                                    if T::FLOAT {
                                        beyond(i, x)
                                    } else {
                                        at(i, v, "an integer")
                                    }
                                })
                            }
                            None if T::FLOAT => return Err(at(i, v, "a number")),
                            None => return Err(at(i, v, "an integer")),
                        },
                    },
                };
                value.ok_or_else(|| at(i, v, &T::expected()))
            })
            .collect::<Result<Vec<T>, _>>()
            .map(T::wrap)
    }
    let beyond = |i: usize, x: f64| {
        bad(format!(
            "input {name:?}: element {i} = {x} is beyond FP32's range"
        ))
    };
    match datatype {
        DataType::Bool => Ok(TensorData::Bool(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| at(i, v, "true or false")))
                .collect::<Result<_, _>>()?,
        )),
        DataType::Fp16 => Err(bad(format!(
            "input {name:?}: FP16 has no JSON form; send it with the binary tensor data extension"
        ))),
        DataType::Bytes => Ok(TensorData::Bytes(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or_else(|| at(i, v, "a string"))
                })
                .collect::<Result<_, _>>()?,
        )),
        DataType::Fp32 => typed::<f32>(&flat, at, beyond),
        DataType::Fp64 => typed::<f64>(&flat, at, beyond),
        DataType::Uint8 => typed::<u8>(&flat, at, beyond),
        DataType::Uint16 => typed::<u16>(&flat, at, beyond),
        DataType::Uint32 => typed::<u32>(&flat, at, beyond),
        DataType::Uint64 => typed::<u64>(&flat, at, beyond),
        DataType::Int8 => typed::<i8>(&flat, at, beyond),
        DataType::Int16 => typed::<i16>(&flat, at, beyond),
        DataType::Int32 => typed::<i32>(&flat, at, beyond),
        DataType::Int64 => typed::<i64>(&flat, at, beyond),
    }
}

/// Raw little-endian bytes into values of `datatype`.
fn binary_data(
    name: &str,
    datatype: DataType,
    bytes: &[u8],
    count: usize,
) -> Result<TensorData, ProtocolError> {
    let Some(size) = datatype.size() else {
        let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(bad(format!(
                    "input {name:?}: BYTES element {} has a truncated length",
                    out.len()
                )));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err(bad(format!(
                    "input {name:?}: BYTES element {} declares {len} bytes but {} remain",
                    out.len(),
                    tail.len()
                )));
            }
            out.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        if out.len() != count {
            return Err(bad(format!(
                "input {name:?}: binary data holds {} BYTES elements but its shape holds {count}",
                out.len()
            )));
        }
        return Ok(TensorData::Bytes(out));
    };
    if bytes.len() != count * size {
        return Err(bad(format!(
            "input {name:?}: binary_data_size is {} bytes but {count} {} elements take {}",
            bytes.len(),
            datatype.name(),
            count * size
        )));
    }
    macro_rules! le {
        ($t:ty, $variant:ident) => {
            TensorData::$variant(
                bytes
                    .chunks_exact(size)
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )
        };
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            bytes
                .iter()
                .enumerate()
                .map(|(i, &b)| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    other => Err(bad(format!(
                        "input {name:?}: BOOL element {i} is byte {other}; expected 0 or 1"
                    ))),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Fp16 => TensorData::Fp16(
            bytes
                .chunks_exact(size)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ),
        DataType::Fp32 => le!(f32, Fp32),
        DataType::Fp64 => le!(f64, Fp64),
        DataType::Uint8 => le!(u8, Uint8),
        DataType::Int8 => le!(i8, Int8),
        DataType::Uint16 => le!(u16, Uint16),
        DataType::Int16 => le!(i16, Int16),
        DataType::Uint32 => le!(u32, Uint32),
        DataType::Int32 => le!(i32, Int32),
        DataType::Uint64 => le!(u64, Uint64),
        DataType::Int64 => le!(i64, Int64),
        // Sized types only: `BYTES` returned above.
        DataType::Bytes => TensorData::Bytes(Vec::new()),
    })
}

/// Decodes a request body. `header_length` is the `Inference-Header-Content-Length` header
/// (the binary extension), `None` when the whole body is JSON.
pub fn decode_request(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<InferRequest, ProtocolError> {
    let (json, binary) = match header_length {
        None => (body, &body[body.len()..]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(bad(format!(
                "Inference-Header-Content-Length is {n} but the body has {} bytes",
                body.len()
            )))
        }
    };
    // The fast path: the JSON read once, each input's `data` kept as its raw text (read
    // straight into typed values later). Anything it does not take (a duplicate key, an
    // input that is not an object, invalid JSON) goes through the tree, which words the error.
    if let Ok(raw) = serde_json::from_slice::<raw::Root<'_>>(json) {
        return decode_root(&raw.fields, Inputs::Raw(&raw.inputs), header_length, binary);
    }
    let root: Value = serde_json::from_slice(json)
        .map_err(|e| bad(format!("request body: not valid JSON: {e}")))?;
    let root = object(&root, "request body")?;
    decode_root(
        root,
        Inputs::Tree(root.get("inputs")),
        header_length,
        binary,
    )
}

/// The request's inputs: from the tree (`inputs` as it is, checked here), or from the fast
/// path (objects, `data` kept raw).
enum Inputs<'a> {
    Tree(Option<&'a Value>),
    Raw(&'a [raw::Input<'a>]),
}

/// The request body read with each input's `data` left as raw JSON text.
mod raw {
    use std::fmt;

    use serde::de::{self, Deserialize, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use serde_json::{Map, Value};

    /// The body: every field but `inputs`, and the inputs.
    pub(super) struct Root<'a> {
        pub(super) fields: Map<String, Value>,
        pub(super) inputs: Vec<Input<'a>>,
    }

    /// An input: every field but `data`, and `data`'s text.
    pub(super) struct Input<'a> {
        pub(super) fields: Map<String, Value>,
        pub(super) data: Option<&'a RawValue>,
    }

    /// An object's fields, and the one set apart.
    type Split<T> = (Map<String, Value>, Option<T>);

    /// A JSON object with one field set apart: `T` reads it.
    fn object<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
        mut map: A,
        apart: &str,
    ) -> Result<Split<T>, A::Error> {
        let (mut fields, mut set_apart) = (Map::new(), None);
        while let Some(key) = map.next_key::<String>()? {
            // A duplicate key is left to the tree (where the last one wins).
            if key == apart {
                if set_apart.is_some() {
                    return Err(de::Error::custom("duplicate key"));
                }
                set_apart = Some(map.next_value()?);
            } else {
                let value = map.next_value()?;
                if fields.insert(key, value).is_some() {
                    return Err(de::Error::custom("duplicate key"));
                }
            }
        }
        Ok((fields, set_apart))
    }

    impl<'de> Deserialize<'de> for Root<'de> {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Root<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a request object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Root<'de>, A::Error> {
                    let (fields, inputs) = object(map, "inputs")?;
                    let inputs = inputs.ok_or_else(|| de::Error::missing_field("inputs"))?;
                    Ok(Root { fields, inputs })
                }
            }
            d.deserialize_map(V)
        }
    }

    impl<'de> Deserialize<'de> for Input<'de> {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Input<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an input object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Input<'de>, A::Error> {
                    let (fields, data) = object(map, "data")?;
                    Ok(Input { fields, data })
                }
            }
            d.deserialize_map(V)
        }
    }
}

/// The request from its top-level fields and its inputs (either path of [`decode_request`]).
fn decode_root(
    root: &Map<String, Value>,
    inputs: Inputs<'_>,
    header_length: Option<usize>,
    mut binary: &[u8],
) -> Result<InferRequest, ProtocolError> {
    for key in root.keys() {
        if !matches!(key.as_str(), "id" | "parameters" | "inputs" | "outputs") {
            return Err(bad(format!(
                "request body: unknown field {key:?} (expected id, parameters, inputs, outputs)"
            )));
        }
    }
    let id = match root.get("id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(bad(format!(
                "request id: expected a string, got {}",
                kind(other)
            )))
        }
    };
    let parameters = root.get("parameters");
    if let Some(p) = parameters {
        object(p, "request parameters")?;
    }
    let binary_output = flag(parameters, "binary_data_output", "request")?;
    let group = match parameters.and_then(|p| p.get("group")) {
        None | Some(Value::Null) => None,
        Some(Value::String(g)) => match crate::step_stats::group_name_problem(g) {
            None => Some(g.clone()),
            Some(problem) => {
                return Err(bad(format!("request parameters.group: {problem}")));
            }
        },
        Some(other) => {
            return Err(bad(format!(
                "request parameters.group: expected a string (the sensitive group), got {}",
                kind(other)
            )))
        }
    };
    let count = match inputs {
        Inputs::Tree(tree) => tree
            .ok_or_else(|| bad("request body: missing \"inputs\""))?
            .as_array()
            .ok_or_else(|| bad("request inputs: expected an array"))?
            .len(),
        Inputs::Raw(list) => list.len(),
    };
    if count == 0 {
        return Err(bad("request inputs: expected at least one input"));
    }
    let mut decoded = Vec::with_capacity(count);
    for k in 0..count {
        let (input, data) = match inputs {
            Inputs::Tree(tree) => {
                let item = &tree
                    .and_then(Value::as_array)
                    .map_or(&[][..], Vec::as_slice)[k];
                let input = object(item, &format!("inputs[{k}]"))?;
                (input, input.get("data").map(Data::Tree))
            }
            Inputs::Raw(list) => (&list[k].fields, list[k].data.map(Data::Raw)),
        };
        let name = input
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("inputs[{k}]: missing string \"name\"")))?
            .to_string();
        let datatype_name = input
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("input {name:?}: missing string \"datatype\"")))?;
        let datatype = DataType::parse(datatype_name).ok_or_else(|| {
            bad(format!(
                "input {name:?}: datatype {datatype_name:?} is not one of {}",
                DataType::ALL.map(DataType::name).join(", ")
            ))
        })?;
        let shape = input
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("input {name:?}: missing \"shape\" array")))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "input {name:?}: shape dimension {d} is not an integer >= 0"
                        ))
                    })
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let count = element_count(&name, &shape)?;
        let input_parameters = input.get("parameters");
        if let Some(p) = input_parameters {
            object(p, &format!("input {name:?} parameters"))?;
        }
        let binary_size = match input_parameters.and_then(|p| p.get("binary_data_size")) {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "input {name:?}: binary_data_size must be an integer >= 0, got {v}"
                        ))
                    })?,
            ),
        };
        let data = match (binary_size, data) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "input {name:?}: both \"data\" and binary_data_size given"
                )))
            }
            (Some(size), None) => {
                if header_length.is_none() {
                    return Err(bad(format!(
                        "input {name:?}: binary_data_size without an Inference-Header-Content-Length header"
                    )));
                }
                if size > binary.len() {
                    return Err(bad(format!(
                        "input {name:?}: binary_data_size is {size} but only {} bytes follow the header",
                        binary.len()
                    )));
                }
                let (bytes, rest) = binary.split_at(size);
                binary = rest;
                binary_data(&name, datatype, bytes, count)?
            }
            (None, Some(data)) => json_data(&name, datatype, data, &shape, count)?,
            (None, None) => {
                return Err(bad(format!(
                    "input {name:?}: no \"data\" and no binary_data_size"
                )))
            }
        };
        debug_assert_eq!(data.len(), count);
        decoded.push(Tensor {
            name,
            shape,
            datatype,
            data,
        });
    }
    if !binary.is_empty() {
        return Err(bad(format!(
            "{} bytes after the last input's binary data: the binary_data_size values do not add up",
            binary.len()
        )));
    }
    let outputs = match root.get("outputs") {
        None => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .map(|(k, o)| {
                    let o = object(o, &format!("outputs[{k}]"))?;
                    let name = o
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("outputs[{k}]: missing string \"name\"")))?;
                    let binary = flag(
                        o.get("parameters"),
                        "binary_data",
                        &format!("output {name:?}"),
                    )?;
                    Ok(RequestedOutput {
                        name: name.to_string(),
                        binary,
                    })
                })
                .collect::<Result<Vec<_>, ProtocolError>>()?,
        ),
        Some(other) => {
            return Err(bad(format!(
                "request outputs: expected an array, got {}",
                kind(other)
            )))
        }
    };
    Ok(InferRequest {
        id,
        inputs: decoded,
        outputs,
        binary_output,
        group,
        parameters: parameters.and_then(Value::as_object).cloned(),
    })
}

/// An output tensor to send.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    /// `FP32` values.
    Fp32(Vec<f32>),
    /// `FP64` values (NaN sent as JSON `null`).
    Fp64(Vec<f64>),
    /// `INT64` values.
    Int64(Vec<i64>),
}

/// An output of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Output<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its shape.
    pub shape: &'a [usize],
    /// Its values.
    pub data: OutputData,
    /// Whether to send it in binary.
    pub binary: bool,
}

/// An output's values as JSON: FP32 in their shortest FP32 text (a NaN, an unscored row, has
/// no JSON number: `null`), INT64 as integers.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonData<'a> {
    Fp32(&'a [f32]),
    Fp64(&'a [f64]),
    Int64(&'a [i64]),
}

/// An output's parameters when its values follow in binary.
#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct JsonResponse<'a, P> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a P>,
    outputs: Vec<JsonOutput<'a>>,
}

/// An encoded response: the body, and the JSON header's length when binary data follows it
/// (the `Inference-Header-Content-Length` header to send).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedResponse {
    /// The body.
    pub body: Vec<u8>,
    /// The JSON header's length, when outputs follow in binary.
    pub header_length: Option<usize>,
}

/// Encodes a response. `parameters` (when given) are the response's own (the variant that
/// answered, for instance): anything that serializes as a JSON object; an error only when
/// they do not serialize.
///
/// ```
/// use mlops_serve::http::protocol::{encode_response, Output, OutputData};
///
/// let outputs = [Output {
///     name: "probability",
///     shape: &[2],
///     data: OutputData::Fp32(vec![0.25, f32::NAN]),
///     binary: false,
/// }];
/// let parameters = serde_json::json!({"variant": "stable"});
/// let encoded = encode_response("fraud", Some("3"), None, Some(&parameters), &outputs)?;
/// assert_eq!(
///     String::from_utf8(encoded.body)?,
///     r#"{"model_name":"fraud","model_version":"3","parameters":{"variant":"stable"},"outputs":[{"name":"probability","datatype":"FP32","shape":[2],"data":[0.25,null]}]}"#
/// );
/// assert_eq!(encoded.header_length, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode_response<P: Serialize>(
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    parameters: Option<&P>,
    outputs: &[Output<'_>],
) -> Result<EncodedResponse, serde_json::Error> {
    let json_outputs = outputs
        .iter()
        .map(|o| {
            let (datatype, data, size) = match &o.data {
                OutputData::Fp32(v) => ("FP32", JsonData::Fp32(v), std::mem::size_of_val(&v[..])),
                OutputData::Fp64(v) => ("FP64", JsonData::Fp64(v), std::mem::size_of_val(&v[..])),
                OutputData::Int64(v) => {
                    ("INT64", JsonData::Int64(v), std::mem::size_of_val(&v[..]))
                }
            };
            JsonOutput {
                name: o.name,
                datatype,
                shape: o.shape,
                parameters: o.binary.then_some(BinaryParameters {
                    binary_data_size: size,
                }),
                data: (!o.binary).then_some(data),
            }
        })
        .collect();
    let header = JsonResponse {
        model_name,
        model_version,
        id,
        parameters,
        outputs: json_outputs,
    };
    // About 20 bytes a JSON value, and the binary values as they are: one allocation for
    // most answers.
    let (values, binary) = outputs.iter().fold((0, 0), |(values, binary), o| {
        let (n, size) = match &o.data {
            OutputData::Fp32(v) => (v.len(), std::mem::size_of_val(&v[..])),
            OutputData::Fp64(v) => (v.len(), std::mem::size_of_val(&v[..])),
            OutputData::Int64(v) => (v.len(), std::mem::size_of_val(&v[..])),
        };
        if o.binary {
            (values, binary + size)
        } else {
            (values + n, binary)
        }
    });
    let mut body = Vec::with_capacity(256 + 20 * values + binary);
    serde_json::to_writer(&mut body, &header)?;
    let header_length = outputs.iter().any(|o| o.binary).then_some(body.len());
    for o in outputs.iter().filter(|o| o.binary) {
        match &o.data {
            OutputData::Fp32(v) => v
                .iter()
                .for_each(|x| body.extend_from_slice(&x.to_le_bytes())),
            OutputData::Fp64(v) => v
                .iter()
                .for_each(|x| body.extend_from_slice(&x.to_le_bytes())),
            OutputData::Int64(v) => v
                .iter()
                .for_each(|x| body.extend_from_slice(&x.to_le_bytes())),
        }
    }
    Ok(EncodedResponse {
        body,
        header_length,
    })
}
