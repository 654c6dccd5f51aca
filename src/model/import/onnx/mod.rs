//! `model.onnx`: a scikit-learn binary classifier pipeline exported by
//! skl2onnx, read into an [`Imported`] model. The file is decoded with
//! ONNX's own protobuf schema ([`proto`]); every operator of its graph must
//! be one riskserve reads (the preprocessing of [`columns`], then one
//! classifier of [`classifier`], then only `Cast`, `ZipMap` or `Identity`
//! on the classifier's outputs) from the standard domains (`ai.onnx`,
//! `ai.onnx.ml`); a custom domain, an ONNX function or any other operator
//! is refused, naming it. Nothing in the file is ever executed.
//!
//! Each graph input is one request field, named by the input: a `float`
//! input is a number, a `string` input a category, whose missing value
//! (`null`) is fed to the pipeline as the empty string, the missing marker
//! skl2onnx's string imputer needs (`missing_values=""`).
//!
//! A file cut short fails to decode (`incomplete`), or lacks its graph,
//! its operator sets or nodes its graph needs (`incomplete`/`invalid`):
//! never served.

pub mod attrs;
pub mod classifier;
pub mod columns;
pub mod proto;
#[cfg(test)]
mod tests;

use super::super::format::LoadError;
use super::super::schema::Feature;
use super::{number_feature, Imported, Scoring};
use attrs::{Attrs, FLOAT, INT64, STRING};
use classifier::Categories;
use columns::{Col, Scalar, Tensor};
use prost::Message;
use proto::type_proto;
use std::collections::HashMap;

/// The standard operator domains (`""` is `ai.onnx`).
const ONNX: [&str; 2] = ["", "ai.onnx"];
const ML: &str = "ai.onnx.ml";
/// Operators that may follow the classifier (on its label and probabilities).
const AFTER: [&str; 3] = ["Cast", "ZipMap", "Identity"];
/// Most nodes a graph may have (skl2onnx's pipelines have a few dozen).
const MAX_NODES: usize = 2_000;
/// The classifiers riskserve reads.
const CLASSIFIERS: [&str; 3] = ["TreeEnsembleClassifier", "TreeEnsembleRegressor", "LinearClassifier"];

/// Decodes and reads `model.onnx`'s bytes.
pub fn read(bytes: &[u8]) -> Result<Imported, LoadError> {
    let incomplete = |e: String| LoadError::Incomplete(format!("model.onnx {e}"));
    let invalid = |e: String| LoadError::Invalid(format!("model.onnx: {e}"));
    if bytes.is_empty() {
        return Err(incomplete("is empty".into()));
    }
    let model = proto::ModelProto::decode(bytes).map_err(|e| {
        incomplete(format!("is not a whole ONNX model (cut short, still being written, or not ONNX): {e}"))
    })?;
    let graph = model.graph.as_ref().ok_or_else(|| incomplete("has no graph (cut short?)".into()))?;
    if model.opset_import.is_empty() {
        return Err(incomplete("imports no operator sets (cut short after its graph?)".into()));
    }
    for o in &model.opset_import {
        if !(ONNX.contains(&o.domain()) || o.domain() == ML) {
            return Err(invalid(format!(
                "custom domain: imports operators of domain `{}`; riskserve reads only ai.onnx and ai.onnx.ml",
                o.domain()
            )));
        }
    }
    if let Some(f) = model.functions.first() {
        return Err(invalid(format!(
            "ONNX functions: defines {}{}; riskserve reads no functions",
            f.domain().to_owned() + if f.domain().is_empty() { "" } else { "." },
            f.name()
        )));
    }
    let mut read = Reader::default();
    let features = read.inputs(graph).map_err(invalid)?;
    let domains: Vec<&str> = model.opset_import.iter().map(|o| o.domain()).collect();
    let (classifier, cols) = read.nodes(graph, &domains).map_err(invalid)?;
    let op = classifier.op_type().to_owned();
    let attrs = Attrs::of(classifier).map_err(|e| invalid(format!("{op}: {e}")))?;
    let categories = categories(&features, &cols);
    let cats = Categories { of_feature: &categories };
    let at = |e: String| invalid(format!("{op}: {e}"));
    let (algorithm, tree_scales, trees, scoring) = if op == "LinearClassifier" {
        ("onnx_linear_classifier", Vec::new(), Vec::new(), classifier::linear(&attrs, &cols, &cats).map_err(at)?)
    } else {
        let trees = classifier::tree_ensemble(&op, &attrs, &cols, &cats).map_err(at)?;
        ("onnx_tree_ensemble", vec![1.0; trees.len()], trees, Scoring::FloatSum)
    };
    let mut hyperparameters = serde_json::Map::new();
    hyperparameters.insert("producer".into(), format!("{} {}", model.producer_name(), model.producer_version()).into());
    hyperparameters.insert("classifier".into(), op.into());
    hyperparameters.insert("trees".into(), trees.len().into());
    Ok(Imported {
        algorithm,
        features: features.into_iter().zip(categories).map(|(f, cats)| f.into_feature(cats)).collect(),
        trees,
        tree_scales,
        scoring,
        hyperparameters,
    })
}

/// A graph input as a request field.
enum Input {
    Number(Feature),
    /// A string input, before its categories are known.
    String(String),
}

impl Input {
    /// The field; a string input a category field over `categories`.
    fn into_feature(self, categories: Vec<String>) -> Feature {
        match self {
            Input::Number(f) => f,
            Input::String(name) => Feature::category(&name, categories, None),
        }
    }
}

/// Each string input's categories: every string the classifier's columns
/// tell apart (the operators' categories and keys) except the empty
/// string, the missing marker.
fn categories(features: &[Input], cols: &[Col]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::<String>::new(); features.len()];
    for col in cols {
        if let Col::Mapped { feature: Some(f), table, .. } = col {
            for k in table.keys().filter(|k| !k.is_empty()) {
                let k = String::from_utf8_lossy(k).into_owned();
                if !out[*f].contains(&k) {
                    out[*f].push(k);
                }
            }
        }
    }
    for c in &mut out {
        c.sort();
    }
    out
}

#[derive(Default)]
struct Reader {
    values: HashMap<String, Tensor>,
}

impl Reader {
    /// The graph's inputs (one column each) and constants.
    fn inputs(&mut self, graph: &proto::GraphProto) -> Result<Vec<Input>, String> {
        for init in &graph.initializer {
            let name = init.name().to_owned();
            let tensor = match init.data_type() {
                INT64 => Tensor::ints(attrs::int64s(init).map_err(|e| format!("constant {name} {e}"))?),
                FLOAT => Tensor::of(
                    attrs::reals(init)
                        .map_err(|e| format!("constant {name} {e}"))?
                        .into_iter()
                        .map(|v| Col::constant(Scalar::Float(v as f32)))
                        .collect(),
                ),
                STRING => Tensor::of(init.string_data.iter().map(|s| Col::constant(Scalar::Str(s.clone()))).collect()),
                other => return Err(format!("constant {name} has elements of type {other}")),
            };
            self.values.insert(name, tensor);
        }
        let mut features = Vec::new();
        for input in &graph.input {
            let name = input.name();
            if self.values.contains_key(name) {
                continue;
            }
            let Some(type_proto::Value::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
                return Err(format!("input {name} is not a tensor"));
            };
            let dims = t.shape.as_ref().map_or(0, |s| s.dim.len());
            let second = t.shape.as_ref().and_then(|s| s.dim.get(1)).and_then(|d| d.value.as_ref());
            if dims > 2 || (dims == 2 && second != Some(&proto::tensor_shape_proto::dimension::Value::DimValue(1))) {
                return Err(format!(
                    "input {name} is not one column (shape [N, 1]); riskserve reads one input per field"
                ));
            }
            let k = features.len();
            let (input, col) = match t.elem_type() {
                FLOAT => (Input::Number(number_feature(name)), Col::Number { feature: k, steps: Vec::new() }),
                STRING => (Input::String(name.to_owned()), Col::string_input(k)),
                other => {
                    return Err(format!(
                        "input {name} has elements of type {other}; riskserve reads float (numbers) and string (categories) inputs"
                    ))
                }
            };
            features.push(input);
            self.values.insert(name.to_owned(), Tensor::of(vec![col]));
        }
        Ok(features)
    }

    /// Works out every node before the classifier; returns the classifier
    /// and the columns it reads. Checks that what follows it only passes
    /// its outputs on, and that the graph's outputs come from it.
    fn nodes<'g>(
        &mut self,
        graph: &'g proto::GraphProto,
        model_domains: &[&str],
    ) -> Result<(&'g proto::NodeProto, Vec<Col>), String> {
        let mut classifier: Option<(&proto::NodeProto, Vec<Col>)> = None;
        let mut after: Vec<&str> = Vec::new();
        if graph.node.len() > MAX_NODES {
            return Err(format!("has {} nodes, more than the limit of {MAX_NODES}", graph.node.len()));
        }
        for (i, node) in graph.node.iter().enumerate() {
            super::super::pacing::checkpoint();
            let op = node.op_type();
            let domain = node.domain();
            let ml = domain == ML;
            if !(ml || ONNX.contains(&domain)) {
                return Err(format!(
                    "custom domain: node {i} ({}) is operator {op} of domain `{domain}`; riskserve reads only ai.onnx and ai.onnx.ml",
                    node.name()
                ));
            }
            let imported = |d: &str| model_domains.iter().any(|&m| m == d || (ONNX.contains(&m) && ONNX.contains(&d)));
            if !imported(domain) {
                return Err(format!(
                    "node {i} ({}) uses domain `{domain}`, for which the file imports no operator set (cut short?)",
                    node.name()
                ));
            }
            let known = if ml {
                columns::ML_OPERATORS.contains(&op) || CLASSIFIERS.contains(&op) || op == "ZipMap"
            } else {
                columns::ONNX_OPERATORS.contains(&op)
            };
            if !known {
                return Err(format!(
                    "unsupported operator: node {i} ({}) is {op} of domain `{}`, not one riskserve reads",
                    node.name(),
                    if ml { ML } else { "ai.onnx" }
                ));
            }
            let named = |e: String| format!("node {i} ({op} {}): {e}", node.name());
            if node.input.iter().any(|x| after.contains(&x.as_str())) {
                if !AFTER.contains(&op) {
                    return Err(named(format!(
                        "operator {op} after the classifier; riskserve reads only Cast, ZipMap or Identity there"
                    )));
                }
                after.extend(node.output.iter().map(String::as_str));
                continue;
            }
            if ml && CLASSIFIERS.contains(&op) {
                if classifier.is_some() {
                    return Err(named("a second classifier; riskserve reads one".into()));
                }
                let [input] = node.input.as_slice() else { return Err(named("takes one input".into())) };
                let cols = self
                    .values
                    .get(input)
                    .ok_or_else(|| named(format!("reads {input}, which nothing before it makes")))?;
                classifier = Some((node, cols.cols.clone()));
                after.extend(node.output.iter().map(String::as_str));
                continue;
            }
            let attrs = Attrs::of(node).map_err(named)?;
            let inputs = node
                .input
                .iter()
                .map(|x| {
                    self.values
                        .get(x)
                        .ok_or_else(|| named(format!("reads {x}, which nothing before it makes (cut short?)")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let outputs = columns::apply(op, ml, &attrs, &inputs).map_err(named)?;
            let [output] = node.output.as_slice() else { return Err(named("has more than one output".into())) };
            self.values.insert(output.clone(), outputs.into_iter().next().expect("one output"));
        }
        let (node, cols) = classifier
            .ok_or("has no classifier (TreeEnsembleClassifier, TreeEnsembleRegressor or LinearClassifier)")?;
        if graph.output.is_empty() || !graph.output.iter().all(|o| after.contains(&o.name())) {
            return Err("the graph's outputs do not all come from its classifier".into());
        }
        Ok((node, cols))
    }
}
