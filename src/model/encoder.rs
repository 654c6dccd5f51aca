//! How riskserve's own models turn a decoded row into the columns their
//! estimator reads: every number feature in schema order (a missing value
//! replaced by the feature's `imputed_with`, the training median), then
//! each category feature one-hot over its categories (a missing value taken
//! as its `imputed_with` category, the reference pipeline's `missing`; a
//! category the model does not know encodes to all zeros, scikit-learn's
//! `handle_unknown="ignore"`). For the ten loan fields this is exactly the
//! layout format-1 and format-2 files were trained on.
//!
//! Built once per version; encoding writes into a caller's slice and never
//! allocates.

use super::fields::Fields;
use super::row::{Row, RowsView, Value};
use super::schema::Kind;

/// Upper bound on the encoded width a model may declare.
pub const MAX_ENCODED_WIDTH: usize = 512;

/// A number feature's column.
#[derive(Debug, Clone, Copy)]
struct NumberColumn {
    feature: usize,
    /// The value of a missing one (NaN when the schema imputes nothing).
    missing: f64,
}

/// A category feature's one-hot block.
#[derive(Debug, Clone, Copy)]
struct OneHot {
    feature: usize,
    first: usize,
    len: usize,
    /// The code a missing value is taken as, if the feature lists it.
    missing: Option<u32>,
}

/// The one-hot encoding of a schema (see the module doc).
#[derive(Debug, Clone)]
pub struct Encoder {
    numbers: Vec<NumberColumn>,
    one_hot: Vec<OneHot>,
    width: usize,
    /// The feature (position in the schema) of each column.
    column_feature: Vec<u16>,
}

impl Encoder {
    pub fn new(fields: &Fields) -> Encoder {
        let mut numbers = Vec::new();
        let mut one_hot = Vec::new();
        let mut column_feature = Vec::new();
        for (i, f) in fields.features().iter().enumerate() {
            if let Kind::Number { imputed_with, .. } = f.kind {
                numbers.push(NumberColumn { feature: i, missing: imputed_with.unwrap_or(f64::NAN) });
                column_feature.push(i as u16);
            }
        }
        for (i, f) in fields.features().iter().enumerate() {
            if let Kind::Category { categories, .. } = &f.kind {
                let first = column_feature.len();
                one_hot.push(OneHot { feature: i, first, len: categories.len(), missing: fields.missing_code(i) });
                column_feature.extend(std::iter::repeat_n(i as u16, categories.len()));
            }
        }
        Encoder { numbers, one_hot, width: column_feature.len(), column_feature }
    }

    /// Number of encoded columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The feature (position in the schema) of each encoded column.
    pub fn column_features(&self) -> &[u16] {
        &self.column_feature
    }

    /// Human-readable names of the encoded columns (`dti`, `grade=C`, ...).
    pub fn column_names(&self, fields: &Fields) -> Vec<String> {
        let mut names: Vec<String> = self.numbers.iter().map(|n| fields.feature(n.feature).name.clone()).collect();
        for block in &self.one_hot {
            let f = fields.feature(block.feature);
            names.extend(f.categories().iter().map(|c| format!("{}={c}", f.name)));
        }
        names
    }

    /// Encodes one row into `out[..width]`. Never fails: missing values
    /// are imputed, unseen categories encode to zeros. Allocation-free.
    #[inline]
    pub fn encode_into(&self, row: Row<'_>, out: &mut [f64]) {
        let out = &mut out[..self.width];
        for (column, n) in out.iter_mut().zip(&self.numbers) {
            *column = match row.get(n.feature) {
                Value::Number(v) => v,
                _ => n.missing,
            };
        }
        for block in &self.one_hot {
            let cells = &mut out[block.first..block.first + block.len];
            cells.fill(0.0);
            let code = match row.get(block.feature) {
                Value::Category(c) => Some(c),
                Value::Missing => block.missing,
                Value::Number(_) | Value::Unseen(_) => None,
            };
            if let Some(cell) = code.and_then(|c| cells.get_mut(c as usize)) {
                *cell = 1.0;
            }
        }
    }

    /// Encodes many rows into one row-major matrix (training).
    pub fn encode_rows(&self, rows: RowsView<'_>) -> Vec<f64> {
        let mut out = vec![0.0; rows.len() * self.width];
        for (row, chunk) in rows.iter().zip(out.chunks_exact_mut(self.width.max(1))) {
            self.encode_into(row, chunk);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::row::Rows;
    use crate::model::schema::{Feature, Schema};

    fn fields() -> Fields {
        Fields::new(Schema {
            features: vec![
                Feature::category("grade", vec!["A".into(), "B".into(), "missing".into()], Some("missing")),
                Feature::number("amount", 0.0, 1e6, None, Some(200.0)),
                Feature::category("home", vec!["OWN".into(), "RENT".into()], Some("missing")),
            ],
        })
        .unwrap()
    }

    #[test]
    fn numbers_come_first_then_one_hot_blocks_in_schema_order() {
        let f = fields();
        let e = Encoder::new(&f);
        assert_eq!(e.width(), 6);
        assert_eq!(e.column_names(&f), ["amount", "grade=A", "grade=B", "grade=missing", "home=OWN", "home=RENT"]);
        assert_eq!(e.column_features(), [1, 0, 0, 0, 2, 2]);
        let mut rows = Rows::new(3);
        rows.push_missing().copy_from_slice(&[Value::Category(1), Value::Number(5.0), Value::Category(0)]);
        let unseen = rows.unseen("HOUSEBOAT");
        rows.push_missing()[2] = unseen;
        let x = e.encode_rows(rows.view());
        assert_eq!(x[..6], [5.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
        // Missing amount: the median; missing grade: its `missing` column;
        // an unseen home and one without a `missing` category: zeros.
        assert_eq!(x[6..], [200.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }
}
