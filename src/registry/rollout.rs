//! The rollout file `<models>/<name>/rollout.toml` (location rule in
//! [`crate::repository::layout`]): parsing and validation into a
//! [`RolloutPolicy`]. Pure: bytes in, policy or [`RolloutError`] out. What
//! the policy does to traffic is [`super::traffic`]; the loader keeps the
//! last good policy when a new file is bad. See `docs/rollouts.md`.
//!
//! ```toml
//! stable = 3                              # takes unpinned traffic
//! canary = { version = 4, weight = 0.05 } # 5 % of unpinned traffic, sticky by key
//! shadow = 5                              # scores a copy of traffic off the request path
//! request_key = "x-request-id"            # header whose value makes assignment sticky
//! [guards]                                # defaults apply to any canary or shadow
//! min_requests = 200
//! max_error_rate = 0.01
//! max_latency_ratio = 5.0
//! max_decision_shift = 0.10
//! max_psi = 0.25
//! promote_after = 0                       # 0 = never promote automatically
//! ```

use super::guards::Guards;
use hyper::header::HeaderName;
use serde::Deserialize;

/// Largest rollout file read.
pub const MAX_ROLLOUT_FILE_BYTES: u64 = 64 * 1024;
/// The header that makes canary assignment sticky unless the file names another.
pub const DEFAULT_REQUEST_KEY: &str = "x-request-id";
/// Canary weights are kept in basis points (1/10,000).
pub const WEIGHT_SCALE: u32 = 10_000;

/// What a valid rollout file declares.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPolicy {
    /// The version taking unpinned traffic; `None`: the highest loaded
    /// version that is neither the canary nor the shadow.
    pub stable: Option<u64>,
    pub canary: Option<Canary>,
    pub shadow: Option<u64>,
    /// Header whose value assigns a request to stable or canary.
    pub request_key: HeaderName,
    pub guards: Guards,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canary {
    pub version: u64,
    /// Share of unpinned traffic in basis points (0..=10,000).
    pub weight_bp: u32,
}

impl RolloutPolicy {
    /// The versions this rollout needs loaded, whatever the version policy.
    pub fn named_versions(&self) -> Vec<u64> {
        self.stable.into_iter().chain(self.canary.map(|c| c.version)).chain(self.shadow).collect()
    }

    /// The policy as a rollout file that [`parse`]s back to it, after
    /// `comment` (each line prefixed with `# `). Used to publish a revert.
    pub fn to_toml(&self, comment: &str) -> String {
        let mut out = String::new();
        for line in comment.lines() {
            out.push_str(&format!("# {line}\n"));
        }
        if let Some(v) = self.stable {
            out.push_str(&format!("stable = {v}\n"));
        }
        if let Some(c) = self.canary {
            let weight = f64::from(c.weight_bp) / f64::from(WEIGHT_SCALE);
            out.push_str(&format!("canary = {{ version = {}, weight = {weight:?} }}\n", c.version));
        }
        if let Some(v) = self.shadow {
            out.push_str(&format!("shadow = {v}\n"));
        }
        out.push_str(&format!("request_key = \"{}\"\n", self.request_key));
        let g = &self.guards;
        out.push_str(&format!(
            "[guards]\nmin_requests = {}\nmax_error_rate = {:?}\nmax_latency_ratio = {:?}\nmax_decision_shift = {:?}\nmax_psi = {:?}\npromote_after = {}\n",
            g.min_requests, g.max_error_rate, g.max_latency_ratio, g.max_decision_shift, g.max_psi, g.promote_after
        ));
        out
    }
}

/// Why a rollout file was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RolloutError {
    #[error("rollout file is not valid TOML for a rollout: {0}")]
    Syntax(String),
    #[error("rollout file: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    stable: Option<u64>,
    canary: Option<CanaryShape>,
    shadow: Option<u64>,
    request_key: Option<String>,
    guards: Option<GuardsShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanaryShape {
    version: u64,
    weight: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GuardsShape {
    min_requests: Option<u64>,
    max_error_rate: Option<f64>,
    max_latency_ratio: Option<f64>,
    max_decision_shift: Option<f64>,
    max_psi: Option<f64>,
    promote_after: Option<u64>,
}

/// Parses and validates a rollout file.
pub fn parse(bytes: &[u8]) -> Result<RolloutPolicy, RolloutError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RolloutError::Syntax("not UTF-8 text".into()))?;
    let file: FileShape = toml::from_str(text).map_err(|e| RolloutError::Syntax(e.message().to_string()))?;
    let invalid = |m: String| Err(RolloutError::Invalid(m));
    for (key, v) in
        [("stable", file.stable), ("canary.version", file.canary.as_ref().map(|c| c.version)), ("shadow", file.shadow)]
    {
        if v == Some(0) {
            return invalid(format!("`{key}` is 0: versions start at 1"));
        }
    }
    let canary = match file.canary {
        None => None,
        Some(c) if !(0.0..=1.0).contains(&c.weight) || !c.weight.is_finite() => {
            return invalid(format!(
                "`canary.weight` is {}: it must be a share between 0 and 1 (0.05 = 5 %)",
                c.weight
            ));
        }
        Some(c) => Some(Canary { version: c.version, weight_bp: (c.weight * f64::from(WEIGHT_SCALE)).round() as u32 }),
    };
    if let (Some(s), Some(c)) = (file.stable, canary) {
        if s == c.version {
            return invalid(format!("`stable` and `canary.version` are both {s}: a canary must be another version"));
        }
    }
    if let Some(sh) = file.shadow {
        if file.stable == Some(sh) {
            return invalid(format!("`stable` and `shadow` are both {sh}: shadow another version"));
        }
        if canary.is_some_and(|c| c.version == sh) {
            return invalid(format!("`canary.version` and `shadow` are both {sh}: shadow another version"));
        }
    }
    let key = file.request_key.unwrap_or_else(|| DEFAULT_REQUEST_KEY.to_string());
    let request_key = HeaderName::from_bytes(key.to_ascii_lowercase().as_bytes())
        .map_err(|_| RolloutError::Invalid(format!("`request_key` {key:?} is not an HTTP header name")))?;
    let guards = guards(file.guards)?;
    Ok(RolloutPolicy { stable: file.stable, canary, shadow: file.shadow, request_key, guards })
}

fn guards(shape: Option<GuardsShape>) -> Result<Guards, RolloutError> {
    let d = Guards::default();
    let Some(s) = shape else { return Ok(d) };
    let share = |key: &str, v: Option<f64>, default: f64| match v {
        Some(x) if !(x > 0.0 && x <= 1.0) => {
            Err(RolloutError::Invalid(format!("`guards.{key}` is {x}: it must be a share above 0 and at most 1")))
        }
        v => Ok(v.unwrap_or(default)),
    };
    let g = Guards {
        min_requests: s.min_requests.unwrap_or(d.min_requests),
        max_error_rate: share("max_error_rate", s.max_error_rate, d.max_error_rate)?,
        max_latency_ratio: s.max_latency_ratio.unwrap_or(d.max_latency_ratio),
        max_decision_shift: share("max_decision_shift", s.max_decision_shift, d.max_decision_shift)?,
        max_psi: s.max_psi.unwrap_or(d.max_psi),
        promote_after: s.promote_after.unwrap_or(d.promote_after),
    };
    if g.min_requests == 0 {
        return Err(RolloutError::Invalid("`guards.min_requests` is 0: a guard needs at least one request".into()));
    }
    if !(g.max_latency_ratio.is_finite() && g.max_latency_ratio >= 1.0) {
        return Err(RolloutError::Invalid(format!(
            "`guards.max_latency_ratio` is {}: it must be at least 1 (2.0 = twice the baseline's p99)",
            g.max_latency_ratio
        )));
    }
    if !(g.max_psi.is_finite() && g.max_psi > 0.0) {
        return Err(RolloutError::Invalid(format!("`guards.max_psi` is {}: it must be above 0", g.max_psi)));
    }
    if g.promote_after != 0 && g.promote_after < g.min_requests {
        return Err(RolloutError::Invalid(format!(
            "`guards.promote_after` is {}: below `guards.min_requests` ({}), the guards could not judge first",
            g.promote_after, g.min_requests
        )));
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> RolloutPolicy {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        parse(text.as_bytes()).expect_err(text).to_string()
    }

    #[test]
    fn a_full_file_parses_with_defaults_filled_in() {
        let p = ok("stable = 3\ncanary = { version = 4, weight = 0.05 }\nshadow = 5\n[guards]\nmin_requests = 50\n");
        assert_eq!(p.stable, Some(3));
        assert_eq!(p.canary, Some(Canary { version: 4, weight_bp: 500 }));
        assert_eq!(p.shadow, Some(5));
        assert_eq!(p.request_key, DEFAULT_REQUEST_KEY);
        assert_eq!(p.guards, Guards { min_requests: 50, ..Guards::default() });
        assert_eq!(p.named_versions(), vec![3, 4, 5]);
        let empty = ok("");
        assert_eq!((empty.stable, empty.canary, empty.shadow), (None, None, None));
        assert_eq!(ok("request_key = \"X-Applicant-ID\"").request_key, "x-applicant-id");
        assert_eq!(ok("canary = { version = 2, weight = 1.0 }").canary.unwrap().weight_bp, 10_000);
    }

    #[test]
    fn a_policy_written_back_parses_to_itself() {
        for text in [
            "",
            "stable = 3\ncanary = { version = 4, weight = 0.05 }\nshadow = 5\n[guards]\nmin_requests = 50\nmax_psi = 0.3\n",
            "canary = { version = 2, weight = 0.0001 }\nrequest_key = \"X-Applicant-ID\"\n[guards]\nmax_error_rate = 0.005\npromote_after = 900\n",
        ] {
            let p = ok(text);
            let written = p.to_toml("reverted by replica a\nguard: decision_shift");
            assert!(written.starts_with("# reverted by replica a\n# guard: decision_shift\n"), "{written}");
            assert_eq!(ok(&written), p, "{written}");
        }
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, needle) in [
            ("stable = ", "TOML"),
            ("stabel = 3", "unknown field `stabel`"),
            ("stable = -1", "invalid value"),
            ("stable = 0", "versions start at 1"),
            ("canary = { version = 4 }", "missing field `weight`"),
            ("canary = { version = 4, weight = 5 }", "between 0 and 1"),
            ("canary = { version = 4, weight = nan }", "between 0 and 1"),
            ("stable = 4\ncanary = { version = 4, weight = 0.1 }", "both 4"),
            ("stable = 4\nshadow = 4", "both 4"),
            ("shadow = 5\ncanary = { version = 5, weight = 0.1 }", "both 5"),
            ("request_key = \"bad header\"", "not an HTTP header name"),
            ("[guards]\nmax_error_rate = 0", "share above 0"),
            ("[guards]\nmax_latency_ratio = 0.5", "at least 1"),
            ("[guards]\nmin_requests = 0", "at least one request"),
            ("[guards]\nmin_requests = 100\npromote_after = 10", "below `guards.min_requests`"),
            ("[guards]\nmax_pis = 1", "unknown field `max_pis`"),
        ] {
            let e = err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert!(parse(&[0xff, 0xfe]).unwrap_err().to_string().contains("UTF-8"));
    }
}
