//! The Open Inference Protocol (KServe V2) REST messages: decoding an inference request —
//! JSON, with `data` flat or nested, or with the binary tensor data extension (a JSON header
//! of `Inference-Header-Content-Length` bytes, then each input's raw bytes in order, sized by
//! its `binary_data_size` parameter) — and encoding a response, JSON or binary per output.
//!
//! Decoding never panics and never trusts a size: every count is checked against the shape,
//! the datatype and the bytes actually there, and every error is a [`ProtocolError`] naming
//! the input, the field and what was expected (the server answers it with 400).

use serde::Serialize;
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

/// A decoded tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `BOOL`.
    Bool(Vec<bool>),
    /// Every integer type, widened.
    Int(Vec<i128>),
    /// `FP16`, `FP32` (exact in f64) and `FP64`.
    Float(Vec<f64>),
    /// `BYTES`.
    Bytes(Vec<Vec<u8>>),
}

impl TensorData {
    fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::Int(v) => v.len(),
            TensorData::Float(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
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

fn int_range(d: DataType) -> (i128, i128) {
    match d {
        DataType::Uint8 => (0, u8::MAX.into()),
        DataType::Uint16 => (0, u16::MAX.into()),
        DataType::Uint32 => (0, u32::MAX.into()),
        DataType::Uint64 => (0, u64::MAX.into()),
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN.into(), i64::MAX.into()),
    }
}

/// JSON `data` into values of `datatype`.
fn json_data(
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
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| at(i, v, "true or false")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Fp16 => {
            return Err(bad(format!(
            "input {name:?}: FP16 has no JSON form; send it with the binary tensor data extension"
        )))
        }
        DataType::Fp32 | DataType::Fp64 => TensorData::Float(
            flat.iter()
                .enumerate()
                .map(|(i, v)| v.as_f64().ok_or_else(|| at(i, v, "a number")))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Bytes => TensorData::Bytes(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str()
                        .map(|s| s.as_bytes().to_vec())
                        .ok_or_else(|| at(i, v, "a string"))
                })
                .collect::<Result<_, _>>()?,
        ),
        ints => {
            let (lo, hi) = int_range(ints);
            TensorData::Int(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let n = v
                            .as_i64()
                            .map(i128::from)
                            .or_else(|| v.as_u64().map(i128::from))
                            .ok_or_else(|| at(i, v, "an integer"))?;
                        if (lo..=hi).contains(&n) {
                            Ok(n)
                        } else {
                            Err(at(i, v, &format!("an integer in [{lo}, {hi}]")))
                        }
                    })
                    .collect::<Result<_, _>>()?,
            )
        }
    })
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
    let chunks = bytes.chunks_exact(size);
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
        DataType::Fp16 => TensorData::Float(
            chunks
                .map(|c| f64::from(half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
                .collect(),
        ),
        DataType::Fp32 => TensorData::Float(
            chunks
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        DataType::Fp64 => TensorData::Float(
            chunks
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        DataType::Uint8 => TensorData::Int(bytes.iter().map(|&b| i128::from(b)).collect()),
        DataType::Int8 => TensorData::Int(bytes.iter().map(|&b| i128::from(b as i8)).collect()),
        DataType::Uint16 => TensorData::Int(
            chunks
                .map(|c| i128::from(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        DataType::Int16 => TensorData::Int(
            chunks
                .map(|c| i128::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
        ),
        DataType::Uint32 => TensorData::Int(
            chunks
                .map(|c| i128::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        DataType::Int32 => TensorData::Int(
            chunks
                .map(|c| i128::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        DataType::Uint64 => TensorData::Int(
            chunks
                .map(|c| i128::from(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))))
                .collect(),
        ),
        DataType::Int64 | DataType::Bytes => TensorData::Int(
            chunks
                .map(|c| i128::from(i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))))
                .collect(),
        ),
    })
}

/// Decodes a request body. `header_length` is the `Inference-Header-Content-Length` header
/// (the binary extension), `None` when the whole body is JSON.
pub fn decode_request(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<InferRequest, ProtocolError> {
    let (json, mut binary) = match header_length {
        None => (body, &body[body.len()..]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(bad(format!(
                "Inference-Header-Content-Length is {n} but the body has {} bytes",
                body.len()
            )))
        }
    };
    let root: Value = serde_json::from_slice(json)
        .map_err(|e| bad(format!("request body: not valid JSON: {e}")))?;
    let root = object(&root, "request body")?;
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
    let inputs = root
        .get("inputs")
        .ok_or_else(|| bad("request body: missing \"inputs\""))?
        .as_array()
        .ok_or_else(|| bad("request inputs: expected an array"))?;
    if inputs.is_empty() {
        return Err(bad("request inputs: expected at least one input"));
    }
    let mut decoded = Vec::with_capacity(inputs.len());
    for (k, input) in inputs.iter().enumerate() {
        let input = object(input, &format!("inputs[{k}]"))?;
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
        let data = match (binary_size, input.get("data")) {
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
    })
}

/// An output tensor to send.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputData {
    /// `FP32` values.
    Fp32(Vec<f32>),
    /// `INT64` values.
    Int64(Vec<i64>),
}

/// An output of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values.
    pub data: OutputData,
    /// Whether to send it in binary.
    pub binary: bool,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

#[derive(Serialize)]
struct JsonResponse<'a> {
    model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
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
/// answered, for instance).
pub fn encode_response(
    model_name: &str,
    model_version: Option<String>,
    id: Option<&str>,
    parameters: Option<Value>,
    outputs: &[Output],
) -> EncodedResponse {
    let mut binary = Vec::new();
    let json_outputs = outputs
        .iter()
        .map(|o| {
            let datatype = match o.data {
                OutputData::Fp32(_) => "FP32",
                OutputData::Int64(_) => "INT64",
            };
            if o.binary {
                let start = binary.len();
                match &o.data {
                    OutputData::Fp32(v) => v
                        .iter()
                        .for_each(|x| binary.extend_from_slice(&x.to_le_bytes())),
                    OutputData::Int64(v) => v
                        .iter()
                        .for_each(|x| binary.extend_from_slice(&x.to_le_bytes())),
                }
                JsonOutput {
                    name: &o.name,
                    datatype,
                    shape: &o.shape,
                    parameters: Some(
                        serde_json::json!({ "binary_data_size": binary.len() - start }),
                    ),
                    data: None,
                }
            } else {
                let data = match &o.data {
                    // A NaN probability (an unscored row) has no JSON number: null.
                    OutputData::Fp32(v) => Value::Array(
                        v.iter()
                            .map(|&x| {
                                serde_json::Number::from_f64(f64::from(x))
                                    .map_or(Value::Null, Value::Number)
                            })
                            .collect(),
                    ),
                    OutputData::Int64(v) => {
                        Value::Array(v.iter().map(|&x| Value::from(x)).collect())
                    }
                };
                JsonOutput {
                    name: &o.name,
                    datatype,
                    shape: &o.shape,
                    parameters: None,
                    data: Some(data),
                }
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
    let mut body = serde_json::to_vec(&header).unwrap_or_else(|_| b"{}".to_vec());
    let header_length =
        (!binary.is_empty() || outputs.iter().any(|o| o.binary)).then_some(body.len());
    body.extend_from_slice(&binary);
    EncodedResponse {
        body,
        header_length,
    }
}
