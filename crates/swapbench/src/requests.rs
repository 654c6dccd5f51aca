//! Request bodies: realistic single-application JSON objects, from
//! `riskserve synth` rows or a CSV with the reference columns.

use bytes::Bytes;
use riskserve::model::input::{LoanApplication, CATEGORICAL_FEATURES, CSV_FEATURE_ORDER, NUMERIC_FEATURES};
use std::path::Path;

/// JSON bodies for single-application requests, one per synthetic row
/// (`riskserve synth` data; missing values are sent as `null`).
pub fn synth_bodies(rows: usize, seed: u64) -> Vec<Bytes> {
    riskserve::train::synth::generate(rows.max(1), seed).iter().map(|(app, _)| application_json(app)).collect()
}

/// JSON bodies from a training CSV (the target column `is_late`; every
/// other column a field; blank cells → `null`).
pub fn csv_bodies(path: &Path) -> Result<Vec<Bytes>, String> {
    let options = riskserve::train::dataset::CsvOptions::default();
    let data = riskserve::train::dataset::read_csv(path, &options).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(data.rows.iter().map(|row| row_json(&data.schema, row)).collect())
}

/// One decoded row as a JSON object, keys in schema order.
pub fn row_json(schema: &riskserve::model::schema::Schema, row: riskserve::model::row::Row<'_>) -> Bytes {
    use riskserve::model::row::Value;
    let mut object = serde_json::Map::new();
    for (i, feature) in schema.features.iter().enumerate() {
        let value = match row.get(i) {
            Value::Missing => serde_json::Value::Null,
            Value::Number(v) => serde_json::Value::from(v),
            Value::Category(c) => serde_json::Value::from(feature.categories()[c as usize].as_str()),
            Value::Unseen(k) => serde_json::Value::from(row.unseen_text(k)),
        };
        object.insert(feature.name.clone(), value);
    }
    Bytes::from(serde_json::Value::Object(object).to_string())
}

/// One application as a JSON object, keys in CSV order.
pub fn application_json(app: &LoanApplication) -> Bytes {
    let mut out = String::with_capacity(256);
    out.push('{');
    for (k, feature) in CSV_FEATURE_ORDER.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(feature);
        out.push_str("\":");
        let value = if let Some(i) = NUMERIC_FEATURES.iter().position(|f| f == feature) {
            app.numeric[i].map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
        } else {
            let i = CATEGORICAL_FEATURES.iter().position(|f| f == feature).unwrap_or(0);
            app.categorical[i].clone().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null)
        };
        out.push_str(&value.to_string());
    }
    out.push('}');
    Bytes::from(out)
}

/// `ModelInfer` requests (encoded) for `model` carrying the same
/// applications as `bodies` (JSON objects of fields): one tensor per field,
/// numbers FP64 and texts BYTES in typed contents, shape `[1]`. gRPC's
/// typed contents have no null, so applications with a missing value are
/// left out.
pub fn infer_messages(bodies: &[Bytes], model: &str) -> Result<Vec<Bytes>, String> {
    use prost::Message;
    use riskserve::grpc::proto::model_infer_request::InferInputTensor;
    use riskserve::grpc::proto::{InferTensorContents, ModelInferRequest};
    let mut objects = Vec::with_capacity(bodies.len());
    for body in bodies {
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| format!("a request body is not a JSON object: {e}"))?;
        if fields.values().all(|v| !v.is_null()) {
            objects.push(fields);
        }
    }
    if objects.is_empty() {
        return Err("every application has a missing value, which gRPC's typed contents cannot carry".into());
    }
    objects
        .into_iter()
        .map(|fields| {
            let inputs = fields
                .into_iter()
                .filter_map(|(name, value)| {
                    let (datatype, contents) = match value {
                        serde_json::Value::Number(n) => {
                            ("FP64", InferTensorContents { fp64_contents: vec![n.as_f64()?], ..Default::default() })
                        }
                        serde_json::Value::String(text) => (
                            "BYTES",
                            InferTensorContents { bytes_contents: vec![text.into_bytes()], ..Default::default() },
                        ),
                        _ => return None,
                    };
                    let shape = vec![1];
                    Some(InferInputTensor {
                        name,
                        datatype: datatype.into(),
                        shape,
                        contents: Some(contents),
                        ..Default::default()
                    })
                })
                .collect();
            let request = ModelInferRequest { model_name: model.into(), inputs, ..Default::default() };
            Ok(Bytes::from(request.encode_to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_objects_with_every_feature() {
        let bodies = synth_bodies(20, 3);
        assert_eq!(bodies.len(), 20);
        assert_eq!(bodies, synth_bodies(20, 3), "deterministic for a seed");
        for body in &bodies {
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), CSV_FEATURE_ORDER.len());
            assert!(CSV_FEATURE_ORDER.iter().all(|f| keys.contains(f)));
        }
    }
}
