//! A version's schema compiled for reading requests, built once when the
//! version loads: the feature names grouped by length (a key costs a
//! `memcmp` or two, no hashing), each category feature's table from text
//! to code, and the rule each value is checked against. Every reader (the
//! JSON parsers, OIP tensors, the CSV reader) decodes a value through
//! [`Fields`], so they accept and refuse the same values with the same
//! messages.

use super::field_rules::{check_category, check_number, parse_number, Violation};
use super::input::{LoanApplication, NUMERIC_FEATURES};
use super::row::{Rows, Value};
use super::schema::{Feature, Kind, Schema, SchemaError, MAX_NAME_LEN};

/// Names (ASCII or not) grouped by byte length, each with an index.
#[derive(Debug, Clone, Default)]
pub struct NameTable {
    /// `by_len[n]`: the range of `entries` whose names have `n` bytes.
    by_len: Vec<(u32, u32)>,
    entries: Vec<(Box<[u8]>, u32)>,
}

impl NameTable {
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> NameTable {
        let mut entries: Vec<(Box<[u8]>, u32)> =
            names.into_iter().enumerate().map(|(i, n)| (n.as_bytes().into(), i as u32)).collect();
        entries.sort_by_key(|(n, i)| (n.len(), *i));
        let longest = entries.last().map_or(0, |(n, _)| n.len());
        let mut by_len = vec![(0u32, 0u32); longest + 1];
        for (k, (name, _)) in entries.iter().enumerate() {
            let slot = &mut by_len[name.len()];
            if slot.0 == slot.1 {
                *slot = (k as u32, k as u32);
            }
            slot.1 = k as u32 + 1;
        }
        NameTable { by_len, entries }
    }

    /// The index of `name`.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<usize> {
        let &(start, end) = self.by_len.get(name.len())?;
        self.entries[start as usize..end as usize].iter().find(|(n, _)| **n == *name).map(|&(_, i)| i as usize)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names (shortest first).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|(n, _)| std::str::from_utf8(n).ok())
    }
}

/// A version's inputs, compiled.
#[derive(Debug, Clone)]
pub struct Fields {
    schema: Schema,
    keys: NameTable,
    /// Per feature: its categories' table (empty for a number).
    categories: Vec<NameTable>,
    /// Per feature: the code of the category a missing value is taken as,
    /// when the feature lists it.
    missing_code: Vec<Option<u32>>,
    /// Bit `i` set: feature `i` is required.
    required: u64,
    /// Per feature: its name as a JSON string (quoted, escaped), and its
    /// categories', so a reason is written without escaping per request.
    name_json: Vec<String>,
    category_json: Vec<Vec<String>>,
}

impl Fields {
    /// Validates `schema` and compiles it.
    pub fn new(schema: Schema) -> Result<Fields, SchemaError> {
        schema.validate()?;
        let keys = NameTable::new(schema.names());
        let categories =
            schema.features.iter().map(|f| NameTable::new(f.categories().iter().map(String::as_str))).collect();
        let missing_code = schema
            .features
            .iter()
            .map(|f| match &f.kind {
                Kind::Category { categories, imputed_with: Some(m) } => {
                    categories.iter().position(|c| c == m).map(|i| i as u32)
                }
                _ => None,
            })
            .collect();
        let required = schema.features.iter().enumerate().filter(|(_, f)| f.required).fold(0, |m, (i, _)| m | 1 << i);
        let json = |text: &String| serde_json::to_string(text).unwrap_or_default();
        let name_json = schema.features.iter().map(|f| json(&f.name)).collect();
        let category_json = schema.features.iter().map(|f| f.categories().iter().map(json).collect()).collect();
        Ok(Fields { schema, keys, categories, missing_code, required, name_json, category_json })
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.schema.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schema.features.is_empty()
    }

    pub fn feature(&self, i: usize) -> &Feature {
        &self.schema.features[i]
    }

    pub fn features(&self) -> &[Feature] {
        &self.schema.features
    }

    /// The feature a request key names.
    #[inline]
    pub fn index(&self, key: &[u8]) -> Option<usize> {
        if key.len() > MAX_NAME_LEN {
            return None;
        }
        self.keys.get(key)
    }

    /// The code of category `text` of feature `i`, if the schema knows it.
    #[inline]
    pub fn code(&self, i: usize, text: &str) -> Option<u32> {
        self.categories[i].get(text.as_bytes()).map(|c| c as u32)
    }

    /// Bit `i` set: feature `i` must be sent (a schema has at most 64).
    #[inline]
    pub fn required_mask(&self) -> u64 {
        self.required
    }

    /// The code a missing value of category feature `i` is taken as.
    pub fn missing_code(&self, i: usize) -> Option<u32> {
        self.missing_code[i]
    }

    /// Feature `i`'s name as a JSON string.
    pub fn name_json(&self, i: usize) -> &str {
        &self.name_json[i]
    }

    /// Category `code` of feature `i` as a JSON string (`""` when unknown).
    pub fn category_json(&self, i: usize, code: u32) -> &str {
        self.category_json[i].get(code as usize).map_or("\"\"", String::as_str)
    }

    /// The text of category `code` of feature `i`.
    pub fn category(&self, i: usize, code: u32) -> &str {
        self.feature(i).categories().get(code as usize).map_or("", String::as_str)
    }

    /// A JSON number for feature `i`: checked against a number's range; a
    /// category feature refuses it (the caller names the JSON type).
    #[inline]
    pub fn number(&self, i: usize, v: f64) -> Result<Value, Violation> {
        check_number(self.feature(i), v).map(Value::Number)
    }

    /// Text for feature `i`: a number parsed from it (blank is missing), or
    /// a category trimmed and looked up (unseen ones keep their text in
    /// `rows`).
    pub fn text(&self, i: usize, text: &str, rows: &mut Rows) -> Result<Value, Violation> {
        let feature = self.feature(i);
        if feature.is_number() {
            return Ok(parse_number(feature, text)?.map_or(Value::Missing, Value::Number));
        }
        Ok(match check_category(text)? {
            None => Value::Missing,
            Some(t) => match self.code(i, t) {
                Some(code) => Value::Category(code),
                None => rows.unseen(t),
            },
        })
    }

    /// The first feature this schema requires that `other` does not
    /// declare.
    pub fn missing_from(&self, other: &Fields) -> Option<&str> {
        self.features().iter().find(|f| f.required && other.index(f.name.as_bytes()).is_none()).map(|f| f.name.as_str())
    }

    /// `rows` decoded with `from`, as this schema would have decoded the
    /// same request: each feature by name (a category by its text; one this
    /// schema does not know is unseen), a feature `from` lacks missing.
    /// `rows` themselves when both schemas are the same.
    pub fn translate<'a>(&self, from: &Fields, rows: &'a Rows) -> std::borrow::Cow<'a, Rows> {
        if self.schema == from.schema {
            return std::borrow::Cow::Borrowed(rows);
        }
        let source: Vec<Option<usize>> = self.features().iter().map(|f| from.index(f.name.as_bytes())).collect();
        let mut out = Rows::with_capacity(self.len(), rows.len());
        for row in rows.iter() {
            let mut values = vec![Value::Missing; self.len()];
            for (i, (v, src)) in values.iter_mut().zip(&source).enumerate() {
                let Some(j) = *src else { continue };
                *v = match row.get(j) {
                    Value::Category(c) => {
                        let text = from.category(j, c);
                        self.code(i, text).map_or_else(|| out.unseen(text), Value::Category)
                    }
                    Value::Unseen(k) => {
                        let text = row.unseen_text(k);
                        self.code(i, text).map_or_else(|| out.unseen(text), Value::Category)
                    }
                    Value::Number(x) if self.feature(i).is_number() => Value::Number(x),
                    Value::Number(_) | Value::Missing => Value::Missing,
                };
            }
            out.push_missing().copy_from_slice(&values);
        }
        std::borrow::Cow::Owned(out)
    }

    /// The names, comma-separated (error messages).
    pub fn list(&self) -> String {
        self.schema.names().collect::<Vec<_>>().join(", ")
    }

    /// Appends `app` (the ten loan fields) as a row of this schema: each
    /// field this schema declares, by name; the others are left out.
    /// Values are taken as they are (the generator's are within the rules).
    pub fn push_loan(&self, app: &LoanApplication, rows: &mut Rows) {
        let k = NUMERIC_FEATURES.len();
        let mut values = vec![Value::Missing; self.len()];
        for (field, name) in super::input::FEATURES.iter().enumerate() {
            let Some(i) = self.index(name.as_bytes()) else { continue };
            values[i] = if field < k {
                app.numeric[field].map_or(Value::Missing, Value::Number)
            } else {
                match app.categorical[field - k].as_deref() {
                    None => Value::Missing,
                    Some(t) => self.code(i, t).map_or_else(|| rows.unseen(t), Value::Category),
                }
            };
        }
        rows.push_missing().copy_from_slice(&values);
    }

    /// The inverse of [`Fields::push_loan`]: the loan fields of a row
    /// decoded with this schema (categories as their text).
    pub fn loan_of(&self, row: super::row::Row<'_>) -> LoanApplication {
        let k = NUMERIC_FEATURES.len();
        let mut app = LoanApplication::default();
        for (field, name) in super::input::FEATURES.iter().enumerate() {
            let Some(i) = self.index(name.as_bytes()) else { continue };
            match row.get(i) {
                Value::Number(v) if field < k => app.numeric[field] = Some(v),
                Value::Category(c) if field >= k => app.categorical[field - k] = Some(self.category(i, c).to_string()),
                Value::Unseen(u) if field >= k => app.categorical[field - k] = Some(row.unseen_text(u).to_string()),
                _ => {}
            }
        }
        app
    }

    /// [`Fields::push_loan`] for many applications.
    pub fn loan_rows<'a>(&self, apps: impl IntoIterator<Item = &'a LoanApplication>) -> Rows {
        let mut rows = Rows::new(self.len());
        for app in apps {
            self.push_loan(app, &mut rows);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields::new(Schema {
            features: vec![
                Feature::number("dti", 0.0, 1000.0, Some("percent"), Some(14.0)),
                Feature::category("grade", vec!["A".into(), "B".into(), "missing".into()], Some("missing")),
                Feature::number("x", -1.0, 1.0, None, None),
                Feature::number("ab", 0.0, 1.0, None, None),
            ],
        })
        .unwrap()
    }

    #[test]
    fn keys_and_categories_are_found_by_length_then_bytes() {
        let f = fields();
        assert_eq!(f.index(b"dti"), Some(0));
        assert_eq!(f.index(b"grade"), Some(1));
        assert_eq!(f.index(b"x"), Some(2));
        assert_eq!(f.index(b"ab"), Some(3));
        for miss in [&b"dtx"[..], b"", b"grades", b"gradE", &[b'a'; 300]] {
            assert_eq!(f.index(miss), None, "{miss:?}");
        }
        assert_eq!(f.code(1, "B"), Some(1));
        assert_eq!(f.code(1, "C"), None);
        assert_eq!(f.missing_code(1), Some(2));
        assert_eq!(f.category(1, 1), "B");
    }

    #[test]
    fn values_are_checked_by_their_feature_and_unseen_categories_keep_their_text() {
        let f = fields();
        let mut rows = Rows::new(f.len());
        assert_eq!(f.number(0, 14.5), Ok(Value::Number(14.5)));
        assert!(matches!(f.number(0, -1.0), Err(Violation::Negative(_))));
        assert!(f.number(2, -0.5).is_ok(), "x may be negative");
        assert_eq!(f.text(0, " 12 ", &mut rows), Ok(Value::Number(12.0)));
        assert_eq!(f.text(0, "", &mut rows), Ok(Value::Missing));
        assert_eq!(f.text(1, " B ", &mut rows), Ok(Value::Category(1)));
        assert_eq!(f.text(1, "  ", &mut rows), Ok(Value::Missing));
        assert_eq!(f.text(1, "Z", &mut rows), Ok(Value::Unseen(0)));
        rows.push_missing();
        assert_eq!(rows.row(0).unseen_text(0), "Z");
        assert_eq!(f.list(), "dti, grade, x, ab");
    }
}
