//! The hostile run's results: one [`CaseRow`] per abuse case (good traffic
//! before, during and after it, memory, commit→serve, what the abusive
//! clients saw), the goals each case is held to, the printed table, and
//! the JSON ([`HostileReport`]).

use super::attack::Observed;
use super::good::Tally;
use crate::report::Goal;
use serde::Serialize;

/// Commit→serve after every case at most this long.
pub const COMMIT_TO_SERVE_GOAL_MS: f64 = 1000.0;
/// RSS after every case within this many percent of the start.
pub const RSS_GOAL_PCT: f64 = 10.0;

/// Everything measured for one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    pub case: String,
    /// Good traffic in the baseline window just before the case.
    pub before: Tally,
    pub during: Tally,
    /// From the end of the case to the end of its commit and RSS checks.
    pub after: Tally,
    /// RSS of the server when the run started (after the warm-up).
    pub rss_start_bytes: u64,
    /// RSS just before this case (after its baseline window).
    pub rss_case_start_bytes: u64,
    pub rss_max_during_bytes: u64,
    pub rss_after_bytes: u64,
    pub commit_version: u64,
    /// None: not served within the timeout (or the commit failed).
    pub commit_to_serve_ms: Option<f64>,
    /// Increase of `riskserve_requests_shed_total` (all reasons) over the
    /// case; None if the server does not export it.
    pub shed_delta: Option<u64>,
    /// `/metrics` lines before the case and after its commit was served.
    pub metrics_lines: (Option<usize>, Option<usize>),
    pub observed: Observed,
    pub notes: Vec<String>,
    pub goals: Vec<Goal>,
}

impl CaseRow {
    /// Good requests over the whole case: baseline, case and after.
    pub fn span(&self) -> Tally {
        let (a, b, c) = (&self.before, &self.during, &self.after);
        Tally {
            requests: a.requests + b.requests + c.requests,
            ok: a.ok + b.ok + c.ok,
            shed: a.shed + b.shed + c.shed,
            other_status: a.other_status + b.other_status + c.other_status,
            timeouts: a.timeouts + b.timeouts + c.timeouts,
            connection_errors: a.connection_errors + b.connection_errors + c.connection_errors,
            p99_ms: b.p99_ms,
        }
    }

    pub fn p99_ratio(&self) -> Option<f64> {
        (self.before.p99_ms > 0.0 && self.during.ok > 0).then(|| self.during.p99_ms / self.before.p99_ms)
    }

    pub fn rss_after_pct(&self) -> f64 {
        pct_change(self.rss_start_bytes, self.rss_after_bytes)
    }

    /// Sets [`CaseRow::goals`]: no failed good request (503 + `Retry-After`
    /// allowed when `may_shed`, i.e. the case saturated admission control),
    /// commit→serve ≤ 1 s, RSS back within 10 %; plus `extra`.
    pub fn judge(&mut self, may_shed: bool, extra: Vec<Goal>) {
        let span = self.span();
        let failures_met = span.other_failures() == 0 && (may_shed || span.shed == 0);
        let rss_pct = self.rss_after_pct();
        let mut goals = vec![
            Goal {
                goal: if may_shed {
                    "0 failed good requests (503 + Retry-After allowed: admission control shed)".into()
                } else {
                    "0 failed good requests".into()
                },
                measured: format!(
                    "{} shed, {} other status, {} timeouts, {} connection errors of {}",
                    span.shed, span.other_status, span.timeouts, span.connection_errors, span.requests
                ),
                met: failures_met,
            },
            Goal {
                goal: format!("commit→serve ≤ {COMMIT_TO_SERVE_GOAL_MS:.0} ms"),
                measured: self.commit_to_serve_ms.map_or("not served".into(), |ms| format!("{ms:.0} ms")),
                met: self.commit_to_serve_ms.is_some_and(|ms| ms <= COMMIT_TO_SERVE_GOAL_MS),
            },
            Goal {
                goal: format!("RSS after within {RSS_GOAL_PCT:.0} % of start"),
                measured: format!("{} → {} ({rss_pct:+.1} %)", mib(self.rss_start_bytes), mib(self.rss_after_bytes)),
                met: rss_pct.abs() <= RSS_GOAL_PCT,
            },
        ];
        goals.extend(extra);
        self.goals = goals;
    }
}

/// `(to − from) / from` in percent (0 when `from` is 0).
pub fn pct_change(from: u64, to: u64) -> f64 {
    if from == 0 {
        return 0.0;
    }
    (to as f64 - from as f64) / from as f64 * 100.0
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct HostileReport {
    pub target: String,
    pub good_clients: usize,
    pub case_secs: f64,
    pub baseline_secs: f64,
    /// The harness's and the server's open-file limits (soft).
    pub fd_limits: (Option<u64>, Option<u64>),
    pub cases: Vec<CaseRow>,
    /// Problems of the harness itself (a case that could not be set up).
    pub errors: Vec<String>,
}

impl HostileReport {
    pub fn all_met(&self) -> bool {
        self.errors.is_empty() && self.cases.iter().all(|c| c.goals.iter().all(|g| g.met))
    }

    /// Goals missed, one line each (`case: goal — measured`).
    pub fn missed(&self) -> Vec<String> {
        let goals = self.cases.iter().flat_map(|c| c.goals.iter().map(move |g| (c, g)));
        let mut out: Vec<String> =
            goals.filter(|(_, g)| !g.met).map(|(c, g)| format!("{}: {} — {}", c.case, g.goal, g.measured)).collect();
        out.extend(self.errors.iter().map(|e| format!("harness: {e}")));
        out
    }

    /// The table, one row per case, then the missed goals.
    pub fn table(&self) -> String {
        let header = [
            "case",
            "good req",
            "fail 503+RA/other",
            "p99 before → during",
            "max RSS",
            "RSS after vs start",
            "commit→serve",
            "notes",
        ];
        let mut rows: Vec<[String; 8]> = vec![header.map(String::from)];
        for c in &self.cases {
            let span = c.span();
            rows.push([
                c.case.clone(),
                span.requests.to_string(),
                format!("{}/{}", span.shed, span.other_failures()),
                format!(
                    "{:.2} → {:.2} ms ({})",
                    c.before.p99_ms,
                    c.during.p99_ms,
                    c.p99_ratio().map_or("-".into(), |r| format!("{r:.1}×"))
                ),
                mib(c.rss_max_during_bytes),
                format!(
                    "{:+.1} % (case {:+.1} %)",
                    c.rss_after_pct(),
                    pct_change(c.rss_case_start_bytes, c.rss_after_bytes)
                ),
                c.commit_to_serve_ms.map_or("not served".into(), |ms| format!("{ms:.0} ms")),
                c.notes.join("; "),
            ]);
        }
        let widths: Vec<usize> =
            (0..header.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
                .collect();
            out.push_str(cells.join(" | ").trim_end());
            out.push('\n');
            if n == 0 {
                out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-|-"));
                out.push('\n');
            }
        }
        let missed = self.missed();
        if missed.is_empty() {
            out.push_str("\nevery goal met\n");
        } else {
            out.push_str("\ngoals missed:\n");
            for m in missed {
                out.push_str(&format!("  {m}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> CaseRow {
        let t = |requests, ok, p99_ms| Tally { requests, ok, p99_ms, ..Tally::default() };
        CaseRow {
            case: "overload".into(),
            before: t(100, 100, 1.0),
            during: Tally { shed: 5, ..t(100, 95, 3.0) },
            after: t(50, 50, 1.0),
            rss_start_bytes: 100 << 20,
            rss_case_start_bytes: 100 << 20,
            rss_max_during_bytes: 150 << 20,
            rss_after_bytes: 105 << 20,
            commit_version: 3,
            commit_to_serve_ms: Some(40.0),
            shed_delta: Some(5),
            metrics_lines: (Some(10), Some(10)),
            observed: Observed::default(),
            notes: vec!["shed 5".into()],
            goals: vec![],
        }
    }

    #[test]
    fn sheds_are_allowed_only_where_admission_control_shed() {
        let mut r = row();
        assert_eq!(r.span().requests, 250);
        assert_eq!(r.p99_ratio(), Some(3.0));
        assert_eq!(r.rss_after_pct(), 5.0);
        r.judge(true, vec![]);
        assert!(r.goals.iter().all(|g| g.met), "{:?}", r.goals);
        r.judge(false, vec![]);
        assert!(!r.goals[0].met);
        r.rss_after_bytes = 111 << 20;
        r.commit_to_serve_ms = None;
        r.judge(true, vec![]);
        assert_eq!(r.goals.iter().filter(|g| !g.met).count(), 2);
    }

    #[test]
    fn table_has_a_row_per_case_and_lists_missed_goals() {
        let mut r = row();
        r.judge(false, vec![]);
        let report = HostileReport {
            target: "http://127.0.0.1:1".into(),
            good_clients: 16,
            case_secs: 2.0,
            baseline_secs: 1.0,
            fd_limits: (Some(1024), None),
            cases: vec![r],
            errors: vec![],
        };
        assert!(!report.all_met());
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("case"));
        assert!(lines[2].starts_with("overload") && lines[2].contains("5/0") && lines[2].contains("3.0×"), "{table}");
        assert!(table.contains("goals missed:\n  overload: 0 failed good requests"), "{table}");
        pct_change(0, 5);
    }
}
