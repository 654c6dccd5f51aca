//! A node's attributes and the graph's constant tensors, read by name with
//! the types the ONNX operators define: lists of integers, floats and
//! strings, `*_as_tensor` attributes (opset 3 trees) as `f64`, and int64 /
//! float initializers. Anything of another type is refused, naming it.

use super::proto::{AttributeProto, NodeProto, TensorProto};

/// ONNX's tensor element types riskserve reads.
pub const FLOAT: i32 = 1;
pub const INT64: i32 = 7;
pub const STRING: i32 = 8;
pub const BOOL: i32 = 9;
pub const DOUBLE: i32 = 11;

/// A node's attributes.
pub struct Attrs<'a> {
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    /// Refuses an attribute that refers to a function's (riskserve reads
    /// no functions) or holds a graph.
    pub fn of(node: &'a NodeProto) -> Result<Attrs<'a>, String> {
        for a in &node.attribute {
            if !a.ref_attr_name().is_empty() {
                return Err(format!("attribute {} refers to a function's attribute", a.name()));
            }
            if a.g.is_some() || !a.graphs.is_empty() {
                return Err(format!("attribute {} holds a graph", a.name()));
            }
        }
        Ok(Attrs { node })
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn ints(&self, name: &str) -> &'a [i64] {
        self.get(name).map_or(&[], |a| &a.ints)
    }

    pub fn floats(&self, name: &str) -> &'a [f32] {
        self.get(name).map_or(&[], |a| &a.floats)
    }

    pub fn strings(&self, name: &str) -> &'a [Vec<u8>] {
        self.get(name).map_or(&[], |a| &a.strings)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(|a| a.i)
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.get(name).and_then(|a| a.f)
    }

    pub fn string(&self, name: &str) -> Option<&'a [u8]> {
        self.get(name).and_then(|a| a.s.as_deref())
    }

    /// `name` (a float list) or `name_as_tensor` (a float or double
    /// tensor), as `f64` values, exact either way.
    pub fn reals(&self, name: &str) -> Result<Vec<f64>, String> {
        let tensor = format!("{name}_as_tensor");
        match self.get(&tensor).and_then(|a| a.t.as_ref()) {
            Some(_) if self.has(name) => Err(format!("has both {name} and {tensor}")),
            Some(t) => reals(t).map_err(|e| format!("{tensor}: {e}")),
            None => Ok(self.floats(name).iter().map(|&v| f64::from(v)).collect()),
        }
    }
}

/// A float or double tensor's values as `f64`.
pub fn reals(t: &TensorProto) -> Result<Vec<f64>, String> {
    external(t)?;
    match t.data_type() {
        FLOAT => match t.raw_data.as_deref() {
            Some(raw) => fixed(raw, |b: [u8; 4]| f64::from(f32::from_le_bytes(b))),
            None => Ok(t.float_data.iter().map(|&v| f64::from(v)).collect()),
        },
        DOUBLE => match t.raw_data.as_deref() {
            Some(raw) => fixed(raw, f64::from_le_bytes),
            None => Ok(t.double_data.clone()),
        },
        other => Err(format!("holds elements of type {other}, not float or double")),
    }
}

/// An int64 tensor's values.
pub fn int64s(t: &TensorProto) -> Result<Vec<i64>, String> {
    external(t)?;
    if t.data_type() != INT64 {
        return Err(format!("holds elements of type {}, not int64", t.data_type()));
    }
    match t.raw_data.as_deref() {
        Some(raw) => fixed(raw, i64::from_le_bytes),
        None => Ok(t.int64_data.clone()),
    }
}

fn external(t: &TensorProto) -> Result<(), String> {
    if !t.external_data.is_empty() || t.data_location() == super::proto::tensor_proto::DataLocation::External {
        return Err("keeps its data in another file".into());
    }
    Ok(())
}

fn fixed<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Result<Vec<T>, String> {
    if !raw.len().is_multiple_of(N) {
        return Err(format!("has {} bytes of data, not a multiple of {N}", raw.len()));
    }
    Ok(raw.chunks_exact(N).map(|c| f(c.try_into().expect("N bytes"))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_read_from_raw_bytes_or_typed_lists() {
        let t = TensorProto {
            data_type: Some(INT64),
            raw_data: Some([7i64, -1].map(i64::to_le_bytes).concat()),
            ..Default::default()
        };
        assert_eq!(int64s(&t).unwrap(), [7, -1]);
        let t = TensorProto { data_type: Some(FLOAT), float_data: vec![0.1], ..Default::default() };
        assert_eq!(reals(&t).unwrap(), [f64::from(0.1f32)]);
        let t = TensorProto { data_type: Some(DOUBLE), raw_data: Some(vec![0; 12]), ..Default::default() };
        assert!(reals(&t).unwrap_err().contains("multiple of 8"));
        let t = TensorProto { data_type: Some(STRING), ..Default::default() };
        assert!(int64s(&t).unwrap_err().contains("type 8"));
    }
}
