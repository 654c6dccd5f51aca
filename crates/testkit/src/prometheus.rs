//! Reads Prometheus text format (what `/metrics` returns): the series in
//! it, each with its name, labels and value, and the value of one series
//! by name and labels. Comment lines (`# HELP`, `# TYPE`) are skipped.

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series<'a> {
    pub name: &'a str,
    /// What is between the braces (empty without labels), as written.
    labels: &'a str,
    pub value: f64,
}

impl<'a> Series<'a> {
    /// The labels as written: `(key, value)`, values still escaped.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut rest = self.labels;
        std::iter::from_fn(move || {
            let (key, after) = rest.trim_start_matches([',', ' ']).split_once("=\"")?;
            let end = closing_quote(after)?;
            rest = &after[end + 1..];
            Some((key.trim(), &after[..end]))
        })
    }

    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        self.labels().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether every `(key, value)` in `wanted` is among the labels.
    pub fn has_labels(&self, wanted: &[(&str, &str)]) -> bool {
        wanted.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Index of the first `"` in `s` not escaped by a backslash.
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// Parses one non-comment line.
fn parse_line(line: &str) -> Option<Series<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find(['{', ' ']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            // The closing brace is the first `}` outside a quoted value.
            let body = &line[i + 1..];
            let mut at = 0;
            loop {
                let next = body[at..].find(['"', '}'])? + at;
                if body.as_bytes()[next] == b'}' {
                    break (&line[..i], &body[..next], &body[next + 1..]);
                }
                at = next + 1 + closing_quote(&body[next + 1..])? + 1;
            }
        }
        Some(i) => (&line[..i], "", &line[i..]),
        None => return None,
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Series { name, labels, value })
}

/// Every sample in `text`, in order.
pub fn series(text: &str) -> impl Iterator<Item = Series<'_>> {
    text.lines().filter_map(parse_line)
}

/// The value of the first series called `name` that has all of `labels`.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series(text).find(|s| s.name == name && s.has_labels(labels)).map(|s| s.value)
}

/// Lines in the text, comments included (to see that label sets do not grow).
pub fn line_count(text: &str) -> usize {
    text.lines().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP riskserve_model_loads_total Loads by result.
# TYPE riskserve_model_loads_total counter
riskserve_model_loads_total{model="credit-risk",result="success"} 3
riskserve_model_loads_total{model="credit-risk",result="invalid"} 1
riskserve_model_loads_total{model="credit-risk-2",result="invalid"} 7
odd{path="/a b}",note="say \"hi\""} 2.5 1700000000000
process_resident_memory_bytes 12345678
riskserve_inflight_requests 1e0
"#;

    #[test]
    fn values_by_name_and_exact_labels() {
        let loads = "riskserve_model_loads_total";
        assert_eq!(value(TEXT, loads, &[("model", "credit-risk"), ("result", "success")]), Some(3.0));
        assert_eq!(value(TEXT, loads, &[("result", "invalid"), ("model", "credit-risk")]), Some(1.0));
        assert_eq!(value(TEXT, loads, &[("model", "credit-risk-2")]), Some(7.0));
        assert_eq!(value(TEXT, loads, &[("model", "credit")]), None);
        assert_eq!(value(TEXT, "process_resident_memory_bytes", &[]), Some(12345678.0));
        assert_eq!(value(TEXT, "riskserve_inflight_requests", &[]), Some(1.0));
        assert_eq!(value(TEXT, "missing", &[]), None);
        assert_eq!(line_count(TEXT), 8);
    }

    #[test]
    fn quoted_braces_escapes_and_timestamps() {
        let odd = series(TEXT).find(|s| s.name == "odd").unwrap();
        assert_eq!(odd.value, 2.5);
        assert_eq!(odd.labels().collect::<Vec<_>>(), [("path", "/a b}"), ("note", r#"say \"hi\""#)]);
        assert_eq!(odd.label("path"), Some("/a b}"));
        let results: Vec<_> = series(TEXT)
            .filter(|s| s.name == "riskserve_model_loads_total")
            .filter_map(|s| s.label("result"))
            .collect();
        assert_eq!(results, ["success", "invalid", "invalid"]);
    }
}
