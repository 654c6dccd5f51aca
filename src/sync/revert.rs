//! The fleet revert: when a replica's guards revert a rollout candidate,
//! the replica takes the candidate out of the *published* rollout file, so
//! every replica stops sending it traffic at its next poll.
//!
//! What is published is the rollout in force with the reverted candidate
//! removed and the stable version pinned (so the candidate cannot become
//! "the highest loaded version"), written back as TOML under a comment that
//! says who reverted it, when, and why. The write is conditional twice
//! over: on the manifest's ETag (as every publish) and on the rollout file
//! being still the one this replica applied. Two replicas reverting at once
//! therefore publish one revert; the other is told the file changed and
//! does nothing more. An operator's newer file is never overwritten.
//!
//! The local revert does not wait for any of this: the guard takes the
//! candidate out of this replica's traffic at once. If the store cannot be
//! reached, the publish is retried with backoff; until it succeeds (or the
//! file changes), the other replicas keep the canary unless their own
//! guards fire.
//!
//! Pure planning here ([`plan`]); [`super::replica`] reads the snapshot,
//! calls it and publishes.

use super::manifest::FileEntry;
use crate::registry::rollout::{self, RolloutPolicy};
use crate::registry::traffic::{CandidateState, Rollout};
use bytes::Bytes;

/// The candidates of the rollout in force that its guards reverted, with the reasons.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reverted {
    pub canary: Option<(u64, String)>,
    pub shadow: Option<(u64, String)>,
}

impl Reverted {
    /// What `rollout`'s guards reverted.
    pub fn of(rollout: &Rollout) -> Reverted {
        let reverted = |c: Option<&crate::registry::traffic::Candidate>| {
            let c = c?;
            let o = c.outcome().filter(|o| o.state == CandidateState::Reverted)?;
            Some((c.version.version, format!("{}: {}", o.guard, o.reason)))
        };
        Reverted { canary: reverted(rollout.canary.as_ref()), shadow: reverted(rollout.shadow.as_ref()) }
    }

    pub fn any(&self) -> bool {
        self.canary.is_some() || self.shadow.is_some()
    }
}

/// A revert to publish for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct RevertPlan {
    /// The published rollout file it replaces (the write is conditional on it).
    pub expected: FileEntry,
    /// The new rollout file.
    pub bytes: Bytes,
    /// For the log: what was reverted and why.
    pub summary: String,
}

/// What to publish so the fleet follows this replica's revert, if anything:
/// nothing unless a candidate was reverted and the rollout in force is
/// exactly the published file (`published`, whose bytes this replica has
/// as `local`). `stable` is the version the rollout in force sends
/// unpinned traffic to; `who` and `at` name the replica and the time.
pub fn plan(
    in_force: &RolloutPolicy,
    stable: u64,
    reverted: &Reverted,
    published: &FileEntry,
    local: &[u8],
    who: &str,
    at: &str,
) -> Option<RevertPlan> {
    if !reverted.any() || !published.matches(local) || rollout::parse(local).ok().as_ref() != Some(in_force) {
        return None;
    }
    let mut next = in_force.clone();
    next.stable = Some(stable);
    let mut what = Vec::new();
    if let Some((v, why)) = &reverted.canary {
        next.canary = None;
        what.push(format!("canary version {v} reverted ({why})"));
    }
    if let Some((v, why)) = &reverted.shadow {
        next.shadow = None;
        what.push(format!("shadow version {v} reverted ({why})"));
    }
    let summary = what.join("; ");
    let comment = format!(
        "Published by riskserve: the guards of replica {who} reverted this rollout at {at}.\n{summary}\n\
         Stable pinned to version {stable}. Edit and publish this file to start another rollout."
    );
    // A reason never spans lines in a comment.
    let comment = comment.replace('\r', " ");
    Some(RevertPlan { expected: published.clone(), bytes: Bytes::from(next.to_toml(&comment)), summary })
}

/// This replica's name in a published revert: `$HOSTNAME` (the pod name
/// on Kubernetes) and the process id.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown-host".into());
    format!("{host} (pid {})", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "canary = { version = 3, weight = 0.1 }\n[guards]\nmin_requests = 50\n";

    fn reverted_canary() -> Reverted {
        Reverted { canary: Some((3, "decision_shift: high_risk share 100 %".into())), shadow: None }
    }

    #[test]
    fn a_reverted_canary_is_removed_and_the_stable_version_pinned() {
        let policy = rollout::parse(FILE.as_bytes()).unwrap();
        let published = FileEntry::for_bytes(FILE.as_bytes());
        let p = plan(&policy, 2, &reverted_canary(), &published, FILE.as_bytes(), "r1", "t").unwrap();
        let text = std::str::from_utf8(&p.bytes).unwrap();
        let next = rollout::parse(&p.bytes).unwrap();
        assert_eq!((next.stable, next.canary, next.shadow), (Some(2), None, None), "{text}");
        assert_eq!(next.guards, policy.guards, "the guards stay as they were");
        assert!(text.contains("replica r1 reverted this rollout at t"), "{text}");
        assert!(p.summary.contains("canary version 3 reverted (decision_shift"), "{}", p.summary);
        assert_eq!(p.expected, published);
    }

    #[test]
    fn nothing_is_published_unless_the_reverted_rollout_is_the_published_file() {
        let policy = rollout::parse(FILE.as_bytes()).unwrap();
        let published = FileEntry::for_bytes(FILE.as_bytes());
        let bytes = FILE.as_bytes();
        assert_eq!(plan(&policy, 2, &Reverted::default(), &published, bytes, "r", "t"), None, "nothing reverted");
        let other = FileEntry::for_bytes(b"stable = 2\n");
        assert_eq!(plan(&policy, 2, &reverted_canary(), &other, bytes, "r", "t"), None, "the store moved on");
        let edited = rollout::parse(b"canary = { version = 3, weight = 0.2 }\n").unwrap();
        assert_eq!(plan(&edited, 2, &reverted_canary(), &published, bytes, "r", "t"), None, "another rollout in force");
        let shadow = Reverted { canary: None, shadow: Some((4, "psi: 0.4".into())) };
        let with_shadow = "stable = 2\nshadow = 4\n";
        let p = plan(
            &rollout::parse(with_shadow.as_bytes()).unwrap(),
            2,
            &shadow,
            &FileEntry::for_bytes(with_shadow.as_bytes()),
            with_shadow.as_bytes(),
            "r",
            "t",
        )
        .unwrap();
        assert_eq!(rollout::parse(&p.bytes).unwrap().shadow, None);
    }
}
