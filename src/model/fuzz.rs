//! Support for the property tests of the two parsers that read untrusted
//! bytes (request bodies, model files): the proptest settings, the committed
//! seed corpus under `tests/corpus/`, and byte-level mutations of a seed.

use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::Path;

/// 256 cases per property unless `PROPTEST_CASES` says otherwise, and no
/// regression files written into the source tree: a failure prints its
/// minimal input, which belongs in the seed corpus.
pub fn config() -> Config {
    Config { failure_persistence: None, ..Config::default() }
}

/// Every file of `tests/corpus/<dir>`, by name, with its bytes.
pub fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(dir);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// One edit of a byte string. Positions are taken modulo the length.
#[derive(Debug, Clone)]
pub enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Truncate(usize),
    /// Copy up to `len` bytes found at the first position to the second.
    Duplicate(usize, usize, usize),
    Remove(usize, usize),
}

/// Bytes that make JSON interesting: punctuation, digits, escapes, and
/// now and then anything at all.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => proptest::sample::select(b"{}[]\",:0123456789-+.eEnulltrfas \\u\t\n".to_vec()),
        1 => any::<u8>(),
    ]
}

/// One to eight edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), byte()).prop_map(|(at, b)| Edit::Replace(at, b)),
        (any::<usize>(), byte()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1..64usize, any::<usize>()).prop_map(|(from, len, to)| Edit::Duplicate(from, len, to)),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Edit::Remove(at, len)),
    ];
    proptest::collection::vec(edit, 1..8)
}

/// `seed` with `edits` applied in order.
pub fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for edit in edits {
        let n = out.len();
        let at = |i: &usize| i.checked_rem(n).unwrap_or(0);
        match edit {
            Edit::Replace(i, b) if n > 0 => {
                let i = at(i);
                out[i] = *b;
            }
            Edit::Replace(..) => {}
            Edit::Insert(i, b) => out.insert(i % (n + 1), *b),
            Edit::Truncate(i) => out.truncate(at(i)),
            Edit::Duplicate(from, len, to) => {
                let from = at(from);
                let piece = out[from..(from + len).min(n)].to_vec();
                let to = at(to);
                out.splice(to..to, piece);
            }
            Edit::Remove(i, len) => {
                let i = at(i);
                out.drain(i..(i + len).min(n));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds_even_on_empty_input() {
        let all = [
            Edit::Replace(3, b'x'),
            Edit::Insert(9, b'y'),
            Edit::Duplicate(1, 50, 7),
            Edit::Remove(2, 10),
            Edit::Truncate(5),
        ];
        for seed in [&b""[..], b"a", b"{\"a\":1}"] {
            for k in 0..all.len() {
                apply(seed, &all[k..]);
            }
        }
        assert_eq!(apply(b"abc", &[Edit::Truncate(0)]), b"");
    }
}
