//! How riskserve's own models turn a decoded row into the columns their
//! estimator reads: every number feature in schema order (a missing value
//! replaced by the feature's `imputed_with`, the training median), then
//! each category feature one-hot over its categories (a missing value taken
//! as its `imputed_with` category, the reference pipeline's `missing`; a
//! category the model does not know encodes to all zeros, scikit-learn's
//! `handle_unknown="ignore"`). For the ten loan fields this is exactly the
//! layout format-1 and format-2 files were trained on.
//!
//! An imported model (XGBoost, LightGBM, ONNX) reads [`Derived`] columns
//! instead: each a number feature (for ONNX, after the pipeline's `float`
//! arithmetic, [`FloatStep`]) or a category-set test prepared so that the
//! library's split becomes riskserve's `x <= threshold` node
//! ([`super::import::lower`] decides them).
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

/// How an imported model's number column treats its value before its
/// splits compare it (LightGBM's missing types; XGBoost keeps `Nan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MissingRule {
    /// NaN (a missing value) stays NaN.
    Nan,
    /// NaN reads as 0 (LightGBM `missing_type=None`).
    NanAsZero,
    /// NaN, and any value within ±[`ZERO_AS_MISSING`] of 0, read as NaN
    /// (LightGBM `missing_type=Zero`).
    ZeroAsNan,
}

/// LightGBM's `kZeroThreshold` (the `float` literal `1e-35f`, widened).
pub const ZERO_AS_MISSING: f64 = 1e-35f32 as f64;

/// One step of ONNX Runtime's `float` arithmetic on a number feature (an
/// ONNX pipeline's preprocessing), constants as their `f32` bits so
/// columns can be compared and hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloatStep {
    /// `ai.onnx.ml` Imputer: a value equal to `replaced` (any NaN, when
    /// `replaced` is NaN) becomes `with`.
    Impute { replaced: u32, with: u32 },
    /// `ai.onnx.ml` Scaler: `(x - offset) * scale`, each operation in `float`.
    Scale { offset: u32, scale: u32 },
}

impl FloatStep {
    /// The step on one `float` value, as ONNX Runtime computes it.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            FloatStep::Impute { replaced, with } => {
                let r = f32::from_bits(replaced);
                if (r.is_nan() && x.is_nan()) || x == r {
                    f32::from_bits(with)
                } else {
                    x
                }
            }
            FloatStep::Scale { offset, scale } => (x - f32::from_bits(offset)) * f32::from_bits(scale),
        }
    }
}

/// One column of an imported model (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Derived {
    /// A number feature after its [`MissingRule`], negated when `negate`
    /// (so a split that sends NaN left can test `-x`, which sends it right).
    Number { feature: usize, rule: MissingRule, negate: bool },
    /// A number feature as an ONNX pipeline computes it: the request's
    /// value rounded to `float` (NaN when missing), then `steps` in
    /// `float`; the exact `float` result, negated when `negate` (as for
    /// `Number`).
    Float { feature: usize, steps: Box<[FloatStep]>, negate: bool },
    /// Whether a row goes right at a set split: 1.0 for right, 0.0 for
    /// left, decided per row by the feature's category code (or, for a
    /// number feature, the integer part of its value, as LightGBM does).
    Member {
        feature: usize,
        /// Bit `c` set: code `c` goes `inside`'s way.
        set: Box<[u64]>,
        /// 1.0 (right) or 0.0 (left) for codes in `set`; the others go the
        /// other way.
        inside: u64,
        /// Where a missing value goes (1 right, 0 left).
        missing: u64,
        /// Where a category the model does not know goes.
        unseen: u64,
    },
}

impl Derived {
    #[inline]
    fn value(&self, v: Value) -> f64 {
        match self {
            Derived::Number { rule, negate, .. } => {
                let x = match v {
                    Value::Number(x) => x,
                    _ => f64::NAN,
                };
                let x = match rule {
                    MissingRule::Nan => x,
                    MissingRule::NanAsZero if x.is_nan() => 0.0,
                    MissingRule::NanAsZero => x,
                    MissingRule::ZeroAsNan if x.is_nan() || x.abs() <= ZERO_AS_MISSING => f64::NAN,
                    MissingRule::ZeroAsNan => x,
                };
                if *negate {
                    -x
                } else {
                    x
                }
            }
            Derived::Float { steps, negate, .. } => {
                let x = match v {
                    Value::Number(x) => x as f32,
                    _ => f32::NAN,
                };
                let x = f64::from(steps.iter().fold(x, |x, s| s.apply(x)));
                if *negate {
                    -x
                } else {
                    x
                }
            }
            Derived::Member { set, inside, missing, unseen, .. } => {
                let code = match v {
                    Value::Category(c) => i64::from(c),
                    // C's `static_cast<int>`: toward zero.
                    Value::Number(x) if !x.is_nan() => x as i64,
                    Value::Number(_) | Value::Missing => return *missing as f64,
                    Value::Unseen(_) => return *unseen as f64,
                };
                // A code outside the set, past its end or negative goes
                // the other way (both libraries: "not chosen").
                let hit = usize::try_from(code).ok().and_then(|c| set.get(c / 64)).is_some_and(|w| {
                    let c = code as u64;
                    w >> (c % 64) & 1 == 1
                });
                (if hit { *inside } else { 1 - *inside }) as f64
            }
        }
    }

    fn feature(&self) -> usize {
        match self {
            Derived::Number { feature, .. } | Derived::Float { feature, .. } | Derived::Member { feature, .. } => {
                *feature
            }
        }
    }
}

/// The set-split columns of one category feature, side by side: what they
/// hold for each of its codes (then for a missing value, then for a
/// category the model does not know) is worked out once, at load, so
/// encoding them is one copy of a precomputed row (an XGBoost model splits
/// on hundreds of distinct sets).
#[derive(Debug, Clone)]
struct SetBlock {
    feature: usize,
    first: usize,
    width: usize,
    categories: usize,
    /// `(categories + 2) × width` values.
    table: Box<[f64]>,
}

/// The one-hot encoding of a schema, or an imported model's derived
/// columns (see the module doc).
#[derive(Debug, Clone)]
pub struct Encoder {
    numbers: Vec<NumberColumn>,
    one_hot: Vec<OneHot>,
    /// Derived columns computed one by one: (column, what it holds).
    derived: Vec<(usize, Derived)>,
    set_blocks: Vec<SetBlock>,
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
        let width = column_feature.len();
        Encoder { numbers, one_hot, derived: Vec::new(), set_blocks: Vec::new(), width, column_feature }
    }

    /// An imported model's encoding: exactly `columns`, in order. Set
    /// splits of a category feature that sit side by side become one
    /// [`SetBlock`].
    pub fn derived(columns: Vec<Derived>, fields: &Fields) -> Encoder {
        let column_feature = columns.iter().map(|c| c.feature() as u16).collect::<Vec<_>>();
        let width = columns.len();
        let mut derived = Vec::new();
        let mut set_blocks: Vec<SetBlock> = Vec::new();
        let mut members: Vec<(usize, Derived)> = Vec::new();
        let flush = |members: &mut Vec<(usize, Derived)>, blocks: &mut Vec<SetBlock>| {
            let Some((first, d)) = members.first() else { return };
            let (first, feature) = (*first, d.feature());
            let categories = fields.feature(feature).categories().len();
            let values = (0..categories as u32).map(Value::Category).chain([Value::Missing, Value::Unseen(0)]);
            let table = values.flat_map(|v| members.iter().map(move |(_, d)| d.value(v))).collect();
            blocks.push(SetBlock { feature, first, width: members.len(), categories, table });
            members.clear();
        };
        for (column, d) in columns.into_iter().enumerate() {
            let on_category = !fields.feature(d.feature()).is_number();
            match d {
                Derived::Member { feature, .. } if on_category => {
                    let joins = members.last().is_some_and(|(c, m)| c + 1 == column && m.feature() == feature);
                    if !joins {
                        flush(&mut members, &mut set_blocks);
                    }
                    members.push((column, d));
                }
                d => derived.push((column, d)),
            }
        }
        flush(&mut members, &mut set_blocks);
        Encoder { numbers: Vec::new(), one_hot: Vec::new(), derived, set_blocks, width, column_feature }
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
        if !self.derived.is_empty() || !self.set_blocks.is_empty() {
            names.resize(self.width, String::new());
            for (k, d) in &self.derived {
                let name = &fields.feature(d.feature()).name;
                names[*k] = match d {
                    Derived::Number { negate: false, .. } | Derived::Float { negate: false, .. } => name.clone(),
                    Derived::Number { negate: true, .. } | Derived::Float { negate: true, .. } => format!("-{name}"),
                    Derived::Member { .. } => format!("{name} (set split {k})"),
                };
            }
            for b in &self.set_blocks {
                for (k, name) in names.iter_mut().enumerate().skip(b.first).take(b.width) {
                    *name = format!("{} (set split {k})", fields.feature(b.feature).name);
                }
            }
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
        for (column, d) in &self.derived {
            out[*column] = d.value(row.get(d.feature()));
        }
        for b in &self.set_blocks {
            let at = match row.get(b.feature) {
                Value::Category(c) if (c as usize) < b.categories => c as usize,
                Value::Missing => b.categories,
                _ => b.categories + 1,
            };
            out[b.first..b.first + b.width].copy_from_slice(&b.table[at * b.width..(at + 1) * b.width]);
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

    #[test]
    fn float_columns_compute_in_f32_as_onnx_runtime_does() {
        let f = fields();
        let bits = f32::to_bits;
        let steps = vec![
            FloatStep::Impute { replaced: bits(f32::NAN), with: bits(0.1) },
            FloatStep::Scale { offset: bits(0.3), scale: bits(3.0) },
        ];
        let e = Encoder::derived(vec![Derived::Float { feature: 1, steps: steps.into(), negate: true }], &f);
        assert_eq!(e.column_names(&f), ["-amount"]);
        let mut rows = Rows::new(3);
        rows.push_missing()[1] = Value::Number(0.7);
        rows.push_missing();
        let x = e.encode_rows(rows.view());
        // The f32 arithmetic, not the f64 one: (0.7f - 0.3f) * 3f.
        assert_eq!(x[0], -f64::from((0.7f32 - 0.3f32) * 3.0f32));
        assert_ne!(x[0], -((0.7 - f64::from(0.3f32)) * 3.0));
        assert_eq!(x[1], -f64::from((0.1f32 - 0.3f32) * 3.0f32), "missing: the imputed value");
        let replace = FloatStep::Impute { replaced: bits(-1.0), with: bits(5.0) };
        assert_eq!(replace.apply(-1.0), 5.0);
        assert!(replace.apply(f32::NAN).is_nan());
    }
}
