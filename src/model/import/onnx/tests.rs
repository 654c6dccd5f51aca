//! `model.onnx` files built here, node by node: what each is served as,
//! and what is refused.

use super::proto::{
    self, type_proto, AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TypeProto, ValueInfoProto,
};
use crate::model::format::LoadError;
use crate::model::import::{load, Format};
use crate::model::limits::ModelLimits;
use crate::model::row::{Row, Value};
use crate::model::Model;
use prost::Message;

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), ints: v.to_vec(), ..Default::default() }
}
fn floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), floats: v.to_vec(), ..Default::default() }
}
fn strings(name: &str, v: &[&str]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Default::default()
    }
}
fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: Some(name.into()), s: Some(v.as_bytes().to_vec()), ..Default::default() }
}
fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), i: Some(v), ..Default::default() }
}
fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), f: Some(v), ..Default::default() }
}

fn node(op: &str, domain: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        op_type: Some(op.into()),
        domain: Some(domain.into()),
        name: Some(op.into()),
        attribute,
        ..Default::default()
    }
}

fn value(name: &str, elem_type: i32) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: Some(elem_type), shape: None })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `x` (a number, NaN imputed as 2) and `c` (a category, one-hot over a
/// and b), then `classifier` over [x, c=a, c=b], then ZipMap.
fn model(classifier: NodeProto) -> ModelProto {
    let nodes = vec![
        node(
            "Imputer",
            "ai.onnx.ml",
            &["x"],
            &["xi"],
            vec![floats("imputed_value_floats", &[2.0]), float("replaced_value_float", f32::NAN)],
        ),
        node(
            "OneHotEncoder",
            "ai.onnx.ml",
            &["c"],
            &["oh"],
            vec![strings("cats_strings", &["a", "b"]), int("zeros", 1)],
        ),
        node("Concat", "", &["xi", "oh"], &["features"], vec![int("axis", 1)]),
        classifier,
        node(
            "ZipMap",
            "ai.onnx.ml",
            &["probabilities"],
            &["output_probability"],
            vec![ints("classlabels_int64s", &[0, 1])],
        ),
    ];
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("test".into()),
        opset_import: vec![
            OperatorSetIdProto { domain: Some(String::new()), version: Some(21) },
            OperatorSetIdProto { domain: Some("ai.onnx.ml".into()), version: Some(3) },
        ],
        graph: Some(GraphProto {
            node: nodes,
            input: vec![value("x", 1), value("c", 8)],
            output: vec![value("label", 7), value("output_probability", 1)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Tree 0: `x < 1.5` → 0.25, else `c=b >= 0.5` → 0.5, else 0.75 (NaN
/// sent to the true side); tree 1 (listed first in the weights): one leaf
/// worth 0.125. Weights for one class only, as skl2onnx writes a binary forest.
fn forest(post_transform: &str, labels: &[i64]) -> NodeProto {
    node(
        "TreeEnsembleClassifier",
        "ai.onnx.ml",
        &["features"],
        &["label", "probabilities"],
        vec![
            ints("nodes_treeids", &[0, 0, 0, 0, 0, 1]),
            // Node ids in another order than the list, the root not first.
            ints("nodes_nodeids", &[3, 0, 1, 2, 4, 0]),
            ints("nodes_featureids", &[0, 0, 0, 2, 0, 0]),
            strings("nodes_modes", &["LEAF", "BRANCH_LT", "LEAF", "BRANCH_GTE", "LEAF", "LEAF"]),
            floats("nodes_values", &[0.0, 1.5, 0.0, 0.5, 0.0, 0.0]),
            ints("nodes_truenodeids", &[0, 1, 0, 3, 0, 0]),
            ints("nodes_falsenodeids", &[0, 2, 0, 4, 0, 0]),
            ints("nodes_missing_value_tracks_true", &[0, 0, 0, 1, 0, 0]),
            ints("class_treeids", &[1, 0, 0, 0]),
            ints("class_nodeids", &[0, 1, 3, 4]),
            ints("class_ids", &[0, 0, 0, 0]),
            floats("class_weights", &[0.125, 0.25, 0.5, 0.75]),
            ints("classlabels_int64s", labels),
            string("post_transform", post_transform),
        ],
    )
}

/// [`forest`] as an opset-3 `TreeEnsembleRegressor`: thresholds and
/// weights as double tensors, which ONNX Runtime rounds to float for a
/// float input.
fn regressor() -> NodeProto {
    let mut n = forest("NONE", &[0, 1]);
    n.op_type = Some("TreeEnsembleRegressor".into());
    let doubles = |name: &str, v: &[f64]| AttributeProto {
        name: Some(name.into()),
        t: Some(TensorProto {
            data_type: Some(11),
            double_data: v.to_vec(),
            dims: vec![v.len() as i64],
            ..Default::default()
        }),
        ..Default::default()
    };
    let rename = |a: &mut AttributeProto, from: &str, to: &str| {
        if a.name() == from {
            a.name = Some(to.into());
        }
    };
    n.attribute.retain(|a| !matches!(a.name(), "nodes_values" | "class_weights" | "classlabels_int64s"));
    for a in &mut n.attribute {
        rename(a, "class_treeids", "target_treeids");
        rename(a, "class_nodeids", "target_nodeids");
        rename(a, "class_ids", "target_ids");
    }
    n.attribute.push(doubles("nodes_values_as_tensor", &[0.0, 1.5000000001, 0.0, 0.5, 0.0, 0.0]));
    n.attribute.push(doubles("target_weights_as_tensor", &[0.125, 0.25, 0.5, 0.75000000001]));
    n.attribute.push(int("n_targets", 1));
    n.output = vec!["variable".into()];
    n
}

fn served(m: &ModelProto) -> Result<Model, LoadError> {
    load(Format::Onnx, &m.encode_to_vec(), None, ModelLimits::default())
}

fn p(model: &Model, x: Value, c: Value) -> f64 {
    model.predict(Row::of(&[x, c])).probability_late
}

#[test]
fn a_forest_answers_as_onnx_runtime_walks_it() {
    let model = served(&model(forest("NONE", &[0, 1]))).unwrap();
    let (a, b) = (Value::Category(0), Value::Category(1));
    let sum = |leaf: f32| f64::from(0.125f32 + leaf);
    assert_eq!(p(&model, Value::Number(1.0), a), sum(0.25));
    // 1.4999999999 is 1.5 as a float: not below 1.5.
    assert_eq!(p(&model, Value::Number(1.4999999999), b), sum(0.5));
    assert_eq!(p(&model, Value::Number(1.5), a), sum(0.75));
    assert_eq!(p(&model, Value::Missing, b), sum(0.5), "missing x: imputed 2.0");
    assert_eq!(p(&model, Value::Number(7.0), Value::Missing), sum(0.75), "missing c: no one-hot column set");
    assert_eq!(p(&model, Value::Number(7.0), Value::Unseen(0)), sum(0.75));
    assert_eq!(model.meta.algorithm, "onnx_tree_ensemble");
}

#[test]
fn an_opset_3_regressor_reads_its_tensors_as_float() {
    let mut m = model(regressor());
    let graph = m.graph.as_mut().unwrap();
    graph.node.pop(); // no ZipMap for a regressor
    graph.output = vec![value("variable", 1)];
    let model = served(&m).unwrap();
    let sum = |leaf: f32| f64::from(0.125f32 + leaf);
    // 1.5000000001 is 1.5 as a float: 1.4999999999 (1.5 too) is not below it.
    assert_eq!(p(&model, Value::Number(1.4999999999), Value::Category(1)), sum(0.5));
    assert_eq!(p(&model, Value::Number(1.0), Value::Category(1)), sum(0.25));
    assert_eq!(p(&model, Value::Number(1.5), Value::Category(0)), sum(0.75000000001f64 as f32));
}

#[test]
fn a_logistic_regression_is_the_sigmoid_of_its_class_1_row() {
    let linear = node(
        "LinearClassifier",
        "ai.onnx.ml",
        &["features"],
        &["label", "probabilities"],
        vec![
            ints("classlabels_ints", &[0, 1]),
            floats("coefficients", &[-0.5, -1.0, 2.0, 0.5, 1.0, -2.0]),
            floats("intercepts", &[0.25, -0.25]),
            string("post_transform", "LOGISTIC"),
        ],
    );
    let model = served(&model(linear)).unwrap();
    let sigmoid = crate::model::estimator::sigmoid;
    let got = p(&model, Value::Number(0.1), Value::Category(0));
    assert!((got - sigmoid(-0.25 + 0.5 * f64::from(0.1f32) + 1.0)).abs() < 1e-15, "{got}");
    let got = p(&model, Value::Missing, Value::Missing);
    assert!((got - sigmoid(-0.25 + 0.5 * 2.0)).abs() < 1e-15, "{got}");
    assert_eq!(model.meta.algorithm, "onnx_linear_classifier");
}

fn refused(m: &ModelProto) -> String {
    match served(m) {
        Ok(_) => panic!("served"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn what_riskserve_does_not_read_is_refused_naming_it() {
    let good = model(forest("NONE", &[0, 1]));
    let mut custom = good.clone();
    custom.opset_import.push(OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) });
    assert!(refused(&custom).contains("custom domain: imports operators of domain `com.example`"));
    let mut custom = good.clone();
    custom.graph.as_mut().unwrap().node[2].domain = Some("com.example".into());
    assert!(refused(&custom).contains("operator Concat of domain `com.example`"));
    let mut function = good.clone();
    function.functions.push(FunctionProto {
        name: Some("f".into()),
        domain: Some("local".into()),
        ..Default::default()
    });
    assert!(refused(&function).contains("ONNX functions: defines local.f"));
    let mut unknown = good.clone();
    unknown.graph.as_mut().unwrap().node[2].op_type = Some("Softmax".into());
    assert!(refused(&unknown).contains("unsupported operator: node 2 (Concat) is Softmax"));
    let mut after = good.clone();
    after.graph.as_mut().unwrap().node.push(node("ArgMax", "", &["probabilities"], &["best"], vec![]));
    assert!(refused(&after).contains("is ArgMax"));
    assert!(refused(&model(forest("LOGISTIC", &[0, 1]))).contains("post_transform LOGISTIC"));
    assert!(refused(&model(forest("NONE", &[1, 2]))).contains("classlabels_int64s is [1, 2]"));
    let mut no_sets = good.clone();
    no_sets.opset_import.clear();
    assert!(matches!(served(&no_sets), Err(LoadError::Incomplete(_))));
    let mut double_input = good.clone();
    double_input.graph.as_mut().unwrap().input[0] = value("x", 11);
    assert!(refused(&double_input).contains("input x has elements of type 11"));
    let mut external = good;
    external.graph.as_mut().unwrap().initializer.push(TensorProto {
        name: Some("w".into()),
        data_type: Some(1),
        data_location: Some(proto::tensor_proto::DataLocation::External as i32),
        ..Default::default()
    });
    assert!(refused(&external).contains("keeps its data in another file"));
}

#[test]
fn every_cut_of_a_file_is_refused() {
    let bytes = model(forest("NONE", &[0, 1])).encode_to_vec();
    assert!(load(Format::Onnx, &bytes, None, ModelLimits::default()).is_ok());
    for k in 0..bytes.len() {
        let r = load(Format::Onnx, &bytes[..k], None, ModelLimits::default());
        assert!(matches!(r, Err(LoadError::Incomplete(_) | LoadError::Invalid(_))), "cut at {k}: served");
    }
}
