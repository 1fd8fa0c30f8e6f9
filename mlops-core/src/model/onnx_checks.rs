//! Checks of an ONNX graph made before tract sees it (feature `onnx`): what tract would run
//! wrongly, forever, or by writing out of bounds — an op of another domain under a standard
//! name, an opset outside what it reads, two nodes writing one value, non-finite constants,
//! external data, and tree ensembles that are not forests (tract walks them unchecked).

use std::collections::{HashMap, HashSet};

use tract_onnx::pb;

use super::kind::ONNX_FILE;
use crate::error::{Error, Result};

/// The ai.onnx.ml ops tract runs; every other op tract knows is a standard (ai.onnx) op.
pub(super) const ML_OPS: [&str; 5] = [
    "CategoryMapper",
    "LinearClassifier",
    "LinearRegressor",
    "Normalizer",
    "TreeEnsembleClassifier",
];

/// Default-domain opsets accepted (what tract reads; ONNX 1.23 writes up to 23).
const DEFAULT_OPSETS: std::ops::RangeInclusive<i64> = 7..=23;
/// ai.onnx.ml opsets accepted.
const ML_OPSETS: std::ops::RangeInclusive<i64> = 1..=5;

fn err(item: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Artifact {
        item: item.into(),
        message: message.into(),
    }
}

fn node_item(n: &pb::NodeProto) -> String {
    format!("{ONNX_FILE} node `{}` ({})", n.name, n.op_type)
}

/// The node's domain as ONNX reads it: "" and "ai.onnx" are the default domain.
pub(super) fn domain(n: &pb::NodeProto) -> &str {
    match n.domain.as_str() {
        "" | "ai.onnx" => "",
        d => d,
    }
}

/// `domain.op` for an op outside the default domain, `op` in it.
pub(super) fn qualified(n: &pb::NodeProto) -> String {
    match domain(n) {
        "" => n.op_type.clone(),
        d => format!("{d}.{}", n.op_type),
    }
}

/// Whether tract runs this node as ONNX means it: a registered op in its own domain.
pub(super) fn supported(n: &pb::NodeProto, registered: impl Fn(&str) -> bool) -> bool {
    let ml = ML_OPS.contains(&n.op_type.as_str());
    registered(&n.op_type)
        && match domain(n) {
            "" => !ml,
            "ai.onnx.ml" => ml,
            _ => false,
        }
}

/// Opsets: every domain a node uses is imported, at a version tract reads.
pub(super) fn opsets(proto: &pb::ModelProto, graph: &pb::GraphProto) -> Result<()> {
    let imported: HashMap<&str, i64> = proto
        .opset_import
        .iter()
        .map(|o| {
            let d = match o.domain.as_str() {
                "" | "ai.onnx" => "",
                d => d,
            };
            (d, o.version)
        })
        .collect();
    let used: HashSet<&str> = graph.node.iter().map(domain).collect();
    for d in used {
        let (name, range) = match d {
            "" => ("ai.onnx", &DEFAULT_OPSETS),
            "ai.onnx.ml" => ("ai.onnx.ml", &ML_OPSETS),
            _ => continue, // named as unsupported ops
        };
        match imported.get(d) {
            None => {
                return Err(err(
                    format!("{ONNX_FILE} opset_import"),
                    format!("no opset for the {name} domain its nodes use"),
                ))
            }
            Some(v) if !range.contains(v) => {
                return Err(err(
                    format!("{ONNX_FILE} opset_import"),
                    format!(
                        "{name} opset {v}, expected {} to {} (export with another target_opset / opset_version)",
                        range.start(),
                        range.end()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Every value is written once: by a graph input, an initializer, or one node output.
pub(super) fn single_writers(graph: &pb::GraphProto) -> Result<()> {
    let mut written: HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    for n in &graph.node {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if !written.insert(o.as_str()) {
                return Err(err(
                    node_item(n),
                    format!("writes `{o}`, which another node, an input or an initializer already writes"),
                ));
            }
        }
    }
    Ok(())
}

/// A tensor's data in another file (`data_location` EXTERNAL or `external_data` entries).
fn external(t: &pb::TensorProto) -> bool {
    !t.external_data.is_empty() || t.data_location == Some(1)
}

/// The first non-finite value of a float or double tensor (raw or typed data).
fn first_non_finite(t: &pb::TensorProto) -> Option<f64> {
    const FLOAT: i32 = 1;
    const DOUBLE: i32 = 11;
    match t.data_type {
        FLOAT => {
            let raw = t
                .raw_data
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            t.float_data
                .iter()
                .map(|&v| f64::from(v))
                .chain(raw)
                .find(|v| !v.is_finite())
        }
        DOUBLE => {
            let raw = t
                .raw_data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
            t.double_data
                .iter()
                .copied()
                .chain(raw)
                .find(|v| !v.is_finite())
        }
        _ => None,
    }
}

/// Initializers and constant attributes: inside the file and finite (tract's sigmoid maps NaN
/// to a small number, so a NaN weight would score every row as a confident negative).
pub(super) fn constants(graph: &pb::GraphProto) -> Result<()> {
    let check = |item: String, t: &pb::TensorProto| -> Result<()> {
        if external(t) {
            return Err(err(
                item,
                "its data is in another file (external data); save the model with every tensor inside it",
            ));
        }
        if let Some(v) = first_non_finite(t) {
            return Err(err(item, format!("holds {v}, expected finite values")));
        }
        Ok(())
    };
    for t in &graph.initializer {
        check(format!("{ONNX_FILE} tensor `{}`", t.name), t)?;
    }
    for n in &graph.node {
        for a in &n.attribute {
            if a.g.is_some() || !a.graphs.is_empty() {
                return Err(err(
                    node_item(n),
                    "a subgraph (If, Loop, Scan): a classifier here is one straight graph",
                ));
            }
            let item = || format!("{} attribute `{}`", node_item(n), a.name);
            for t in a.t.iter().chain(a.tensors.iter()) {
                check(item(), t)?;
            }
            if let Some(v) = a
                .floats
                .iter()
                .chain(std::iter::once(&a.f))
                .find(|v| !v.is_finite())
            {
                return Err(err(item(), format!("holds {v}, expected finite values")));
            }
        }
    }
    Ok(())
}

fn ints<'a>(n: &'a pb::NodeProto, name: &str) -> &'a [i64] {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(&[], |a| a.ints.as_slice())
}

fn strings<'a>(n: &'a pb::NodeProto, name: &str) -> &'a [Vec<u8>] {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(&[], |a| a.strings.as_slice())
}

/// A `TreeEnsembleClassifier` is a forest tract can walk: tree ids 0..T, node ids 0..k once
/// each per tree, children inside their tree, every node reached once from its root (no
/// cycle, no shared node), features below `n_features` (when the ensemble reads the graph's
/// input), class weights on leaves of known classes.
pub(super) fn tree_ensemble(n: &pb::NodeProto, n_features: Option<usize>) -> Result<()> {
    let bad = |message: String| Err(err(node_item(n), message));
    let ids = ints(n, "nodes_nodeids");
    let trees = ints(n, "nodes_treeids");
    let features = ints(n, "nodes_featureids");
    let trues = ints(n, "nodes_truenodeids");
    let falses = ints(n, "nodes_falsenodeids");
    let modes = strings(n, "nodes_modes");
    let count = ids.len();
    for (name, len) in [
        ("nodes_treeids", trees.len()),
        ("nodes_featureids", features.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
        ("nodes_modes", modes.len()),
    ] {
        if len != count {
            return bad(format!("{name} has {len} entries, nodes_nodeids {count}"));
        }
    }
    if count == 0 {
        return bad("no nodes".into());
    }
    // Per tree: its nodes by id.
    let mut by_tree: HashMap<i64, HashMap<i64, usize>> = HashMap::new();
    for i in 0..count {
        if by_tree
            .entry(trees[i])
            .or_default()
            .insert(ids[i], i)
            .is_some()
        {
            return bad(format!(
                "node {} of tree {} is defined twice",
                ids[i], trees[i]
            ));
        }
    }
    let n_trees = by_tree.len() as i64;
    for (&t, nodes) in &by_tree {
        if !(0..n_trees).contains(&t) {
            return bad(format!(
                "tree id {t}, expected ids 0 to {} (one per tree)",
                n_trees - 1
            ));
        }
        let k = nodes.len() as i64;
        if let Some(id) = nodes.keys().find(|&&id| !(0..k).contains(&id)) {
            return bad(format!(
                "tree {t} has node id {id}, expected ids 0 to {} (one per node)",
                k - 1
            ));
        }
        // Walk from the root: every node reached exactly once.
        let mut seen = vec![false; k as usize];
        let mut stack = vec![0i64];
        while let Some(id) = stack.pop() {
            let Some(&i) = nodes.get(&id) else {
                return bad(format!(
                    "tree {t} points to node {id}, which it does not have"
                ));
            };
            if std::mem::replace(&mut seen[id as usize], true) {
                return bad(format!(
                    "tree {t} reaches node {id} twice (a cycle or a shared node): not a tree"
                ));
            }
            if modes[i].as_slice() == b"LEAF" {
                continue;
            }
            if let Some(d) = n_features {
                if !(0..d as i64).contains(&features[i]) {
                    return bad(format!(
                        "tree {t} node {id} splits on feature {}, the input has {d}",
                        features[i]
                    ));
                }
            }
            stack.push(trues[i]);
            stack.push(falses[i]);
        }
        if let Some(id) = seen.iter().position(|s| !s) {
            return bad(format!("tree {t} node {id} is not reached from its root"));
        }
    }
    // Leaf weights: on leaves, of known classes.
    let labels = ints(n, "classlabels_int64s")
        .len()
        .max(strings(n, "classlabels_strings").len()) as i64;
    let c_trees = ints(n, "class_treeids");
    let c_nodes = ints(n, "class_nodeids");
    let c_ids = ints(n, "class_ids");
    if c_nodes.len() != c_trees.len() || c_ids.len() != c_trees.len() {
        return bad(format!(
            "class_treeids, class_nodeids and class_ids have {}, {} and {} entries",
            c_trees.len(),
            c_nodes.len(),
            c_ids.len()
        ));
    }
    for j in 0..c_trees.len() {
        let leaf = by_tree
            .get(&c_trees[j])
            .and_then(|nodes| nodes.get(&c_nodes[j]));
        match leaf {
            Some(&i) if modes[i].as_slice() == b"LEAF" => {}
            _ => {
                return bad(format!(
                    "class weight {j} is on node {} of tree {}, which is not a leaf",
                    c_nodes[j], c_trees[j]
                ))
            }
        }
        if !(0..labels).contains(&c_ids[j]) {
            return bad(format!(
                "class weight {j} is for class {}, the model has {labels} class labels",
                c_ids[j]
            ));
        }
    }
    Ok(())
}

/// The most elements a tensor the graph builds from constants may hold (tract folds such
/// tensors while optimizing, in memory).
pub(super) const MAX_CONSTANT_ELEMENTS: i64 = 1 << 26;

/// `ConstantOfShape` fed a constant shape: at most [`MAX_CONSTANT_ELEMENTS`] elements.
pub(super) fn constant_sizes(graph: &pb::GraphProto) -> Result<()> {
    let initializers: HashMap<&str, &pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    for n in graph.node.iter().filter(|n| n.op_type == "ConstantOfShape") {
        let Some(shape) = n.input.first().and_then(|i| initializers.get(i.as_str())) else {
            continue;
        };
        let dims: Vec<i64> = if shape.int64_data.is_empty() {
            shape
                .raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        } else {
            shape.int64_data.clone()
        };
        let elements = dims
            .iter()
            .try_fold(1i64, |acc, &d| acc.checked_mul(d.max(0)));
        if elements.is_none_or(|e| e > MAX_CONSTANT_ELEMENTS) {
            return Err(err(
                node_item(n),
                format!(
                    "builds a tensor of shape {dims:?}, more than {MAX_CONSTANT_ELEMENTS} elements"
                ),
            ));
        }
    }
    Ok(())
}
