//! ONNX models through tract (pure Rust; feature `onnx`): a graph read, checked and optimized
//! once, when the artifact is made, so that every problem is an error at registration, never
//! at request time.
//!
//! What a graph must be to serve as a binary classifier here:
//! - one input: a float tensor of rank 2, `[batch, features]`, with a fixed number of
//!   features (the batch dimension may be symbolic, as `torch.onnx` and skl2onnx write it, or
//!   fixed, and then rows are scored in blocks of that size);
//! - one output read as the probability of the positive class: `[batch]`, `[batch, 1]`, or
//!   `[batch, 2]` (column 1, skl2onnx's `probabilities`). A graph with several outputs (a
//!   classifier's `label` and `probabilities`) names the one to read
//!   ([`OnnxOptions::output`]); the others are pruned;
//! - every op one tract runs (an op it lacks, such as the ai.onnx.ml `Scaler`, is named in the
//!   error); every tensor inside the file (external data would be read from paths the file
//!   names, so it is refused).
//!
//! Scores outside [0, 1] (a graph ending in logits) are an error naming the row, never a
//! probability. Missing values: a graph of tree ensembles (`TreeEnsembleClassifier`,
//! `TreeEnsembleRegressor`) routes NaN as its trees say; for any other graph a row with a NaN or
//! infinite feature is not run and scores NaN (the [`Predictor`](super::Predictor) contract),
//! since ops such as ReLU would silently turn NaN into a number.

use std::sync::Arc;

use ndarray::ArrayView2;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;

pub use super::kind::OnnxOptions;
use super::kind::ONNX_FILE;
use super::onnx_checks as checks;
use crate::error::{Error, Result};

/// The largest ONNX file read (tract decodes the whole protobuf in memory).
pub const MAX_ONNX_BYTES: usize = 1 << 30;

/// The most features an ONNX graph may read.
pub const MAX_FEATURES: usize = 1 << 20;

/// The largest fixed batch dimension accepted (a request is padded to it).
pub const MAX_FIXED_BATCH: usize = 4096;

/// The element type of the graph's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputType {
    F32,
    F64,
}

/// How the output tensor holds the probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputLayout {
    /// `[batch]` or `[batch, 1]`: one value per row.
    One,
    /// `[batch, 2]`: the positive class is column 1.
    Two,
}

/// An ONNX graph ready to score: checked, pruned to its probability output, optimized.
#[derive(Clone)]
pub struct OnnxGraph {
    plan: Arc<TypedRunnableModel>,
    input_name: String,
    output_name: String,
    n_features: usize,
    /// A batch dimension fixed in the graph (rows go in blocks of it), or `None` (symbolic).
    fixed_batch: Option<usize>,
    input_type: InputType,
    output_type: InputType,
    layout: OutputLayout,
    reads_missing_values: bool,
    ops: Vec<String>,
}

impl std::fmt::Debug for OnnxGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxGraph")
            .field("input", &self.input_name)
            .field("output", &self.output_name)
            .field("n_features", &self.n_features)
            .field("fixed_batch", &self.fixed_batch)
            .field("reads_missing_values", &self.reads_missing_values)
            .field("ops", &self.ops)
            .finish()
    }
}

fn onnx_err(item: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Artifact {
        item: item.into(),
        message: message.into(),
    }
}

fn tract_err(item: &str, e: impl std::fmt::Display) -> Error {
    // anyhow's alternate form prints the whole chain of context.
    onnx_err(item, format!("{e:#}"))
}

fn elem_name(t: i32) -> &'static str {
    match t {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        _ => "another type",
    }
}

/// A graph value's type, as an error shows it: `float32 [batch, 8]`, or `a sequence`.
fn describe(value: &pb::ValueInfoProto) -> String {
    use pb::type_proto::Value;
    match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::TensorType(t)) => {
            let shape = match &t.shape {
                None => "(rank unknown)".to_string(),
                Some(s) => format!(
                    "[{}]",
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => {
                                v.to_string()
                            }
                            Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                                p.clone()
                            }
                            None => "?".into(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            format!("{} {shape}", elem_name(t.elem_type))
        }
        #[allow(unreachable_patterns)]
        _ => "not a tensor (a sequence or map: export without ZipMap)".into(),
    }
}

impl OnnxGraph {
    /// Reads, checks and optimizes an ONNX model (see the module docs for what it must be).
    pub fn from_bytes(bytes: &[u8], options: &OnnxOptions) -> Result<Self> {
        // tract indexes maps by names the file gives; a file it cannot make sense of must be
        // an error here, not a panic in the host (checks below catch the known cases first).
        match std::panic::catch_unwind(|| Self::read(bytes, options)) {
            Ok(result) => result,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("no message");
                Err(onnx_err(
                    ONNX_FILE,
                    format!("tract could not read the graph ({message})"),
                ))
            }
        }
    }

    fn read(bytes: &[u8], options: &OnnxOptions) -> Result<Self> {
        if bytes.len() > MAX_ONNX_BYTES {
            return Err(onnx_err(
                ONNX_FILE,
                format!("{} bytes, more than the {MAX_ONNX_BYTES} read", bytes.len()),
            ));
        }
        let onnx = tract_onnx::onnx();
        let mut proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| tract_err(ONNX_FILE, format!("not an ONNX model: {e:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| onnx_err(ONNX_FILE, "an ONNX model without a graph"))?;

        // Ops tract lacks, named, before anything is built.
        // tract's register is keyed by op name alone: an op of another domain (or an ai.onnx.ml
        // op in the default domain) would run as the standard op of that name.
        let mut missing: Vec<String> = graph
            .node
            .iter()
            .filter(|n| !checks::supported(n, |op| onnx.op_register.0.contains_key(op)))
            .map(checks::qualified)
            .collect();
        missing.sort();
        missing.dedup();
        if !missing.is_empty() {
            let hints: Vec<&str> = missing
                .iter()
                .filter_map(|op| match op.as_str() {
                    "ai.onnx.ml.Scaler" => Some(
                        "skl2onnx writes StandardScaler as Sub and Div with options={StandardScaler: {'div': 'div'}}",
                    ),
                    "ai.onnx.ml.ZipMap" => Some(
                        "skl2onnx and onnxmltools write probabilities as a tensor with the option zipmap=False",
                    ),
                    "ai.onnx.ml.Imputer" => {
                        Some("impute before the model, or use a model that routes missing values (trees)")
                    }
                    _ => None,
                })
                .collect();
            return Err(onnx_err(
                ONNX_FILE,
                format!(
                    "the graph uses {} that tract does not run: {}{}",
                    if missing.len() == 1 { "an op" } else { "ops" },
                    missing.join(", "),
                    if hints.is_empty() {
                        String::new()
                    } else {
                        format!(" (export without: {})", hints.join("; "))
                    }
                ),
            ));
        }
        let ops = {
            let mut ops: Vec<String> = graph.node.iter().map(|n| n.op_type.clone()).collect();
            ops.sort();
            ops.dedup();
            ops
        };
        checks::opsets(&proto, graph)?;
        checks::single_writers(graph)?;
        checks::constants(graph)?;
        checks::constant_sizes(graph)?;

        // The input: one tensor of rank 2 with a fixed feature count.
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(onnx_err(
                format!("{ONNX_FILE} inputs"),
                format!(
                    "{} inputs ({}), expected one float tensor [batch, features] (export the model with a single input holding every feature)",
                    inputs.len(),
                    inputs.iter().map(|i| format!("`{}` {}", i.name, describe(i))).collect::<Vec<_>>().join(", ")
                ),
            ));
        };
        let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => t,
            #[allow(unreachable_patterns)]
            _ => {
                return Err(onnx_err(
                    format!("{ONNX_FILE} input `{}`", input.name),
                    "not a tensor, expected a float tensor [batch, features]",
                ))
            }
        };
        let input_type = match tensor.elem_type {
            1 => InputType::F32,
            11 => InputType::F64,
            t => {
                return Err(onnx_err(
                    format!("{ONNX_FILE} input `{}`", input.name),
                    format!("element type {}, expected float32 or float64", elem_name(t)),
                ))
            }
        };
        let dims =
            match &tensor.shape {
                Some(s) => &s.dim,
                None => return Err(onnx_err(
                    format!("{ONNX_FILE} input `{}`", input.name),
                    "a dynamic rank (no shape in the graph), expected rank 2: [batch, features]",
                )),
            };
        use pb::tensor_shape_proto::dimension::Value as Dim;
        let (fixed_batch, n_features) = match dims.as_slice() {
            [batch, features] => {
                let n = match &features.value {
                    Some(Dim::DimValue(v)) if *v > 0 => *v as usize,
                    _ => {
                        return Err(onnx_err(
                            format!("{ONNX_FILE} input `{}`", input.name),
                            format!(
                                "shape {}: a feature dimension that is not a fixed number, expected [batch, features] with features fixed",
                                describe(input)
                            ),
                        ))
                    }
                };
                let batch = match &batch.value {
                    Some(Dim::DimValue(v)) if *v > 0 => Some(*v as usize),
                    Some(Dim::DimValue(v)) => {
                        return Err(onnx_err(
                            format!("{ONNX_FILE} input `{}`", input.name),
                            format!(
                                "a batch dimension of {v}, expected a positive number or a symbol"
                            ),
                        ))
                    }
                    _ => None,
                };
                (batch, n)
            }
            _ => {
                return Err(onnx_err(
                    format!("{ONNX_FILE} input `{}`", input.name),
                    format!(
                        "shape {} (rank {}), expected rank 2: [batch, features]",
                        describe(input),
                        dims.len()
                    ),
                ))
            }
        };

        // The output: the only one, or the one named.
        let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        let output = match (&options.output, graph.output.as_slice()) {
            (Some(name), all) => all.iter().find(|o| &o.name == name).ok_or_else(|| {
                onnx_err(
                    "ONNX output",
                    format!(
                        "`{name}` is not an output of the graph; its outputs: {}",
                        graph.output.iter().map(|o| format!("`{}` {}", o.name, describe(o))).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?,
            (None, [only]) => only,
            (None, all) => {
                return Err(onnx_err(
                    format!("{ONNX_FILE} outputs"),
                    format!(
                        "{} outputs ({}), expected one: name the output that holds the probability (--onnx-output NAME; OnnxOptions.output)",
                        all.len(),
                        all.iter().map(|o| format!("`{}` {}", o.name, describe(o))).collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        let output_name = output.name.clone();
        if !graph.node.iter().any(|n| n.output.contains(&output_name)) {
            return Err(onnx_err(
                format!("{ONNX_FILE} output `{output_name}`"),
                "no node of the graph writes it",
            ));
        }
        for o in &graph.output {
            let known = graph.node.iter().any(|n| n.output.contains(&o.name))
                || graph.input.iter().any(|i| i.name == o.name)
                || initializers.contains(o.name.as_str());
            if !known {
                return Err(onnx_err(
                    format!("{ONNX_FILE} output `{}`", o.name),
                    "no node of the graph writes it",
                ));
            }
        }

        if n_features > MAX_FEATURES {
            return Err(onnx_err(
                format!("{ONNX_FILE} input `{}`", input.name),
                format!("{n_features} features, more than the {MAX_FEATURES} read"),
            ));
        }
        if let Some(b) = fixed_batch.filter(|&b| b > MAX_FIXED_BATCH) {
            return Err(onnx_err(
                format!("{ONNX_FILE} input `{}`", input.name),
                format!(
                    "a fixed batch of {b} rows (every request would be padded to it), expected at most {MAX_FIXED_BATCH} or a symbolic batch dimension"
                ),
            ));
        }
        for n in graph
            .node
            .iter()
            .filter(|n| n.op_type == "TreeEnsembleClassifier")
        {
            let reads_input = n.input.first() == Some(&input.name);
            checks::tree_ensemble(n, reads_input.then_some(n_features))?;
        }
        // What the chosen output depends on, and whether the input reaches it only through
        // tree ensembles (which route NaN as onnxruntime does); an op on the way (a ReLU, a
        // scaler) would turn NaN into a number first.
        let producers: std::collections::HashMap<&str, &pb::NodeProto> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        let mut needed: Vec<&pb::NodeProto> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![output_name.as_str()];
        while let Some(value) = stack.pop() {
            if let Some(n) = producers.get(value) {
                if seen.insert(*n as *const pb::NodeProto) {
                    needed.push(n);
                    stack.extend(n.input.iter().map(String::as_str));
                }
            }
        }
        let mut aliases: std::collections::HashSet<&str> =
            std::collections::HashSet::from([input.name.as_str()]);
        let mut consumers_ok = true;
        let mut trees = 0;
        // Nodes in topological order (ONNX requires it): aliases grow as they are met.
        for n in graph
            .node
            .iter()
            .filter(|n| seen.contains(&(*n as *const pb::NodeProto)))
        {
            if !n.input.iter().any(|i| aliases.contains(i.as_str())) {
                continue;
            }
            match n.op_type.as_str() {
                "TreeEnsembleClassifier" if n.input.len() == 1 => trees += 1,
                "Identity" => aliases.extend(n.output.iter().map(String::as_str)),
                "Cast" if n.attribute.iter().any(|a| a.name == "to" && a.i == 1) => {
                    aliases.extend(n.output.iter().map(String::as_str))
                }
                _ => consumers_ok = false,
            }
        }
        let reads_missing_values = consumers_ok && trees > 0;
        let input_name = input.name.clone();
        let output_names: Vec<String> = outputs;
        binary_base_values(&mut proto);
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| tract_err(ONNX_FILE, e))?;
        // The input fact from the checks above: skl2onnx writes its batch dimension with
        // neither a value nor a name, which tract cannot type.
        let batch_dim: TDim = match fixed_batch {
            Some(b) => b.to_dim(),
            None => model.sym("batch").into(),
        };
        let dt = match input_type {
            InputType::F32 => f32::datum_type(),
            InputType::F64 => f64::datum_type(),
        };
        model
            .set_input_fact(
                0,
                InferenceFact::dt_shape(dt, [batch_dim.clone(), n_features.to_dim()]),
            )
            .map_err(|e| tract_err("ONNX input", e))?;
        let outlet = model.find_outlet_label(&output_name).ok_or_else(|| {
            onnx_err(
                format!("{ONNX_FILE} output `{output_name}`"),
                "not found in the graph tract read",
            )
        })?;
        model
            .select_output_outlets(&[outlet])
            .map_err(|e| tract_err("ONNX output", e))?;
        let typed = model
            .into_typed()
            .map_err(|e| tract_err(ONNX_FILE, format!("typing the graph: {e:#}")))?;
        let fact = typed
            .output_fact(0)
            .map_err(|e| tract_err("ONNX output", e))?
            .clone();
        let output_type = if fact.datum_type == f32::datum_type() {
            InputType::F32
        } else if fact.datum_type == f64::datum_type() {
            InputType::F64
        } else {
            return Err(onnx_err(
                format!("{ONNX_FILE} output `{output_name}`"),
                format!(
                    "element type {:?}, expected float32 or float64 probabilities (is it the label output? its outputs: {})",
                    fact.datum_type,
                    output_names.join(", ")
                ),
            ));
        };
        if fact.shape.rank() >= 1 && fact.shape[0] != batch_dim {
            return Err(onnx_err(
                format!("{ONNX_FILE} output `{output_name}`"),
                format!(
                    "shape {:?}: its first dimension is not the input's batch dimension ({batch_dim}), expected one probability per row",
                    fact.shape
                ),
            ));
        }
        let layout = match fact.shape.rank() {
            1 => OutputLayout::One,
            2 => match fact.shape[1].to_usize() {
                Ok(1) => OutputLayout::One,
                Ok(2) => OutputLayout::Two,
                _ => {
                    return Err(onnx_err(
                        format!("{ONNX_FILE} output `{output_name}`"),
                        format!(
                            "shape {:?}, expected [batch], [batch, 1] or [batch, 2] (a binary classifier's probabilities)",
                            fact.shape
                        ),
                    ))
                }
            },
            r => {
                return Err(onnx_err(
                    format!("{ONNX_FILE} output `{output_name}`"),
                    format!(
                        "rank {r} ({:?}), expected [batch], [batch, 1] or [batch, 2]",
                        fact.shape
                    ),
                ))
            }
        };
        let plan = typed
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| tract_err(ONNX_FILE, format!("optimizing the graph: {e:#}")))?;
        let graph = OnnxGraph {
            plan,
            input_name,
            output_name,
            n_features,
            fixed_batch,
            input_type,
            output_type,
            layout,
            reads_missing_values,
            ops,
        };
        graph.probe()?;
        Ok(graph)
    }

    /// Three rows (zeros, ones, minus ones) through the plan, together and one at a time: a
    /// graph that types but cannot run, that ends in logits, or whose rows interact (a
    /// reduction over the batch axis, a batch normalization in training mode: a row's score
    /// would depend on the rows it is batched with) fails here, not at request time.
    fn probe(&self) -> Result<()> {
        let levels = [0.0f32, 1.0, -1.0];
        let rows = ndarray::Array2::from_shape_fn((3, self.n_features), |(r, _)| levels[r]);
        let mut together = [0.0f32; 3];
        self.predict_into(rows.view(), &mut together).map_err(|e| {
            onnx_err(
                ONNX_FILE,
                format!("rows of zeros and of ±1 did not score: {e}"),
            )
        })?;
        for (r, &t) in together.iter().enumerate() {
            let mut alone = [0.0f32];
            let row = rows.slice_axis(ndarray::Axis(0), ndarray::Slice::from(r..r + 1));
            self.predict_into(row, &mut alone).map_err(|e| {
                onnx_err(
                    ONNX_FILE,
                    format!("a row of {} did not score: {e}", levels[r]),
                )
            })?;
            let same = (alone[0] - t).abs() <= 1e-5 || (alone[0].is_nan() && t.is_nan());
            if !same {
                return Err(onnx_err(
                    ONNX_FILE,
                    format!(
                        "rows are not scored independently: a row of {} scores {} alone and {t} in a batch of three (an op that mixes rows: a reduction over the batch axis, a batch normalization in training mode)",
                        levels[r], alone[0]
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How many features the graph reads.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The graph input's name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The output read as the probability.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// Whether the graph's own ops handle missing values (tree ensembles); otherwise a row with
    /// a non-finite feature scores NaN without running.
    pub fn reads_missing_values(&self) -> bool {
        self.reads_missing_values
    }

    /// The op types of the graph, sorted, once each.
    pub fn ops(&self) -> &[String] {
        &self.ops
    }

    /// Writes the probability of each row of `x` (`n_features` columns) into `out`.
    pub fn predict_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> Result<()> {
        if x.ncols() != self.n_features || out.len() != x.nrows() {
            return Err(Error::invalid(
                "batch",
                format!("{} x {}", x.nrows(), x.ncols()),
                format!("rows x {} features, one output per row", self.n_features),
            ));
        }
        // Rows the graph may not see (a NaN that a ReLU would turn into 0).
        let flagged: Vec<usize> = if self.reads_missing_values {
            Vec::new()
        } else {
            x.rows()
                .into_iter()
                .enumerate()
                .filter(|(_, r)| r.iter().any(|v| !v.is_finite()))
                .map(|(i, _)| i)
                .collect()
        };
        let block = self.fixed_batch.unwrap_or(4096).max(1);
        let mut start = 0;
        while start < x.nrows() {
            let end = (start + block).min(x.nrows());
            let mut rows = x
                .slice_axis(ndarray::Axis(0), ndarray::Slice::from(start..end))
                .to_owned();
            for &r in flagged.iter().filter(|&&r| r >= start && r < end) {
                rows.row_mut(r - start).fill(0.0);
            }
            self.run_block(rows.view(), start, &mut out[start..end])?;
            start = end;
        }
        for r in flagged {
            out[r] = f32::NAN;
        }
        Ok(())
    }

    /// Runs one block (at most `fixed_batch` rows; padded with zero rows up to it).
    fn run_block(&self, x: ArrayView2<'_, f32>, offset: usize, out: &mut [f32]) -> Result<()> {
        let rows = x.nrows();
        let run_rows = self.fixed_batch.unwrap_or(rows);
        let mut values: Vec<f32> = Vec::with_capacity(run_rows * self.n_features);
        values.extend(x.iter().copied());
        values.resize(run_rows * self.n_features, 0.0);
        let shape = [run_rows, self.n_features];
        let tensor = match self.input_type {
            InputType::F32 => Tensor::from_shape(&shape, &values),
            InputType::F64 => Tensor::from_shape(
                &shape,
                &values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            ),
        }
        .map_err(|e| tract_err("ONNX input", e))?;
        // Each run has its own state (the plan is only read), so a panic inside tract on odd
        // values leaves nothing half-changed: it becomes this call's error.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.plan.run(tvec!(tensor.into()))
        }))
        .map_err(|_| {
            Error::invalid(
                "ONNX graph run",
                format!("tract panicked on rows {offset}..{}", offset + rows),
                "a graph that scores the batch",
            )
        })?;
        let result = run.map_err(|e| {
            Error::invalid(
                "ONNX graph run",
                format!("{e:#}"),
                "a graph that scores the batch",
            )
        })?;
        let Some(t) = result.first() else {
            return Err(onnx_err("ONNX output", "the graph returned no tensor"));
        };
        let values: Vec<f64> = match self.output_type {
            InputType::F32 => t
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>())
                .map_err(|e| tract_err("ONNX output", e))?
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
            InputType::F64 => t
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f64>())
                .map_err(|e| tract_err("ONNX output", e))?
                .to_vec(),
        };
        let width = match self.layout {
            OutputLayout::One => 1,
            OutputLayout::Two => 2,
        };
        if values.len() != run_rows * width {
            return Err(onnx_err(
                format!("ONNX output `{}`", self.output_name),
                format!(
                    "{} values for {run_rows} rows, expected {}",
                    values.len(),
                    run_rows * width
                ),
            ));
        }
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let p = values[r * width + width - 1];
            if p.is_nan() {
                // Rows with a non-finite feature were run as zeros and are marked NaN by the
                // caller: a NaN here comes from the graph itself, on a finite row.
                return Err(Error::invalid(
                    format!("ONNX output `{}` for row {}", self.output_name, offset + r),
                    "NaN",
                    "a probability (the graph scored NaN for a row whose features it can read)",
                ));
            }
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::invalid(
                    format!("ONNX output `{}` for row {}", self.output_name, offset + r),
                    p,
                    "a probability in [0, 1] (a graph ending in logits needs its sigmoid or softmax exported)",
                ));
            }
            *o = p as f32;
        }
        Ok(())
    }
}

/// onnxmltools writes a binary `TreeEnsembleClassifier` (two class labels, every leaf on class
/// 0) with one base value, which onnxruntime reads as the base of the one score; tract wants
/// one per class label and reads only the first in that layout. The value is repeated.
fn binary_base_values(proto: &mut pb::ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    for node in graph
        .node
        .iter_mut()
        .filter(|n| n.op_type == "TreeEnsembleClassifier")
    {
        let labels = node
            .attribute
            .iter()
            .find(|a| a.name == "classlabels_int64s" || a.name == "classlabels_strings")
            .map(|a| a.ints.len().max(a.strings.len()));
        let one_class = node
            .attribute
            .iter()
            .find(|a| a.name == "class_ids")
            .is_some_and(|a| a.ints.iter().all(|&c| c == 0));
        if labels != Some(2) || !one_class {
            continue;
        }
        if let Some(base) = node
            .attribute
            .iter_mut()
            .find(|a| a.name == "base_values" && a.floats.len() == 1)
        {
            let b = base.floats[0];
            base.floats.push(b);
        }
    }
}

/// The predictor of an ONNX artifact: its graph under the artifact's spec (names, threshold,
/// background).
#[derive(Debug, Clone)]
pub struct OnnxModel {
    spec: super::ModelSpec,
    graph: Arc<OnnxGraph>,
}

impl OnnxModel {
    /// The predictor of an ONNX artifact (an error for another kind).
    pub fn new(artifact: &super::ModelArtifact) -> Result<Self> {
        let graph = artifact
            .onnx_graph()
            .ok_or_else(|| Error::invalid("model kind", artifact.spec().kind, "an ONNX model"))?;
        Ok(OnnxModel {
            spec: artifact.spec().clone(),
            graph: graph.clone(),
        })
    }

    /// The graph.
    pub fn graph(&self) -> &OnnxGraph {
        &self.graph
    }
}

impl super::Predictor for OnnxModel {
    fn feature_names(&self) -> &[String] {
        &self.spec.input_features
    }

    fn predict_proba_into(&self, x: ArrayView2<'_, f32>, out: &mut [f32]) -> Result<()> {
        super::check_batch(self.n_features(), x, out)?;
        self.graph.predict_into(x, out)
    }

    fn threshold(&self) -> f32 {
        self.spec.threshold
    }

    fn background(&self) -> Option<&super::Background> {
        self.spec.background.as_ref()
    }
}
