//! What a run records for the report: each step the operator takes
//! ([`OpEvent`], [`OpKind`]) and the memory of the server's process tree
//! ([`MemorySample`]). Written by [`crate::operator`], read by
//! [`crate::analysis`] and carried by [`crate::report`].

use serde::Serialize;

/// What the operator did, and when (µs since the run started).
#[derive(Debug, Clone, Serialize)]
pub struct OpEvent {
    pub kind: OpKind,
    pub version: u64,
    /// The version that should be served once the server has caught up.
    pub expect: u64,
    /// Just before the step became visible to the server (for commits: just
    /// before the rename / the completing write). A response may name a
    /// committed version only after this.
    pub pre_us: u64,
    /// Just after the step (after the rename / close / delete / HUP).
    pub at_us: u64,
    /// Half-written and corrupt files (riskserve): ms from the step until
    /// `riskserve_model_loads_total{result="incomplete"|"invalid"}` went up,
    /// i.e. the server looked at the file and refused it. The operator waits
    /// for this (bounded) before its next step; None if not seen in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_after_ms: Option<f64>,
}

impl OpEvent {
    /// A step after which `version` itself should serve (a commit, a completed write).
    pub(crate) fn served(kind: OpKind, version: u64, pre_us: u64, at_us: u64) -> OpEvent {
        OpEvent { kind, version, expect: version, pre_us, at_us, rejected_after_ms: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Written elsewhere, renamed into place: the documented way.
    Commit,
    /// The first half of a version written in place (must not be served).
    HalfWritten,
    /// The rest of that file written: from now on it is a valid version.
    CompletedWrite,
    /// A file with one flipped payload byte renamed into place (must never be served).
    Corrupt,
    /// The newest version deleted: traffic should go back to the previous one.
    Rollback,
}

/// Memory of a process tree at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct MemorySample {
    /// Harness time, seconds since start.
    pub at_s: f64,
    /// Commits made by the operator so far.
    pub commits: usize,
    /// `riskserve_model_swaps_total` at that moment, when scraped.
    pub server_swaps: Option<u64>,
    /// Sum of VmRSS over the tree (shared pages of forked workers counted
    /// once per process).
    pub rss_bytes: u64,
    /// Sum of Pss (shared pages split between the processes sharing them).
    pub pss_bytes: u64,
    pub processes: usize,
    /// Lines of `/metrics` (riskserve), to show label sets do not grow.
    pub metrics_lines: Option<usize>,
    /// `process_resident_memory_bytes` from `/metrics` (riskserve).
    pub metrics_rss_bytes: Option<u64>,
}
