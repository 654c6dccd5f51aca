//! The allocator's own account of the server's memory, exported as
//! `riskserve_allocator_*_bytes` gauges read at each scrape.
//!
//! `process_resident_memory_bytes` says how much memory the process holds;
//! these say why: live allocations (`allocated`), the pages they occupy
//! (`active`; the difference is fragmentation), the allocator's metadata
//! (kept for the life of the process), and what is resident, mapped or
//! retained. The binary chooses the global allocator (`src/main.rs`), so it
//! installs the reader ([`install`]); without one (the library's own tests,
//! which run on the system allocator) the gauges are not exported at all.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::IntGauge;
use std::sync::{Mutex, OnceLock};

/// The allocator's statistics, in bytes (jemalloc's `stats.*` names).
#[derive(Debug, Clone, Copy)]
pub struct AllocatorStats {
    /// Bytes of live allocations.
    pub allocated: u64,
    /// Bytes of the pages those allocations occupy (≥ `allocated`).
    pub active: u64,
    /// Bytes of the allocator's metadata.
    pub metadata: u64,
    /// Bytes of resident pages the allocator maps: active, metadata and
    /// dirty pages not yet returned (an upper bound: allocated pages never
    /// touched count too).
    pub resident: u64,
    /// Bytes of the extents the allocator has mapped and not returned.
    pub mapped: u64,
    /// Bytes of address space kept mapped for reuse, already returned to
    /// the OS (not resident).
    pub retained: u64,
}

/// Reads the allocator's statistics; `None` when they cannot be read.
pub type ReadStats = fn() -> Option<AllocatorStats>;

static READER: OnceLock<ReadStats> = OnceLock::new();

/// Installs the reader of the global allocator's statistics (once per
/// process; later calls are ignored). Servers started afterwards export them.
pub fn install(read: ReadStats) {
    let _ = READER.set(read);
}

/// jemalloc's statistics, refreshed (its `epoch` advanced) at each call:
/// one scrape. The binary installs it, as jemalloc is its global allocator;
/// in a process on another allocator it would describe jemalloc's own
/// (unused) heap.
#[cfg(unix)]
pub fn jemalloc() -> Option<AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let bytes = |v: usize| v as u64;
    Some(AllocatorStats {
        allocated: bytes(stats::allocated::read().ok()?),
        active: bytes(stats::active::read().ok()?),
        metadata: bytes(stats::metadata::read().ok()?),
        resident: bytes(stats::resident::read().ok()?),
        mapped: bytes(stats::mapped::read().ok()?),
        retained: bytes(stats::retained::read().ok()?),
    })
}

/// Picks one statistic out of [`AllocatorStats`].
type Field = fn(&AllocatorStats) -> u64;

/// The `riskserve_allocator_*_bytes` gauges, refreshed from the installed
/// reader whenever the registry is gathered.
pub(super) struct AllocatorCollector {
    read: ReadStats,
    gauges: [(IntGauge, Field); 6],
    /// Held from the read through the collection, so two scrapes at once
    /// each export one snapshot, not a mix of two.
    collecting: Mutex<()>,
}

impl AllocatorCollector {
    /// The collector, if a reader was installed.
    pub(super) fn installed() -> Option<AllocatorCollector> {
        READER.get().map(|&read| AllocatorCollector::with_reader(read))
    }

    fn with_reader(read: ReadStats) -> AllocatorCollector {
        let gauge =
            |name: &str, help: &str| super::must(IntGauge::new(format!("riskserve_allocator_{name}_bytes"), help));
        AllocatorCollector {
            read,
            collecting: Mutex::new(()),
            gauges: [
                (gauge("allocated", "Bytes of live allocations (jemalloc stats.allocated)."), |s| s.allocated),
                (
                    gauge(
                        "active",
                        "Bytes of the pages live allocations occupy (stats.active); the excess over allocated is \
                         fragmentation.",
                    ),
                    |s| s.active,
                ),
                (
                    gauge(
                        "metadata",
                        "Bytes of allocator metadata (stats.metadata), kept for the life of the process.",
                    ),
                    |s| s.metadata,
                ),
                (
                    gauge(
                        "resident",
                        "Bytes of resident pages the allocator maps, at most: live pages, metadata and freed pages \
                         not yet returned (stats.resident; pages never touched count too).",
                    ),
                    |s| s.resident,
                ),
                (gauge("mapped", "Bytes of extents the allocator has mapped (stats.mapped)."), |s| s.mapped),
                (
                    gauge(
                        "retained",
                        "Bytes of address space kept for reuse, already returned to the OS, not resident \
                         (stats.retained).",
                    ),
                    |s| s.retained,
                ),
            ],
        }
    }
}

impl Collector for AllocatorCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges.iter().flat_map(|(g, _)| g.desc()).collect()
    }

    /// Reads the statistics once and exports every gauge; nothing when they
    /// cannot be read (a scrape then lacks them rather than showing stale or
    /// zero values).
    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.collecting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(stats) = (self.read)() else { return Vec::new() };
        self.gauges
            .iter()
            .flat_map(|(gauge, field)| {
                gauge.set(i64::try_from(field(&stats)).unwrap_or(i64::MAX));
                gauge.collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed() -> Option<AllocatorStats> {
        Some(AllocatorStats { allocated: 1, active: 2, metadata: 3, resident: 4, mapped: 5, retained: 6 })
    }

    #[test]
    fn each_gauge_exports_its_own_statistic() {
        let collector = AllocatorCollector::with_reader(fixed);
        let text = prometheus::TextEncoder::new().encode_to_string(&collector.collect()).unwrap();
        let want = ["allocated", "active", "metadata", "resident", "mapped", "retained"];
        let values: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let expected: Vec<String> =
            want.iter().enumerate().map(|(i, name)| format!("riskserve_allocator_{name}_bytes {}", i + 1)).collect();
        assert_eq!(values, expected, "{text}");
        assert_eq!(collector.desc().len(), want.len());
    }

    /// Two scrapes at once: each exports one snapshot (here every field of
    /// a snapshot is the same number), never a mix of two.
    #[test]
    fn concurrent_scrapes_each_export_one_snapshot() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static READS: AtomicU64 = AtomicU64::new(0);
        fn counting() -> Option<AllocatorStats> {
            let n = READS.fetch_add(1, Ordering::Relaxed);
            Some(AllocatorStats { allocated: n, active: n, metadata: n, resident: n, mapped: n, retained: n })
        }
        let collector = AllocatorCollector::with_reader(counting);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..2_000 {
                        let text = prometheus::TextEncoder::new().encode_to_string(&collector.collect()).unwrap();
                        let values: Vec<&str> =
                            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(' ').nth(1)).collect();
                        assert_eq!(values.len(), 6, "{text}");
                        assert!(values.iter().all(|v| *v == values[0]), "a mixed snapshot:\n{text}");
                    }
                });
            }
        });
    }

    #[test]
    fn unreadable_statistics_export_nothing() {
        let collector = AllocatorCollector::with_reader(|| None);
        assert!(collector.collect().is_empty());
    }
}
