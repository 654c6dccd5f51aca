//! What an ONNX pipeline's preprocessing does to one request, worked out
//! once at load time instead of run per request: every tensor is a row of
//! columns, and every column is a function of one input ([`Col`]). A
//! number input's column is its `float` value after the Imputer and Scaler
//! steps ([`FloatStep`]); a string input's column is a table from the
//! strings that matter (the categories and keys the operators name) to
//! values, and one value for every other string. Each supported operator
//! maps columns to columns ([`apply`]); nothing is ever executed.

use super::super::super::encoder::FloatStep;
use super::super::super::limits::MAX_CATEGORIES_PER_FEATURE;
use super::attrs::{Attrs, BOOL, FLOAT, INT64, STRING};
use std::collections::BTreeMap;

/// One value of a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(Vec<u8>),
    Int(i64),
    Float(f32),
    Bool(bool),
}

/// What a string column holds for a string its table does not list.
#[derive(Debug, Clone, PartialEq)]
pub enum Otherwise {
    /// The input string itself.
    Input,
    Value(Scalar),
}

/// One column of a tensor (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub enum Col {
    /// Number input `feature` rounded to `float` (NaN when missing), then `steps`.
    Number { feature: usize, steps: Vec<FloatStep> },
    /// A function of string input `feature` (a constant when `None`).
    Mapped { feature: Option<usize>, table: BTreeMap<Vec<u8>, Scalar>, otherwise: Otherwise },
}

impl Col {
    /// A constant column.
    pub fn constant(v: Scalar) -> Col {
        Col::Mapped { feature: None, table: BTreeMap::new(), otherwise: Otherwise::Value(v) }
    }

    /// String input `feature` as it is.
    pub fn string_input(feature: usize) -> Col {
        Col::Mapped { feature: Some(feature), table: BTreeMap::new(), otherwise: Otherwise::Input }
    }

    /// The value for input string `s` (a string column).
    pub fn at(&self, s: &[u8]) -> Option<Scalar> {
        match self {
            Col::Number { .. } => None,
            Col::Mapped { table, otherwise, .. } => Some(match (table.get(s), otherwise) {
                (Some(v), _) | (None, Otherwise::Value(v)) => v.clone(),
                (None, Otherwise::Input) => Scalar::Str(s.to_vec()),
            }),
        }
    }
}

/// An argument of a column function: a value, or a string no operator
/// names (an input string outside every table).
enum Arg<'a> {
    Known(&'a Scalar),
    OtherString,
}

/// A tensor: its columns, and its integers when it is an int64 constant
/// (indices, shapes).
#[derive(Debug, Clone)]
pub struct Tensor {
    pub cols: Vec<Col>,
    pub ints: Option<Vec<i64>>,
}

impl Tensor {
    pub fn of(cols: Vec<Col>) -> Tensor {
        Tensor { cols, ints: None }
    }

    pub fn ints(values: Vec<i64>) -> Tensor {
        Tensor { cols: values.iter().map(|&v| Col::constant(Scalar::Int(v))).collect(), ints: Some(values) }
    }
}

/// Maps `col` through `f`; `keys` are the strings `f` treats apart (an
/// input string among them gets its own row in the result's table).
fn map(col: &Col, keys: &[&[u8]], f: &dyn Fn(Arg) -> Result<Scalar, String>) -> Result<Col, String> {
    match col {
        Col::Number { .. } => Err("reads a number column where it needs strings or integers".into()),
        Col::Mapped { feature, table, otherwise } => {
            let mut out = BTreeMap::new();
            for (k, v) in table {
                out.insert(k.clone(), f(Arg::Known(v))?);
            }
            let otherwise = match otherwise {
                Otherwise::Value(v) => Otherwise::Value(f(Arg::Known(v))?),
                Otherwise::Input => {
                    for &k in keys {
                        if !table.contains_key(k) {
                            out.insert(k.to_vec(), f(Arg::Known(&Scalar::Str(k.to_vec())))?);
                        }
                    }
                    Otherwise::Value(f(Arg::OtherString)?)
                }
            };
            Ok(Col::Mapped { feature: *feature, table: out, otherwise })
        }
    }
}

/// A `float` step on a column: appended to a number column, applied to
/// each value of a string column's table.
fn float_step(col: &Col, step: FloatStep) -> Result<Col, String> {
    match col {
        Col::Number { feature, steps } => {
            let mut steps = steps.clone();
            steps.push(step);
            Ok(Col::Number { feature: *feature, steps })
        }
        mapped => map(mapped, &[], &|a| match a {
            Arg::Known(Scalar::Float(x)) => Ok(Scalar::Float(step.apply(*x))),
            _ => Err("computes on a column that is not float".into()),
        }),
    }
}

/// The one value, or the `i`-th of per-column values.
fn per_column<T: Copy>(values: &[T], i: usize, what: &str) -> Result<T, String> {
    match values {
        [one] => Ok(*one),
        many => many.get(i).copied().ok_or_else(|| format!("has {} {what} for {} or more columns", many.len(), i + 1)),
    }
}

fn bounded<T>(list: &[T], what: &str) -> Result<(), String> {
    if list.len() > MAX_CATEGORIES_PER_FEATURE {
        return Err(format!(
            "lists {} {what}, more than the limit of {MAX_CATEGORIES_PER_FEATURE} categories per feature",
            list.len()
        ));
    }
    Ok(())
}

fn single<'a>(inputs: &[&'a Tensor], op: &str) -> Result<&'a Tensor, String> {
    match inputs {
        [one] => Ok(one),
        _ => Err(format!("{op} takes one input here, not {}", inputs.len())),
    }
}

/// Picks columns by index (negative: from the end).
fn pick(data: &Tensor, indices: &Tensor) -> Result<Vec<Col>, String> {
    let ints = indices.ints.as_ref().ok_or("its indices are not an int64 constant")?;
    let n = data.cols.len() as i64;
    ints.iter()
        .map(|&i| {
            let k = if i < 0 { i + n } else { i };
            usize::try_from(k)
                .ok()
                .and_then(|k| data.cols.get(k).cloned())
                .ok_or_else(|| format!("index {i} is outside the {n} columns"))
        })
        .collect()
}

/// Most columns a tensor may have (a hostile file could otherwise copy
/// columns without end): twice the widest encoding a model may read.
pub const MAX_COLUMNS: usize = 2 * super::super::super::encoder::MAX_ENCODED_WIDTH;

/// Most strings a column may tell apart: a category field's limit, and
/// the missing marker.
const MAX_TABLE: usize = MAX_CATEGORIES_PER_FEATURE + 1;

/// The preprocessing operators [`apply`] reads, of domain `ai.onnx`.
pub const ONNX_OPERATORS: [&str; 6] = ["Identity", "Concat", "Gather", "Reshape", "Cast", "Where"];
/// Those of domain `ai.onnx.ml`.
pub const ML_OPERATORS: [&str; 5] = ["ArrayFeatureExtractor", "LabelEncoder", "OneHotEncoder", "Imputer", "Scaler"];

/// The preprocessing operator `op` (domain `ai.onnx.ml` when `ml`) on
/// `inputs`: its output tensors. Refuses an operator or attribute riskserve
/// does not read, naming it.
pub fn apply(op: &str, ml: bool, attrs: &Attrs, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    let out = match (ml, op) {
        (false, "Identity") => single(inputs, op)?.clone(),
        (false, "Concat") => {
            let axis = attrs.int("axis").ok_or("Concat has no axis")?;
            if axis == 0 {
                return Err("Concat along axis 0 joins rows, not columns".into());
            }
            Tensor::of(inputs.iter().flat_map(|t| t.cols.iter().cloned()).collect())
        }
        (false, "Gather") => {
            if attrs.int("axis") != Some(1) {
                return Err("Gather other than along axis 1 (columns)".into());
            }
            let [data, indices] = inputs else { return Err("Gather takes data and indices".into()) };
            Tensor::of(pick(data, indices)?)
        }
        (true, "ArrayFeatureExtractor") => {
            let [data, indices] = inputs else { return Err("ArrayFeatureExtractor takes data and indices".into()) };
            Tensor::of(pick(data, indices)?)
        }
        (false, "Reshape") => {
            let [data, shape] = inputs else { return Err("Reshape takes data and a shape".into()) };
            let shape = shape.ints.as_ref().ok_or("Reshape's shape is not an int64 constant")?;
            match shape.as_slice() {
                [-1 | 0, n] if *n == data.cols.len() as i64 => (*data).clone(),
                other => Err(format!("Reshape to {other:?} changes a row's {} columns", data.cols.len()))?,
            }
        }
        (false, "Cast") => {
            let to = attrs.int("to").ok_or("Cast has no `to`")?;
            let t = single(inputs, op)?;
            let to = i32::try_from(to).unwrap_or(-1);
            let cols = t.cols.iter().map(|c| cast(c, to)).collect::<Result<_, _>>()?;
            Tensor::of(cols)
        }
        (false, "Where") => {
            let [cond, a, b] = inputs else { return Err("Where takes three inputs".into()) };
            let n = [cond, a, b].iter().map(|t| t.cols.len()).max().unwrap_or(0);
            let col = |t: &Tensor, i: usize| -> Result<Col, String> {
                match t.cols.len() {
                    1 => Ok(t.cols[0].clone()),
                    m if m == n => Ok(t.cols[i].clone()),
                    m => Err(format!("Where's inputs have {m} and {n} columns")),
                }
            };
            Tensor::of((0..n).map(|i| select(&col(cond, i)?, &col(a, i)?, &col(b, i)?)).collect::<Result<_, _>>()?)
        }
        (true, "LabelEncoder") => {
            let t = single(inputs, op)?;
            Tensor::of(t.cols.iter().map(|c| label_encoder(attrs, c)).collect::<Result<_, _>>()?)
        }
        (true, "OneHotEncoder") => {
            let t = single(inputs, op)?;
            let cats = attrs.strings("cats_strings");
            if attrs.has("cats_int64s") || cats.is_empty() {
                return Err("OneHotEncoder other than over strings (cats_strings)".into());
            }
            bounded(cats, "categories")?;
            let keys: Vec<&[u8]> = cats.iter().map(Vec::as_slice).collect();
            let mut cols = Vec::with_capacity(t.cols.len() * cats.len());
            for c in &t.cols {
                for cat in cats {
                    cols.push(map(c, &keys, &|a| match a {
                        Arg::Known(Scalar::Str(s)) => Ok(Scalar::Float(if s == cat { 1.0 } else { 0.0 })),
                        Arg::OtherString => Ok(Scalar::Float(0.0)),
                        Arg::Known(_) => Err("OneHotEncoder over strings reads a column that is not strings".into()),
                    })?);
                }
            }
            Tensor::of(cols)
        }
        (true, "Imputer") => {
            let t = single(inputs, op)?;
            if attrs.has("imputed_value_int64s") {
                return Err("Imputer over integers (imputed_value_int64s)".into());
            }
            let with = attrs.floats("imputed_value_floats");
            let replaced = attrs.float("replaced_value_float").unwrap_or(0.0);
            let cols = t.cols.iter().enumerate().map(|(i, c)| {
                let with = per_column(with, i, "imputed values")?;
                float_step(c, FloatStep::Impute { replaced: replaced.to_bits(), with: with.to_bits() })
            });
            Tensor::of(cols.collect::<Result<_, _>>()?)
        }
        (true, "Scaler") => {
            let t = single(inputs, op)?;
            let (offset, scale) = (attrs.floats("offset"), attrs.floats("scale"));
            let cols = t.cols.iter().enumerate().map(|(i, c)| {
                let step = FloatStep::Scale {
                    offset: per_column(offset, i, "offsets")?.to_bits(),
                    scale: per_column(scale, i, "scales")?.to_bits(),
                };
                float_step(c, step)
            });
            Tensor::of(cols.collect::<Result<_, _>>()?)
        }
        _ => return Err(format!("operator {op} is not one riskserve reads")),
    };
    if out.cols.len() > MAX_COLUMNS {
        return Err(format!("makes {} columns, more than the limit of {MAX_COLUMNS}", out.cols.len()));
    }
    for c in &out.cols {
        if let Col::Mapped { table, .. } = c {
            if table.len() > MAX_TABLE {
                return Err(format!(
                    "tells {} strings of one input apart, more than the limit of {MAX_CATEGORIES_PER_FEATURE} categories per feature",
                    table.len()
                ));
            }
        }
    }
    Ok(vec![out])
}

fn cast(col: &Col, to: i32) -> Result<Col, String> {
    match (col, to) {
        (Col::Number { .. }, FLOAT) => Ok(col.clone()),
        (Col::Number { .. }, _) => Err(format!("Cast of a float column to type {to}")),
        (mapped, _) => map(mapped, &[], &|a| {
            let v = match a {
                Arg::Known(v) => v,
                Arg::OtherString => return Err(format!("Cast of strings to type {to}")),
            };
            match (v, to) {
                (Scalar::Int(i), BOOL) => Ok(Scalar::Bool(*i != 0)),
                (Scalar::Float(x), BOOL) => Ok(Scalar::Bool(*x != 0.0)),
                (Scalar::Bool(b), INT64) => Ok(Scalar::Int(i64::from(*b))),
                (Scalar::Int(i), INT64) => Ok(Scalar::Int(*i)),
                (Scalar::Bool(b), FLOAT) => Ok(Scalar::Float(f32::from(u8::from(*b)))),
                (Scalar::Int(i), FLOAT) => Ok(Scalar::Float(*i as f32)),
                (Scalar::Float(x), FLOAT) => Ok(Scalar::Float(*x)),
                (Scalar::Bool(b), BOOL) => Ok(Scalar::Bool(*b)),
                (Scalar::Str(s), STRING) => Ok(Scalar::Str(s.clone())),
                (v, to) => Err(format!("Cast of {v:?} to type {to}")),
            }
        }),
    }
}

/// `Where(cond, a, b)` on one column of each.
fn select(cond: &Col, a: &Col, b: &Col) -> Result<Col, String> {
    let mut feature = None;
    let mut keys = Vec::new();
    for c in [cond, a, b] {
        let Col::Mapped { feature: f, table, .. } = c else {
            return Err("Where over a number column".into());
        };
        match (feature, f) {
            (Some(x), Some(y)) if x != *y => return Err("Where mixes two inputs".into()),
            (None, Some(_)) => feature = *f,
            _ => {}
        }
        keys.extend(table.keys().cloned());
    }
    let pick = |c: Scalar| match c {
        Scalar::Bool(t) => Ok(t),
        other => Err(format!("Where's condition is {other:?}, not a boolean")),
    };
    let mut table = BTreeMap::new();
    for k in keys {
        let chosen = if pick(cond.at(&k).expect("mapped"))? { a } else { b };
        table.insert(k.clone(), chosen.at(&k).expect("mapped"));
    }
    let otherwise_of = |c: &Col| match c {
        Col::Mapped { otherwise, .. } => otherwise.clone(),
        Col::Number { .. } => unreachable!("checked above"),
    };
    let otherwise = match otherwise_of(cond) {
        Otherwise::Value(v) => otherwise_of(if pick(v)? { a } else { b }),
        Otherwise::Input => return Err("Where's condition is a string".into()),
    };
    Ok(Col::Mapped { feature, table, otherwise })
}

/// `ai.onnx.ml` LabelEncoder (opsets 1 and 2: keys and values as lists).
fn label_encoder(attrs: &Attrs, col: &Col) -> Result<Col, String> {
    if attrs.has("keys_tensor") || attrs.has("values_tensor") {
        return Err("LabelEncoder with keys_tensor/values_tensor (opset 4)".into());
    }
    let keys: Vec<Scalar> = if attrs.has("keys_strings") {
        attrs.strings("keys_strings").iter().map(|s| Scalar::Str(s.clone())).collect()
    } else if attrs.has("keys_int64s") {
        attrs.ints("keys_int64s").iter().map(|&i| Scalar::Int(i)).collect()
    } else if attrs.has("classes_strings") {
        return Err("LabelEncoder of opset 1 (classes_strings)".into());
    } else {
        return Err("LabelEncoder without string or int64 keys".into());
    };
    let (values, default): (Vec<Scalar>, Scalar) = if attrs.has("values_strings") {
        let d = attrs.string("default_string").unwrap_or(b"_Unused");
        (attrs.strings("values_strings").iter().map(|s| Scalar::Str(s.clone())).collect(), Scalar::Str(d.to_vec()))
    } else if attrs.has("values_int64s") {
        let d = attrs.int("default_int64").unwrap_or(-1);
        (attrs.ints("values_int64s").iter().map(|&i| Scalar::Int(i)).collect(), Scalar::Int(d))
    } else if attrs.has("values_floats") {
        let d = attrs.float("default_float").unwrap_or(-0.0);
        (attrs.floats("values_floats").iter().map(|&x| Scalar::Float(x)).collect(), Scalar::Float(d))
    } else {
        return Err("LabelEncoder without values".into());
    };
    if keys.len() != values.len() {
        return Err(format!("LabelEncoder has {} keys and {} values", keys.len(), values.len()));
    }
    bounded(&keys, "keys")?;
    let string_keys: Vec<&[u8]> = keys
        .iter()
        .filter_map(|k| match k {
            Scalar::Str(s) => Some(s.as_slice()),
            _ => None,
        })
        .collect();
    map(col, &string_keys, &|a| match a {
        Arg::Known(v) => Ok(keys.iter().position(|k| k == v).map_or_else(|| default.clone(), |i| values[i].clone())),
        Arg::OtherString => Ok(default.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::proto::{AttributeProto, NodeProto};
    use super::*;

    fn node(attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto { attribute: attrs, ..Default::default() }
    }

    fn strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..Default::default()
        }
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { name: Some(name.into()), ints: v.to_vec(), ..Default::default() }
    }

    fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto { name: Some(name.into()), i: Some(v), ..Default::default() }
    }

    fn run(op: &str, ml: bool, attrs: Vec<AttributeProto>, inputs: &[&Tensor]) -> Result<Tensor, String> {
        let n = node(attrs);
        Ok(apply(op, ml, &Attrs::of(&n).unwrap(), inputs)?.remove(0))
    }

    /// skl2onnx's string imputer: "" (the missing marker) becomes "missing",
    /// then one-hot over the fitted categories.
    #[test]
    fn the_string_imputer_and_one_hot_pattern_becomes_a_table_per_category() {
        let input = Tensor::of(vec![Col::string_input(3)]);
        let is_missing = run(
            "LabelEncoder",
            true,
            vec![strings("keys_strings", &[""]), ints("values_int64s", &[1]), int("default_int64", 0)],
            &[&input],
        )
        .unwrap();
        let is_missing = run("Cast", false, vec![int("to", 9)], &[&is_missing]).unwrap();
        let fill = Tensor::of(vec![Col::constant(Scalar::Str(b"missing".to_vec()))]);
        let filled = run("Where", false, vec![], &[&is_missing, &fill, &input]).unwrap();
        let onehot =
            run("OneHotEncoder", true, vec![strings("cats_strings", &["A", "B", "missing"])], &[&filled]).unwrap();
        assert_eq!(onehot.cols.len(), 3);
        let f = |c: &Col, s: &str| c.at(s.as_bytes()).unwrap();
        assert_eq!(f(&onehot.cols[0], "A"), Scalar::Float(1.0));
        assert_eq!(f(&onehot.cols[0], "B"), Scalar::Float(0.0));
        assert_eq!(f(&onehot.cols[2], ""), Scalar::Float(1.0), "missing: imputed to `missing`");
        assert_eq!(f(&onehot.cols[2], "missing"), Scalar::Float(1.0));
        assert_eq!(f(&onehot.cols[1], "ZZ"), Scalar::Float(0.0), "unknown: zeros");
        let Col::Mapped { feature, .. } = &onehot.cols[1] else { panic!() };
        assert_eq!(*feature, Some(3));
    }

    #[test]
    fn number_columns_collect_float_steps_and_index_ops_pick_columns() {
        let nums =
            Tensor::of(vec![Col::Number { feature: 0, steps: vec![] }, Col::Number { feature: 1, steps: vec![] }]);
        let floats = |name: &str, v: &[f32]| AttributeProto {
            name: Some(name.into()),
            floats: v.to_vec(),
            ..Default::default()
        };
        let imputed = run(
            "Imputer",
            true,
            vec![
                floats("imputed_value_floats", &[2.0, 3.0]),
                AttributeProto { name: Some("replaced_value_float".into()), f: Some(f32::NAN), ..Default::default() },
            ],
            &[&nums],
        )
        .unwrap();
        let scaled =
            run("Scaler", true, vec![floats("offset", &[1.0]), floats("scale", &[0.5, 4.0])], &[&imputed]).unwrap();
        let Col::Number { feature: 1, steps } = &scaled.cols[1] else { panic!("{:?}", scaled.cols[1]) };
        assert_eq!(steps.iter().fold(f32::NAN, |x, s| s.apply(x)), (3.0 - 1.0) * 4.0);
        let idx = Tensor::ints(vec![-1]);
        let picked = run("Gather", false, vec![int("axis", 1)], &[&scaled, &idx]).unwrap();
        assert_eq!(picked.cols, vec![scaled.cols[1].clone()]);
        assert!(run("Gather", false, vec![int("axis", 1)], &[&scaled, &Tensor::ints(vec![2])])
            .unwrap_err()
            .contains("outside"));
        assert!(run("Reshape", false, vec![], &[&scaled, &Tensor::ints(vec![-1, 3])]).unwrap_err().contains("changes"));
        assert!(run("Concat", false, vec![int("axis", 0)], &[&scaled]).unwrap_err().contains("axis 0"));
        assert!(run("Softmax", false, vec![], &[&scaled]).unwrap_err().contains("operator Softmax"));
        let many = Tensor::of(vec![Col::Number { feature: 0, steps: vec![] }; MAX_COLUMNS]);
        let err = run("Concat", false, vec![int("axis", 1)], &[&many, &many]).unwrap_err();
        assert!(err.contains("more than the limit"), "{err}");
        let wide = strings("cats_strings", &vec!["x"; MAX_CATEGORIES_PER_FEATURE + 1]);
        let err = run("OneHotEncoder", true, vec![wide], &[&Tensor::of(vec![Col::string_input(0)])]).unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }
}
