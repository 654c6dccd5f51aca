//! Reading training CSVs of any columns, and writing loan CSVs.
//!
//! `read_csv` takes the target column (`is_late` by default, 0 or 1) and
//! makes every other column a feature (or those `--features` names). A
//! column whose every non-blank cell is a number is a number feature, any
//! other a category (`--categorical` forces it); blank cells are missing.
//! The ten loan fields keep their documented ranges and units
//! ([`crate::model::input::NUMERIC_RULES`]); any other number gets the
//! range `[0, 10 × m]` when its training values are all non-negative and
//! `[−10 × m, 10 × m]` otherwise, where `m` is the largest magnitude seen
//! (at least 1), unless `--range name=min:max` sets it. Every cell then
//! passes the same rules as a request ([`crate::model::fields::Fields`]),
//! so a model is never trained on a row the server would refuse.

use crate::model::field_rules::FieldError;
use crate::model::fields::Fields;
use crate::model::format::sha256_hex;
use crate::model::input::{loan_schema_rules, LoanApplication, CSV_FEATURE_ORDER, TARGET};
use crate::model::row::Rows;
use crate::model::schema::{Feature, Kind, Schema};
use std::path::Path;

/// Which columns are what.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// The 0/1 target column.
    pub target: String,
    /// The feature columns, in this order (default: every other column, in
    /// file order).
    pub features: Option<Vec<String>>,
    /// Columns read as categories even when they hold numbers.
    pub categorical: Vec<String>,
    /// Features a request may leave out (imputed, and counted).
    pub optional: Vec<String>,
    /// Number ranges that override the rule (`name`, `min`, `max`).
    pub ranges: Vec<(String, f64, f64)>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { target: TARGET.into(), features: None, categorical: vec![], optional: vec![], ranges: vec![] }
    }
}

/// A labelled training set with the fingerprint of the file it came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The features and their rules; categories are every one the file
    /// has (sorted), imputations are not fitted yet (see `fit`).
    pub schema: Schema,
    pub rows: Rows,
    /// The target, 0 or 1, one per row.
    pub labels: Vec<u8>,
    /// File name of the source CSV.
    pub source: String,
    /// SHA-256 of the source file's bytes.
    pub sha256: String,
}

impl Dataset {
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&y| y == 1).count()
    }

    /// Rows and labels at the given indices (a fold).
    pub fn subset(&self, idx: &[usize]) -> (Rows, Vec<u8>) {
        let mut rows = Rows::with_capacity(self.rows.features(), idx.len());
        for &i in idx {
            rows.push_missing().copy_from_slice(self.rows.row(i).values());
        }
        (rows, idx.iter().map(|&i| self.labels[i]).collect())
    }

    /// The ten loan fields as a data set (synthetic rows, tests), with the
    /// schema `read_csv` gives a loan CSV.
    pub fn of_loans(rows: &[(LoanApplication, u8)], source: &str) -> Dataset {
        let columns: Vec<Column> = CSV_FEATURE_ORDER
            .iter()
            .map(|name| {
                let cells: Vec<String> = rows.iter().map(|(a, _)| a.cell(name).unwrap_or_default()).collect();
                Column { name: name.to_string(), cells }
            })
            .collect();
        let schema = infer_schema(&columns, &CsvOptions::default()).expect("the loan fields infer");
        let fields = Fields::new(schema.clone()).expect("the loan schema is valid");
        let table = fields.loan_rows(rows.iter().map(|(a, _)| a));
        Dataset {
            schema,
            rows: table,
            labels: rows.iter().map(|(_, y)| *y).collect(),
            source: source.into(),
            sha256: String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// A cell that breaks its field's rule, e.g.
    /// `line 17: loan_amnt: must not be negative, got -5`.
    #[error("{path}: line {line}: {source}")]
    Field { path: String, line: usize, source: FieldError },
}

/// One feature column's cells, as text.
struct Column {
    name: String,
    cells: Vec<String>,
}

/// The schema of `columns` (see the module doc).
fn infer_schema(columns: &[Column], opts: &CsvOptions) -> Result<Schema, String> {
    let loan_rules = loan_schema_rules();
    let mut features = Vec::with_capacity(columns.len());
    for c in columns {
        let present = || c.cells.iter().map(|v| v.trim()).filter(|v| !v.is_empty());
        let numbers: Option<Vec<f64>> = present().map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite())).collect();
        let forced = opts.categorical.contains(&c.name);
        let loan_rule = loan_rules.iter().any(|r| r.name == c.name);
        // A loan field is a number whatever its cells (a bad one is named
        // below, with its line); another column is one if every cell is.
        let numbers = if loan_rule && !forced { Some(numbers.unwrap_or_default()) } else { numbers };
        let mut feature = match (numbers, forced) {
            (Some(values), false) if !values.is_empty() || loan_rule => {
                let range = opts.ranges.iter().find(|(n, ..)| *n == c.name).map(|&(_, lo, hi)| (lo, hi));
                match loan_rules.iter().find(|r| r.name == c.name) {
                    Some(rule) => {
                        let mut f = rule.clone();
                        if let (Some((lo, hi)), Kind::Number { min, max, .. }) = (range, &mut f.kind) {
                            (*min, *max) = (lo, hi);
                        }
                        f
                    }
                    None => {
                        let m = values.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                        let lo = if values.iter().all(|v| *v >= 0.0) { 0.0 } else { -10.0 * m };
                        let (lo, hi) = range.unwrap_or((lo, 10.0 * m));
                        Feature::number(&c.name, lo, hi, None, None)
                    }
                }
            }
            _ => {
                // An overlong one is no category: its cell is refused below, naming its line.
                let fits = |v: &&str| v.chars().count() <= crate::model::field_rules::MAX_CATEGORY_LEN;
                let mut categories: Vec<String> = present().filter(fits).map(str::to_string).collect();
                categories.sort_unstable();
                categories.dedup();
                Feature::category(&c.name, categories, None)
            }
        };
        feature.required = !opts.optional.contains(&c.name);
        features.push(feature);
    }
    for name in opts.categorical.iter().chain(&opts.optional).chain(opts.ranges.iter().map(|(n, ..)| n)) {
        if !columns.iter().any(|c| c.name == *name) {
            return Err(format!("`{name}` is not a feature column"));
        }
    }
    Ok(Schema { features })
}

/// A reader of CSV `bytes` past the header row, and the header's names
/// (trimmed).
fn headed(
    bytes: &[u8],
    fail: impl Fn(String) -> DatasetError,
) -> Result<(csv::Reader<&[u8]>, Vec<String>), DatasetError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader.headers().map_err(|e| fail(e.to_string()))?.iter().map(|h| h.trim().to_string()).collect();
    Ok((reader, headers))
}

/// Reads a training CSV (see the module doc). Each cell must pass its
/// feature's rule (numbers finite and within range, categories not too
/// long; blank is missing); the target must be 0 or 1.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset, DatasetError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io { path: shown.clone(), source })?;
    let fail = |message: String| DatasetError::Format { path: shown.clone(), message };
    let (mut reader, headers) = headed(&bytes, fail)?;
    let column =
        |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| fail(format!("missing column `{name}`")));
    let target = column(&opts.target)?;
    let names: Vec<String> = match &opts.features {
        Some(list) => list.clone(),
        None => headers.iter().filter(|h| **h != opts.target && !h.is_empty()).cloned().collect(),
    };
    if names.is_empty() {
        return Err(fail("no feature columns".into()));
    }
    let positions: Vec<usize> = names.iter().map(|n| column(n)).collect::<Result<_, _>>()?;
    let mut columns: Vec<Column> = names.iter().map(|n| Column { name: n.clone(), cells: Vec::new() }).collect();
    let mut labels = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| fail(format!("line {line}: {e}")))?;
        let cell = |c: usize| record.get(c).map(str::trim).unwrap_or("");
        let y = match cell(target) {
            "0" | "0.0" => 0,
            "1" | "1.0" => 1,
            other => return Err(fail(format!("line {line}: `{}` must be 0 or 1, found {other:?}", opts.target))),
        };
        labels.push(y);
        for (column, &c) in columns.iter_mut().zip(&positions) {
            column.cells.push(cell(c).to_string());
        }
    }
    if labels.is_empty() {
        return Err(fail("no data rows".into()));
    }
    let schema = infer_schema(&columns, opts).map_err(fail)?;
    let fields = Fields::new(schema.clone()).map_err(|e| fail(format!("schema: {e}")))?;
    let mut rows = Rows::with_capacity(fields.len(), labels.len());
    for r in 0..labels.len() {
        let mut values = Vec::with_capacity(fields.len());
        for (k, column) in columns.iter().enumerate() {
            let v = fields.text(k, &column.cells[r], &mut rows).map_err(|violation| DatasetError::Field {
                path: shown.clone(),
                line: r + 2,
                source: FieldError { field: column.name.clone(), violation },
            })?;
            values.push(v);
        }
        rows.push_missing().copy_from_slice(&values);
    }
    let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Dataset { schema, rows, labels, source, sha256: sha256_hex(&bytes) })
}

/// Reads a CSV of applications with a version's inputs (`riskserve drift`,
/// a reference for an imported model): each feature's column by name
/// (an optional feature's may be absent: missing), decoded as a request's
/// values are; other columns (the target, ids) are ignored. Returns the
/// rows and the file's name.
pub fn read_rows(path: &Path, fields: &Fields) -> Result<(Rows, String), DatasetError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io { path: shown.clone(), source })?;
    let fail = |message: String| DatasetError::Format { path: shown.clone(), message };
    let (mut reader, headers) = headed(&bytes, fail)?;
    let mut positions = Vec::with_capacity(fields.len());
    for f in fields.features() {
        let at = headers.iter().position(|h| *h == f.name);
        if at.is_none() && f.required {
            return Err(fail(format!("missing column `{}`", f.name)));
        }
        positions.push(at);
    }
    let mut rows = Rows::new(fields.len());
    let mut values = Vec::with_capacity(fields.len());
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| fail(format!("line {line}: {e}")))?;
        values.clear();
        for (k, at) in positions.iter().enumerate() {
            let cell = at.and_then(|c| record.get(c)).unwrap_or("");
            let v = fields.text(k, cell, &mut rows).map_err(|violation| DatasetError::Field {
                path: shown.clone(),
                line,
                source: FieldError { field: fields.feature(k).name.clone(), violation },
            })?;
            values.push(v);
        }
        rows.push_missing().copy_from_slice(&values);
    }
    if rows.is_empty() {
        return Err(fail("no data rows".into()));
    }
    let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((rows, source))
}

/// Writes loan rows in the reference column order, blanks for missing
/// values, with `extra` columns (name, one cell per row) before the target.
pub fn write_csv(
    path: &Path,
    rows: &[(LoanApplication, u8)],
    extra: &[(&str, Vec<String>)],
) -> Result<(), DatasetError> {
    let shown = path.display().to_string();
    let io = |e: csv::Error| DatasetError::Format { path: shown.clone(), message: e.to_string() };
    let mut writer = csv::Writer::from_path(path).map_err(io)?;
    let mut header: Vec<&str> = CSV_FEATURE_ORDER.to_vec();
    header.extend(extra.iter().map(|(n, _)| *n));
    header.push(TARGET);
    writer.write_record(&header).map_err(io)?;
    for (r, (app, y)) in rows.iter().enumerate() {
        let mut record: Vec<String> = CSV_FEATURE_ORDER.iter().map(|f| app.cell(f).unwrap_or_default()).collect();
        record.extend(extra.iter().map(|(_, cells)| cells[r].clone()));
        record.push(y.to_string());
        writer.write_record(&record).map_err(io)?;
    }
    writer.flush().map_err(|source| DatasetError::Io { path: shown.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::{cat, num};

    fn read(path: &Path) -> Result<Dataset, DatasetError> {
        read_csv(path, &CsvOptions::default())
    }

    fn loans(data: &Dataset) -> Vec<LoanApplication> {
        let fields = Fields::new(data.schema.clone()).unwrap();
        data.rows.iter().map(|r| fields.loan_of(r)).collect()
    }

    #[test]
    fn reads_blanks_as_missing_and_checks_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loans.csv");
        std::fs::write(
            &path,
            "loan_amnt,int_rate,purpose,grade,annual_inc,revol_util,emp_length,dti,delinq_2yrs,home_ownership,is_late\n\
             5000,0.1356,debt_consolidation,C,52000.0,,9 years,14.39,1,MORTGAGE,0\n\
             25000,0.0611,credit_card,A,75000.0,0.3,,32.94,0,RENT,1\n",
        )
        .unwrap();
        let ds = read(&path).unwrap();
        assert_eq!(ds.labels, vec![0, 1]);
        let apps = loans(&ds);
        assert_eq!(apps[0].numeric[num::REVOL_UTIL], None);
        assert_eq!(apps[0].categorical[cat::EMP_LENGTH].as_deref(), Some("9 years"));
        assert_eq!(apps[1].categorical[cat::EMP_LENGTH], None);
        assert_eq!(ds.sha256, sha256_hex(&std::fs::read(&path).unwrap()));
        // The features are the columns in file order, with the loan rules.
        let names: Vec<&str> = ds.schema.names().collect();
        assert_eq!(names, CSV_FEATURE_ORDER.to_vec());
        assert!(matches!(ds.schema.features[1].kind, Kind::Number { min: 0.0, max: 1.0, .. }));
        assert_eq!(ds.schema.features[2].categories(), ["credit_card", "debt_consolidation"]);

        std::fs::write(&path, "loan_amnt,grade\n1,0\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("missing column `is_late`"));
    }

    #[test]
    fn any_csv_trains_with_kinds_ranges_and_flags_from_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("any.csv");
        std::fs::write(&path, "term,region,score,zip,bad\n36,north,-2.5,1234,0\n60,,4,,1\n,south,1,5678,0\n").unwrap();
        let opts = CsvOptions {
            target: "bad".into(),
            categorical: vec!["zip".into()],
            optional: vec!["term".into()],
            ranges: vec![("score".into(), -10.0, 10.0)],
            ..CsvOptions::default()
        };
        let ds = read_csv(&path, &opts).unwrap();
        assert_eq!(ds.labels, vec![0, 1, 0]);
        let f = &ds.schema.features;
        assert_eq!(f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["term", "region", "score", "zip"]);
        // A number: [0, 10 × the largest magnitude]; optional as asked.
        assert!(matches!(f[0].kind, Kind::Number { min: 0.0, max: 600.0, .. }), "{:?}", f[0]);
        assert!(!f[0].required && f[1].required);
        assert_eq!(f[1].categories(), ["north", "south"]);
        assert!(matches!(f[2].kind, Kind::Number { min: -10.0, max: 10.0, .. }));
        assert_eq!(f[3].categories(), ["1234", "5678"], "forced to a category");
        assert_eq!(ds.rows.row(1).get(0), crate::model::row::Value::Number(60.0));
        assert_eq!(ds.rows.row(2).get(0), crate::model::row::Value::Missing);
        // Negative values widen the rule both ways.
        let opts = CsvOptions { target: "bad".into(), ..CsvOptions::default() };
        let ds = read_csv(&path, &opts).unwrap();
        assert!(matches!(ds.schema.features[2].kind, Kind::Number { min: -40.0, max: 40.0, .. }));
        let only = CsvOptions { target: "bad".into(), features: Some(vec!["region".into()]), ..CsvOptions::default() };
        assert_eq!(read_csv(&path, &only).unwrap().schema.features.len(), 1);
        let typo = CsvOptions { target: "bad".into(), optional: vec!["trem".into()], ..CsvOptions::default() };
        assert!(read_csv(&path, &typo).unwrap_err().to_string().contains("`trem` is not a feature column"));
    }

    #[test]
    fn a_cell_breaking_its_field_rule_fails_naming_the_line_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        let header = "loan_amnt,int_rate,purpose,grade,annual_inc,revol_util,emp_length,dti,delinq_2yrs,home_ownership,is_late\n";
        let good = "5000,0.1356,debt_consolidation,C,52000.0,0.226,9 years,14.39,1,MORTGAGE,0\n";
        let long = "p".repeat(101);
        for (bad, needle) in [
            ("-5,0.1356,car,C,52000,0.2,,14.39,1,RENT,0", "line 3: loan_amnt: must not be negative, got -5"),
            ("5000,13.56,car,C,52000,0.2,,14.39,1,RENT,0", "line 3: int_rate: is a fraction"),
            ("1e300,0.1,car,C,52000,0.2,,14.39,1,RENT,0", "line 3: loan_amnt: must be at most 10000000, got 1e300"),
            (
                "5000,0.1,car,C,52000,0.2,,1000.5,1,RENT,0",
                "line 3: dti: is a percentage (14.39 for 14.39 %), at most 1000",
            ),
            ("5000,0.1,car,C,52000,0.2,,14.39,NaN,RENT,0", "line 3: delinq_2yrs: must be a finite number"),
            ("5000,0.1,car,C,52000,0.2,,abc,1,RENT,0", "line 3: dti: must be a number, got the string \"abc\""),
            (&format!("5000,0.1,{long},C,52000,0.2,,14.39,1,RENT,0"), "line 3: purpose: is longer than 100 characters"),
        ] {
            std::fs::write(&path, format!("{header}{good}{bad}\n")).unwrap();
            let err = read(&path).unwrap_err();
            assert!(matches!(err, DatasetError::Field { line: 3, .. }), "{err}");
            assert!(err.to_string().contains(needle), "expected {needle:?} in {err}");
        }
        // The bounds are inclusive: zero and each maximum read fine.
        let edge = "10000000,1,car,C,1000000000,10,,1000,100,RENT,0\n0,0,car,C,0,0,,0,0,RENT,1\n";
        std::fs::write(&path, format!("{header}{edge}")).unwrap();
        assert_eq!(read(&path).unwrap().rows.len(), 2);
    }

    #[test]
    fn synthetic_data_passes_the_field_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synth.csv");
        let rows = crate::train::synth::generate(20_000, 11);
        let extra = crate::train::synth::extra_features(&rows, 11);
        write_csv(&path, &rows, &extra).unwrap();
        let ds = read(&path).unwrap();
        assert_eq!(ds.rows.len(), rows.len());
        assert_eq!(ds.schema.features.len(), 12);
        assert!(ds.schema.features[10].is_number() && !ds.schema.features[11].is_number());
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let app = LoanApplication {
            numeric: [Some(1000.0), Some(0.0846), None, Some(0.2), Some(3.5), Some(0.0)],
            categorical: [Some("car".into()), Some("B".into()), None, Some("RENT".into())],
        };
        write_csv(&path, &[(app.clone(), 1)], &[]).unwrap();
        let ds = read(&path).unwrap();
        assert_eq!(loans(&ds), vec![app]);
        assert_eq!(ds.labels, vec![1]);
    }

    #[test]
    fn rows_are_read_with_a_versions_inputs_by_column_name() {
        use crate::model::row::Value;
        use crate::model::schema::Feature;
        let mut term = Feature::number("term", 0.0, 600.0, None, Some(36.0));
        term.required = false;
        let schema = Schema {
            features: vec![
                Feature::category("grade", vec!["A".into(), "B".into()], None),
                Feature::number("dti", 0.0, 100.0, None, Some(1.0)),
                term,
            ],
        };
        let fields = Fields::new(schema).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("recent.csv");
        std::fs::write(&path, "id,dti,grade,is_late\n1,14.5,B,0\n2,,Z,1\n").unwrap();
        let (rows, source) = read_rows(&path, &fields).unwrap();
        assert_eq!(source, "recent.csv");
        assert_eq!(rows.row(0).values(), [Value::Category(1), Value::Number(14.5), Value::Missing]);
        assert_eq!(rows.row(1).values(), [Value::Unseen(0), Value::Missing, Value::Missing]);
        assert_eq!(rows.row(1).unseen_text(0), "Z");

        std::fs::write(&path, "dti,grade\n-3,A\n").unwrap();
        let err = read_rows(&path, &fields).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("dti"), "{err}");
        std::fs::write(&path, "dti\n3\n").unwrap();
        assert!(read_rows(&path, &fields).unwrap_err().to_string().contains("missing column `grade`"));
        std::fs::write(&path, "dti,grade\n").unwrap();
        assert!(read_rows(&path, &fields).unwrap_err().to_string().contains("no data rows"));
    }
}
