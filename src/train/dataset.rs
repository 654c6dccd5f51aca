//! Reading and writing loan CSVs (`loan_amnt,...,home_ownership,is_late`).
//! Columns are found by header name; blank cells are missing values. Every
//! cell passes the same per-field rules as a prediction request
//! ([`crate::model::field_rules`]), so a model is never trained or evaluated
//! on a row the server would refuse.

use crate::model::field_rules::{check_category, parse_numeric, FieldError};
use crate::model::format::sha256_hex;
use crate::model::input::{LoanApplication, CATEGORICAL_FEATURES, CSV_FEATURE_ORDER, NUMERIC_FEATURES, TARGET};
use std::path::Path;

/// A labelled training set with the fingerprint of the file it came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub rows: Vec<LoanApplication>,
    /// `is_late`, 0 or 1, one per row.
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
    pub fn subset(&self, idx: &[usize]) -> (Vec<LoanApplication>, Vec<u8>) {
        (idx.iter().map(|&i| self.rows[i].clone()).collect(), idx.iter().map(|&i| self.labels[i]).collect())
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

/// Reads a loan CSV. Each cell must pass its field's rule (numbers finite
/// and within bounds, categories not too long; blank is missing);
/// `is_late` must be 0 or 1.
pub fn read_csv(path: &Path) -> Result<Dataset, DatasetError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io { path: shown.clone(), source })?;
    let fail = |message: String| DatasetError::Format { path: shown.clone(), message };
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
    let headers = reader.headers().map_err(|e| fail(e.to_string()))?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| fail(format!("missing column `{name}`")))
    };
    let num_cols: Vec<usize> = NUMERIC_FEATURES.iter().map(|n| column(n)).collect::<Result<_, _>>()?;
    let cat_cols: Vec<usize> = CATEGORICAL_FEATURES.iter().map(|n| column(n)).collect::<Result<_, _>>()?;
    let target = column(TARGET)?;

    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| fail(format!("line {line}: {e}")))?;
        let cell = |c: usize| record.get(c).map(str::trim).unwrap_or("");
        let field = |source| DatasetError::Field { path: shown.clone(), line, source };
        let mut app = LoanApplication::default();
        for (k, &c) in num_cols.iter().enumerate() {
            app.numeric[k] = parse_numeric(k, cell(c)).map_err(field)?;
        }
        for (k, &c) in cat_cols.iter().enumerate() {
            app.categorical[k] = check_category(k, cell(c)).map_err(field)?.map(str::to_string);
        }
        let y = match cell(target) {
            "0" | "0.0" => 0,
            "1" | "1.0" => 1,
            other => return Err(fail(format!("line {line}: `{TARGET}` must be 0 or 1, found {other:?}"))),
        };
        rows.push(app);
        labels.push(y);
    }
    if rows.is_empty() {
        return Err(fail("no data rows".into()));
    }
    let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Dataset { rows, labels, source, sha256: sha256_hex(&bytes) })
}

/// Writes rows in the reference column order, blanks for missing values.
pub fn write_csv(path: &Path, rows: &[(LoanApplication, u8)]) -> Result<(), DatasetError> {
    let shown = path.display().to_string();
    let io = |e: csv::Error| DatasetError::Format { path: shown.clone(), message: e.to_string() };
    let mut writer = csv::Writer::from_path(path).map_err(io)?;
    let mut header: Vec<&str> = CSV_FEATURE_ORDER.to_vec();
    header.push(TARGET);
    writer.write_record(&header).map_err(io)?;
    for (app, y) in rows {
        let mut record: Vec<String> = CSV_FEATURE_ORDER.iter().map(|f| app.cell(f).unwrap_or_default()).collect();
        record.push(y.to_string());
        writer.write_record(&record).map_err(io)?;
    }
    writer.flush().map_err(|source| DatasetError::Io { path: shown.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::input::{cat, num};

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
        let ds = read_csv(&path).unwrap();
        assert_eq!(ds.labels, vec![0, 1]);
        assert_eq!(ds.rows[0].numeric[num::REVOL_UTIL], None);
        assert_eq!(ds.rows[0].categorical[cat::EMP_LENGTH].as_deref(), Some("9 years"));
        assert_eq!(ds.rows[1].categorical[cat::EMP_LENGTH], None);
        assert_eq!(ds.sha256, sha256_hex(&std::fs::read(&path).unwrap()));

        std::fs::write(&path, "loan_amnt,is_late\n1,0\n").unwrap();
        assert!(read_csv(&path).unwrap_err().to_string().contains("missing column `int_rate`"));
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
            let err = read_csv(&path).unwrap_err();
            assert!(matches!(err, DatasetError::Field { line: 3, .. }), "{err}");
            assert!(err.to_string().contains(needle), "expected {needle:?} in {err}");
        }
        // The bounds are inclusive: zero and each maximum read fine.
        let edge = "10000000,1,car,C,1000000000,10,,1000,100,RENT,0\n0,0,car,C,0,0,,0,0,RENT,1\n";
        std::fs::write(&path, format!("{header}{edge}")).unwrap();
        assert_eq!(read_csv(&path).unwrap().rows.len(), 2);
    }

    #[test]
    fn synthetic_data_passes_the_field_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synth.csv");
        let rows = crate::train::synth::generate(20_000, 11);
        write_csv(&path, &rows).unwrap();
        assert_eq!(read_csv(&path).unwrap().rows.len(), rows.len());
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let app = LoanApplication {
            numeric: [Some(1000.0), Some(0.0846), None, Some(0.2), Some(3.5), Some(0.0)],
            categorical: [Some("car".into()), Some("B".into()), None, Some("RENT".into())],
        };
        write_csv(&path, &[(app.clone(), 1)]).unwrap();
        let ds = read_csv(&path).unwrap();
        assert_eq!(ds.rows, vec![app]);
        assert_eq!(ds.labels, vec![1]);
    }
}
