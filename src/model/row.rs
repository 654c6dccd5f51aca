//! Decoded applications: one [`Value`] per feature of the schema that
//! decoded them, in its order, many rows in one flat table ([`Rows`]), so
//! a request's batch is one allocation whatever its size. A category is
//! held as its code in the schema (no string per value); only a category
//! the model does not know keeps its text, for the reasons that echo it.

use std::ops::Range;

/// One feature's value in a decoded row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Missing (`null`, blank, or an optional feature left out): the model
    /// imputes it or routes it itself.
    Missing,
    Number(f64),
    /// A category the schema knows: its position in the feature's list.
    Category(u32),
    /// A category the schema does not know: the index of its text in the
    /// table's unseen texts.
    Unseen(u32),
}

/// Decoded rows: `features` values per row, row after row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    features: usize,
    values: Vec<Value>,
    unseen: Vec<String>,
}

impl Rows {
    /// An empty table of rows with `features` values each.
    pub fn new(features: usize) -> Rows {
        Rows { features, values: Vec::new(), unseen: Vec::new() }
    }

    /// [`Rows::new`] with room for `rows` rows.
    pub fn with_capacity(features: usize, rows: usize) -> Rows {
        Rows { features, values: Vec::with_capacity(features * rows), unseen: Vec::new() }
    }

    pub fn features(&self) -> usize {
        self.features
    }

    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.features).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Appends a row of missing values and returns its values to fill in.
    pub fn push_missing(&mut self) -> &mut [Value] {
        let start = self.values.len();
        self.values.resize(start + self.features, Value::Missing);
        &mut self.values[start..]
    }

    /// The values of row `i`, to change.
    pub fn row_mut(&mut self, i: usize) -> &mut [Value] {
        &mut self.values[i * self.features..(i + 1) * self.features]
    }

    /// Keeps the text of a category the schema does not know.
    pub fn unseen(&mut self, text: &str) -> Value {
        self.unseen.push(text.to_string());
        Value::Unseen(self.unseen.len() as u32 - 1)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> Row<'_> {
        self.view().row(i)
    }

    /// Every row, as a view.
    pub fn view(&self) -> RowsView<'_> {
        RowsView { features: self.features, values: &self.values, unseen: &self.unseen }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Row<'_>> + '_ {
        let view = self.view();
        (0..self.len()).map(move |i| view.row(i))
    }
}

/// Some rows of a [`Rows`] table.
#[derive(Debug, Clone, Copy)]
pub struct RowsView<'a> {
    features: usize,
    values: &'a [Value],
    unseen: &'a [String],
}

impl<'a> RowsView<'a> {
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.features).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn row(&self, i: usize) -> Row<'a> {
        Row { values: &self.values[i * self.features..(i + 1) * self.features], unseen: self.unseen }
    }

    /// The rows in `range`.
    pub fn slice(&self, range: Range<usize>) -> RowsView<'a> {
        RowsView {
            features: self.features,
            values: &self.values[range.start * self.features..range.end * self.features],
            unseen: self.unseen,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Row<'a>> + 'a {
        let view = *self;
        (0..self.len()).map(move |i| view.row(i))
    }

    /// The numbers of feature `i`, row after row (missing values and
    /// categories left out).
    pub fn numbers(&self, i: usize) -> impl Iterator<Item = f64> + 'a {
        self.iter().filter_map(move |r| match r.get(i) {
            Value::Number(v) => Some(v),
            _ => None,
        })
    }
}

/// One decoded row.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    values: &'a [Value],
    unseen: &'a [String],
}

impl<'a> Row<'a> {
    /// A row of `values` with no unseen categories.
    pub fn of(values: &'a [Value]) -> Row<'a> {
        Row { values, unseen: &[] }
    }

    /// The value of feature `i`.
    #[inline]
    pub fn get(&self, i: usize) -> Value {
        self.values[i]
    }

    pub fn values(&self) -> &'a [Value] {
        self.values
    }

    /// The text of an unseen category ([`Value::Unseen`]).
    pub fn unseen_text(&self, k: u32) -> &'a str {
        self.unseen.get(k as usize).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_one_flat_table_and_views_slice_it() {
        let mut rows = Rows::with_capacity(2, 3);
        rows.push_missing()[0] = Value::Number(1.0);
        let unseen = rows.unseen("new");
        rows.push_missing()[1] = unseen;
        rows.push_missing()[1] = Value::Category(4);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.row(0).values(), [Value::Number(1.0), Value::Missing]);
        assert_eq!(rows.row(1).get(1), Value::Unseen(0));
        assert_eq!(rows.row(1).unseen_text(0), "new");
        let tail = rows.view().slice(1..3);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail.row(1).get(1), Value::Category(4));
        assert_eq!(tail.row(0).unseen_text(0), "new", "a slice keeps the unseen texts");
        assert_eq!(rows.iter().count(), 3);
        assert!(Rows::new(0).is_empty() && Rows::new(0).iter().count() == 0);
    }
}
