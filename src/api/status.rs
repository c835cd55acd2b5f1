//! The rollout state as the `v1alpha1` Release status stores it: the wire form of the core's
//! typed [`State`], and the conversions between the two.
//!
//! The status is flat (every field of every stage side by side, most optional), as it has
//! been since `v1alpha1`; the core's [`State`] carries in each stage only what exists there.
//! The reconciler converts at the edge: [`State::from`] when it reads status,
//! [`StateV1alpha1::from`] when it writes it. Core → wire → core is the identity; wire → core
//! reads whatever the current and earlier versions wrote, and makes the best of the rest:
//!
//! - fields that do not exist in the phase are ignored (e.g. `stepStartedAt` when
//!   `Waiting`, `abortedAt` unless `Failed`, `failedRevision` unless `Failed`), and are no
//!   longer written;
//! - a phase with a release (`Progressing`, `Paused`, `Promoting`, `Succeeded`, and
//!   `Waiting` with a `canaryRevision`, a withdrawn release) reads a missing `canaryRevision`
//!   as the empty revision, which no template has: the next decision supersedes or
//!   withdraws such a release, as it did with the flat state; a missing `startedAt` reads
//!   as the Unix epoch (every analysis in status then counts as the release's);
//! - `Failed` names the aborted revision in `failedRevision` (else `canaryRevision`); with
//!   neither there is nothing to keep from being retried, and it reads as `Waiting`. A
//!   missing `abortedAt` reads as the epoch: the scale-down delay is over;
//! - `Promoting` without `promotingSince` reads as promoting since the release's start.
//!   `v1alpha1` has no field for [`Promotion::stall_reported`]: a stalled promotion keeps the
//!   message that reported it, which begins with [`STALLED`], until it ends, and that is
//!   how it reads back (it is said again if something else overwrote the message, as
//!   before).

use crate::rollout::{
    AnalysisRecord, Attempt, Bake, Flight, Match, Phase, Promotion, STALLED, Stage, State,
    StepState, Traffic,
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The rollout state in the `v1alpha1` Release status (flattened into
/// [`crate::api::crd::ReleaseStatus`]): the wire form of [`State`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StateV1alpha1 {
    /// Where the rollout is.
    #[serde(default)]
    pub phase: Phase,
    /// The revision the stable Deployment runs (a hash of its pod template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The revision under test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// The last aborted revision; it is not retried until the template changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<String>,
    /// The index of the current step.
    #[serde(default)]
    pub current_step: u32,
    /// The number of steps of the plan.
    #[serde(default)]
    pub steps: u32,
    /// The canary's traffic share in percent, as applied.
    #[serde(default)]
    pub weight: u8,
    /// The A/B conditions in force, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// The share (percent) of stable's requests mirrored to the canary, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percent: Option<u8>,
    /// The canary's replicas set by a `replicas` step, overriding the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_replicas: Option<i32>,
    /// The target's replica count when the rollout started; restored afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_replicas: Option<i32>,
    /// When the rollout started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the current step started (its weight was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<DateTime<Utc>>,
    /// When the canary first received traffic: the start of the background analysis window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_since: Option<DateTime<Utc>>,
    /// When the last analysis ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_analysis_at: Option<DateTime<Utc>>,
    /// Analyses run in this rollout.
    #[serde(default)]
    pub looks: u32,
    /// Whether the current step's analysis has passed.
    #[serde(default)]
    pub step_passed: bool,
    /// Failed analyses in this rollout.
    #[serde(default)]
    pub failed_checks: u32,
    /// Inconclusive analyses in this rollout.
    #[serde(default)]
    pub inconclusive_checks: u32,
    /// Analyses in a row that could not run.
    #[serde(default)]
    pub consecutive_errors: u32,
    /// Since when the rollout waits for the canary to become available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<DateTime<Utc>>,
    /// When the `rollout` and `rollback` gates were last asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gate_at: Option<DateTime<Utc>>,
    /// A confirm gate said no: it is asked again from this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_retry_at: Option<DateTime<Utc>>,
    /// When the rollout was aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_at: Option<DateTime<Utc>>,
    /// The canary's weight when it was aborted (a gradual abort hands traffic back from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_from_weight: Option<u8>,
    /// When the promotion (the stable Deployment rolling) began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoting_since: Option<DateTime<Utc>>,
    /// When the promotion completed and the bake began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baking_since: Option<DateTime<Utc>>,
    /// The revision before the release, which a failed bake rolls back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<String>,
    /// When the rollback of a failed bake began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_since: Option<DateTime<Utc>>,
    /// The last verdict: `pass`, `fail`, `inconclusive` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verdict: Option<String>,
    /// The latest analyses, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analyses: Vec<AnalysisRecord>,
    /// What is going on, in words.
    #[serde(default)]
    pub message: String,
}

impl StateV1alpha1 {
    /// The release these fields describe, named `canary_revision`.
    fn release(&self, canary_revision: Option<&String>) -> Attempt {
        Attempt {
            canary_revision: canary_revision.cloned().unwrap_or_default(),
            started_at: self.started_at.unwrap_or(DateTime::UNIX_EPOCH),
            current_step: self.current_step,
            stable_replicas: self.stable_replicas,
            canary_replicas: self.canary_replicas,
            looks: self.looks,
            failed_checks: self.failed_checks,
            inconclusive_checks: self.inconclusive_checks,
            last_verdict: self.last_verdict.clone(),
            analyses: self.analyses.clone(),
        }
    }

    fn traffic(&self) -> Traffic {
        Traffic {
            weight: self.weight,
            matches: self.matches.clone(),
            mirror: self.mirror_percent,
        }
    }

    fn put_release(&mut self, r: &Attempt) {
        self.canary_revision = Some(r.canary_revision.clone());
        self.started_at = Some(r.started_at);
        self.current_step = r.current_step;
        self.stable_replicas = r.stable_replicas;
        self.canary_replicas = r.canary_replicas;
        self.looks = r.looks;
        self.failed_checks = r.failed_checks;
        self.inconclusive_checks = r.inconclusive_checks;
        self.last_verdict.clone_from(&r.last_verdict);
        self.analyses.clone_from(&r.analyses);
    }

    fn put_traffic(&mut self, t: &Traffic) {
        self.weight = t.weight;
        self.matches.clone_from(&t.matches);
        self.mirror_percent = t.mirror;
    }
}

impl From<&StateV1alpha1> for State {
    fn from(w: &StateV1alpha1) -> State {
        let release = || w.release(w.canary_revision.as_ref());
        let stage = match w.phase {
            Phase::Initializing => Stage::Initializing,
            Phase::Waiting => Stage::Waiting {
                withdrawn: w.canary_revision.is_some().then(release),
            },
            Phase::Progressing | Phase::Paused => Stage::Progressing(Flight {
                release: release(),
                traffic: w.traffic(),
                step: match w.step_started_at {
                    Some(at) => StepState::Begun {
                        at,
                        passed: w.step_passed,
                    },
                    None => StepState::Pending {
                        waiting_since: w.waiting_since,
                        gate_retry_at: w.gate_retry_at,
                    },
                },
                paused: w.phase == Phase::Paused,
                traffic_since: w.traffic_since,
                last_analysis_at: w.last_analysis_at,
                last_gate_at: w.last_gate_at,
                consecutive_errors: w.consecutive_errors,
            }),
            Phase::Promoting => {
                let release = release();
                Stage::Promoting(Promotion {
                    since: w.promoting_since.unwrap_or(release.started_at),
                    release,
                    traffic: w.traffic(),
                    stall_reported: w.message.starts_with(STALLED),
                })
            }
            Phase::Baking => {
                let release = release();
                Stage::Baking(Bake {
                    since: w.baking_since.unwrap_or(release.started_at),
                    release,
                    previous: w.previous_revision.clone().unwrap_or_default(),
                    last_analysis_at: w.last_analysis_at,
                    consecutive_errors: w.consecutive_errors,
                    rollback: w.rollback_since,
                })
            }
            Phase::Succeeded => Stage::Succeeded(release()),
            Phase::Failed => match w.failed_revision.as_ref().or(w.canary_revision.as_ref()) {
                Some(revision) => Stage::Failed {
                    release: w.release(Some(revision)),
                    aborted_at: w.aborted_at.unwrap_or(DateTime::UNIX_EPOCH),
                    from_weight: w.aborted_from_weight.unwrap_or(0),
                },
                None => Stage::Waiting { withdrawn: None },
            },
        };
        State {
            stage,
            stable_revision: w.stable_revision.clone(),
            steps: w.steps,
            message: w.message.clone(),
        }
    }
}

impl From<StateV1alpha1> for State {
    fn from(w: StateV1alpha1) -> State {
        State::from(&w)
    }
}

impl From<&State> for StateV1alpha1 {
    fn from(s: &State) -> StateV1alpha1 {
        let mut w = StateV1alpha1 {
            phase: s.phase(),
            stable_revision: s.stable_revision.clone(),
            steps: s.steps,
            message: s.message.clone(),
            ..StateV1alpha1::default()
        };
        if let Some(release) = s.release() {
            w.put_release(release);
        }
        match &s.stage {
            Stage::Progressing(f) => {
                w.put_traffic(&f.traffic);
                match f.step {
                    StepState::Begun { at, passed } => {
                        w.step_started_at = Some(at);
                        w.step_passed = passed;
                    }
                    StepState::Pending {
                        waiting_since,
                        gate_retry_at,
                    } => {
                        w.waiting_since = waiting_since;
                        w.gate_retry_at = gate_retry_at;
                    }
                }
                w.traffic_since = f.traffic_since;
                w.last_analysis_at = f.last_analysis_at;
                w.last_gate_at = f.last_gate_at;
                w.consecutive_errors = f.consecutive_errors;
            }
            Stage::Promoting(p) => {
                w.put_traffic(&p.traffic);
                w.promoting_since = Some(p.since);
            }
            Stage::Baking(b) => {
                w.baking_since = Some(b.since);
                w.previous_revision = Some(b.previous.clone());
                w.last_analysis_at = b.last_analysis_at;
                w.consecutive_errors = b.consecutive_errors;
                w.rollback_since = b.rollback;
            }
            Stage::Failed {
                release,
                aborted_at,
                from_weight,
            } => {
                w.failed_revision = Some(release.canary_revision.clone());
                w.aborted_at = Some(*aborted_at);
                w.aborted_from_weight = Some(*from_weight).filter(|w| *w > 0);
            }
            Stage::Initializing | Stage::Waiting { .. } | Stage::Succeeded(_) => {}
        }
        w
    }
}

impl From<State> for StateV1alpha1 {
    fn from(s: State) -> StateV1alpha1 {
        StateV1alpha1::from(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::ReleaseStatus;
    use crate::rollout::machine::{analysis_due, decide, gates_due};
    use crate::rollout::{
        AnalysisOutcome, GateKind, GateResult, HeaderMatch, Observation, Plan, Request,
        RequestAction,
    };
    use chrono::TimeZone;
    use serde_json::json;
    use std::time::Duration;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
    }

    fn round_trips(state: &State) {
        let wire = StateV1alpha1::from(state);
        assert_eq!(&State::from(&wire), state, "through {wire:#?}");
        // And through the status' JSON, as the API server stores it.
        let status = ReleaseStatus {
            state: wire,
            ..ReleaseStatus::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        let back: ReleaseStatus = serde_json::from_value(json).unwrap();
        assert_eq!(&State::from(&back.state), state);
    }

    #[test]
    fn a_bake_and_its_rollback_round_trip() {
        let mut release = Attempt::new("r2", t(0), 4);
        release.current_step = 3;
        release.stable_replicas = None;
        let bake = Bake {
            release,
            since: t(300),
            previous: "r1".into(),
            last_analysis_at: Some(t(360)),
            consecutive_errors: 1,
            rollback: None,
        };
        let state = |bake: &Bake| State {
            stage: Stage::Baking(bake.clone()),
            stable_revision: Some("r2".into()),
            steps: 3,
            message: "baking".into(),
        };
        round_trips(&state(&bake));
        round_trips(&state(&Bake {
            rollback: Some(t(400)),
            ..bake.clone()
        }));
        let wire = StateV1alpha1::from(&state(&bake));
        assert_eq!(wire.phase, Phase::Baking);
        assert_eq!(wire.previous_revision.as_deref(), Some("r1"));
        assert_eq!(wire.baking_since, Some(t(300)));
    }

    /// One reconcile of a scripted rollout: when, the template's revision, the canary's
    /// available replicas, and what else was observed.
    #[derive(Clone, Copy)]
    struct Tick {
        now: i64,
        template: &'static str,
        available: i32,
        /// An analysis due passes (`true`) or is inconclusive.
        verdict: Option<bool>,
        /// The gates due refuse.
        refuse: bool,
        paused: bool,
        request: Option<RequestAction>,
        rolled: bool,
    }

    fn tick(now: i64, template: &'static str, available: i32) -> Tick {
        Tick {
            now,
            template,
            available,
            verdict: None,
            refuse: false,
            paused: false,
            request: None,
            rolled: false,
        }
    }

    /// Every state of rollouts driven through the machine: promoted and baked, aborted,
    /// held by gates, paused, superseded, withdrawn and stalled.
    fn states_of_rollouts() -> Vec<State> {
        let mut plan = Plan::from_weights(&[10, 50, 100], Duration::from_secs(60));
        plan.steps[1].step = crate::rollout::Step::Match {
            matches: vec![Match {
                header: Some(HeaderMatch {
                    name: "X-Canary".into(),
                    exact: None,
                    regex: None,
                }),
                cookie: None,
            }],
        };
        plan.gates = vec![GateKind::ConfirmTrafficIncrease, GateKind::Rollout];
        plan.failure_limit = 3;
        plan.bake = Some(Duration::from_secs(5));
        let mut states = vec![State::default()];
        let mut state = State::default();
        let script = [
            tick(0, "r1", 0),
            tick(1, "r2", 0),
            tick(5, "r2", 2),
            Tick {
                refuse: true,
                ..tick(6, "r2", 4)
            },
            tick(70, "r2", 4),
            Tick {
                verdict: Some(true),
                refuse: true,
                ..tick(130, "r2", 4)
            },
            Tick {
                paused: true,
                ..tick(140, "r2", 4)
            },
            Tick {
                verdict: Some(false),
                paused: true,
                ..tick(200, "r2", 4)
            },
            Tick {
                verdict: Some(true),
                ..tick(260, "r2", 4)
            },
            Tick {
                verdict: Some(true),
                ..tick(330, "r2", 4)
            },
            tick(331, "r2", 4),
            Tick {
                verdict: Some(true),
                ..tick(1000, "r2", 4)
            },
            tick(1700, "r2", 4),
            tick(1705, "r2", 4),
            Tick {
                rolled: true,
                ..tick(1710, "r2", 4)
            },
            tick(1716, "r2", 4),
            tick(1720, "r3", 0),
            tick(1730, "r4", 0),
            tick(1740, "r4", 4),
            Tick {
                request: Some(RequestAction::Abort),
                ..tick(1750, "r4", 4)
            },
            tick(1760, "r5", 0),
            tick(1770, "r2", 0),
            tick(1780, "r6", 0),
            Tick {
                request: Some(RequestAction::PromoteFull),
                ..tick(1790, "r6", 0)
            },
        ];
        for Tick {
            now,
            template,
            available,
            verdict,
            refuse,
            paused,
            request,
            rolled,
        } in script
        {
            let mut o = Observation {
                now: t(now),
                template_revision: template.into(),
                target_replicas: 4,
                autoscaler: None,
                canary_available: available,
                stable_rolled: rolled,
                paused,
                request: request.map(|action| Request {
                    action,
                    reason: String::new(),
                    at: t(now),
                }),
                analysis: None,
                gates: Vec::new(),
            };
            if let (Some(pass), Some(due)) = (verdict, analysis_due(&plan, &state, t(now))) {
                let outcome = if pass {
                    AnalysisOutcome::Pass {
                        summary: "fine".into(),
                    }
                } else {
                    AnalysisOutcome::Inconclusive {
                        summary: "too few requests".into(),
                    }
                };
                o.analysis = Some((due, outcome));
            }
            o.gates = gates_due(&plan, &state, &o)
                .into_iter()
                .map(|kind| GateResult {
                    kind,
                    passed: !refuse,
                    message: "hook said so".into(),
                })
                .collect();
            state = decide(&plan, &state, &o).state;
            states.push(state.clone());
        }
        states
    }

    #[test]
    fn core_to_wire_to_core_is_the_identity() {
        let states = states_of_rollouts();
        let phases: std::collections::BTreeSet<&str> =
            states.iter().map(|s| s.phase().as_str()).collect();
        assert_eq!(phases.len(), Phase::ALL.len(), "every phase: {phases:?}");
        assert!(
            states
                .iter()
                .any(|s| matches!(&s.stage, Stage::Promoting(p) if p.stall_reported)),
            "a stalled promotion"
        );
        assert!(
            states
                .iter()
                .any(|s| matches!(&s.stage, Stage::Waiting { withdrawn: Some(_) })),
            "a withdrawn release"
        );
        assert!(states.iter().any(|s| matches!(
            &s.stage,
            Stage::Progressing(Flight {
                step: StepState::Pending {
                    gate_retry_at: Some(_),
                    ..
                },
                ..
            })
        )));
        assert!(
            states
                .iter()
                .any(|s| matches!(&s.stage, Stage::Failed { from_weight, .. } if *from_weight > 0)),
            "an abort with traffic, whose weight a gradual abort steps down from"
        );
        for state in &states {
            round_trips(state);
        }
    }

    /// A status as the flat state before the typed one wrote it, mid-step.
    fn written_progressing() -> serde_json::Value {
        json!({
            "phase": "Progressing",
            "stableRevision": "5d8f7c",
            "canaryRevision": "7b9e41",
            "currentStep": 1,
            "steps": 3,
            "weight": 50,
            "stableReplicas": 4,
            "startedAt": "2026-09-21T12:00:00Z",
            "stepStartedAt": "2026-09-21T12:06:00Z",
            "trafficSince": "2026-09-21T12:01:00Z",
            "lastAnalysisAt": "2026-09-21T12:06:00Z",
            "looks": 2,
            "stepPassed": false,
            "failedChecks": 0,
            "inconclusiveChecks": 1,
            "consecutiveErrors": 0,
            "lastVerdict": "pass",
            "analyses": [{
                "at": "2026-09-21T12:06:00Z", "step": 0, "weight": 10,
                "verdict": "pass", "summary": "http pass"
            }],
            "message": "step 2/3: 50% of traffic to the canary",
            "stepLabel": "2/3",
            "observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": ""}]
        })
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn read(json: serde_json::Value) -> State {
        let status: ReleaseStatus = serde_json::from_value(json).unwrap();
        State::from(&status.state)
    }

    #[test]
    fn a_status_of_the_flat_format_reads_as_its_stage() {
        let state = read(written_progressing());
        let f = state.flight().expect("in flight");
        assert_eq!(state.phase(), Phase::Progressing);
        assert_eq!(state.stable_revision.as_deref(), Some("5d8f7c"));
        assert_eq!(state.steps, 3);
        assert_eq!(f.release.canary_revision, "7b9e41");
        assert_eq!(f.release.started_at, at("2026-09-21T12:00:00Z"));
        assert_eq!(f.release.current_step, 1);
        assert_eq!(f.release.stable_replicas, Some(4));
        assert_eq!(
            (f.release.looks, f.release.inconclusive_checks),
            (2, 1),
            "counts"
        );
        assert_eq!(f.release.last_verdict.as_deref(), Some("pass"));
        assert_eq!(f.release.analyses.len(), 1);
        assert_eq!(f.traffic.weight, 50);
        assert_eq!(
            f.step,
            StepState::Begun {
                at: at("2026-09-21T12:06:00Z"),
                passed: false
            }
        );
        assert_eq!(f.traffic_since, Some(at("2026-09-21T12:01:00Z")));
        assert!(!f.paused);
        // Written back, it is the same status.
        let mut written = written_progressing();
        for key in ["stepLabel", "observedGeneration", "conditions"] {
            written.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(
            serde_json::to_value(StateV1alpha1::from(&state)).unwrap(),
            written
        );
    }

    #[test]
    fn the_fields_a_phase_does_not_have_are_dropped() {
        // An aborted release as the flat state left it: the step's timers were still there.
        let mut failed = written_progressing();
        let o = failed.as_object_mut().unwrap();
        o.insert("phase".into(), json!("Failed"));
        o.insert("weight".into(), json!(0));
        o.insert("failedRevision".into(), json!("7b9e41"));
        o.insert("abortedAt".into(), json!("2026-09-21T12:07:00Z"));
        o.insert("canaryReplicas".into(), json!(4));
        let state = read(failed);
        let Stage::Failed {
            release,
            aborted_at,
            ..
        } = &state.stage
        else {
            panic!("{state:?}");
        };
        assert_eq!(release.canary_revision, "7b9e41");
        assert_eq!(*aborted_at, at("2026-09-21T12:07:00Z"));
        assert_eq!(release.canary_replicas, Some(4));
        assert_eq!(state.failed_revision(), Some("7b9e41"));
        let wire = serde_json::to_value(StateV1alpha1::from(&state)).unwrap();
        for gone in ["stepStartedAt", "trafficSince", "lastAnalysisAt"] {
            assert!(wire.get(gone).is_none(), "{gone} in {wire}");
        }
        assert_eq!(wire["failedRevision"], "7b9e41");
        assert_eq!(wire["canaryRevision"], "7b9e41");

        // A release withdrawn (the template went back to stable) kept its record.
        let mut withdrawn = written_progressing();
        let o = withdrawn.as_object_mut().unwrap();
        o.insert("phase".into(), json!("Waiting"));
        o.insert("weight".into(), json!(0));
        let state = read(withdrawn);
        let Stage::Waiting {
            withdrawn: Some(release),
        } = &state.stage
        else {
            panic!("{state:?}");
        };
        assert_eq!(release.canary_revision, "7b9e41");
        assert_eq!(state.current_step(), 1);
        assert_eq!(state.step_started_at(), None);
        assert_eq!(state.weight(), 0);
    }

    #[test]
    fn a_stalled_promotion_reads_as_reported() {
        let mut promoting = written_progressing();
        let o = promoting.as_object_mut().unwrap();
        o.insert("phase".into(), json!("Promoting"));
        o.insert("currentStep".into(), json!(3));
        o.insert("promotingSince".into(), json!("2026-09-21T12:10:00Z"));
        let state = read(promoting.clone());
        let Stage::Promoting(p) = &state.stage else {
            panic!("{state:?}");
        };
        assert_eq!(p.since, at("2026-09-21T12:10:00Z"));
        assert_eq!(p.traffic.weight, 50);
        assert!(!p.stall_reported);
        promoting["message"] = json!(format!("{STALLED}the stable Deployment has not finished"));
        let Stage::Promoting(p) = read(promoting).stage else {
            panic!("promoting");
        };
        assert!(p.stall_reported);
    }

    #[test]
    fn invalid_combinations_read_safely() {
        // In flight without a canary revision (as a test fixture writes it): the release's
        // revision is unknown, so the next decision supersedes or withdraws it.
        let state =
            read(json!({"phase": "Progressing", "weight": 10, "currentStep": 0, "steps": 3}));
        let f = state.flight().expect("in flight");
        assert_eq!(f.release.canary_revision, "");
        assert_eq!(f.release.started_at, DateTime::UNIX_EPOCH);
        assert_eq!(
            f.step,
            StepState::Pending {
                waiting_since: None,
                gate_retry_at: None
            }
        );
        assert_eq!(state.weight(), 10);

        // Failed without a revision to keep from being retried: waiting.
        let state = read(json!({"phase": "Failed", "stableRevision": "r1"}));
        assert_eq!(state.stage, Stage::Waiting { withdrawn: None });

        // Failed without an abort time: the scale-down delay is over.
        let state = read(json!({"phase": "Failed", "canaryRevision": "r2"}));
        assert!(matches!(
            state.stage,
            Stage::Failed { aborted_at, .. } if aborted_at == DateTime::UNIX_EPOCH
        ));

        // Waiting, with a step start and an abort time it cannot have.
        let state = read(json!({
            "phase": "Waiting", "stableRevision": "r1",
            "stepStartedAt": "2026-09-21T12:06:00Z", "abortedAt": "2026-09-21T12:07:00Z",
            "failedRevision": "r2", "weight": 30
        }));
        assert_eq!(state.stage, Stage::Waiting { withdrawn: None });
        assert_eq!(state.weight(), 0);

        // Promoting without its start: since the release's.
        let state = read(json!({
            "phase": "Promoting", "canaryRevision": "r2", "startedAt": "2026-09-21T12:00:00Z"
        }));
        let Stage::Promoting(p) = state.stage else {
            panic!("promoting");
        };
        assert_eq!(p.since, at("2026-09-21T12:00:00Z"));

        // Paused, with a step not begun.
        let state = read(
            json!({"phase": "Paused", "canaryRevision": "r2", "waitingSince": "2026-09-21T12:06:00Z"}),
        );
        assert_eq!(state.phase(), Phase::Paused);
        assert_eq!(
            state.flight().map(|f| f.step),
            Some(StepState::Pending {
                waiting_since: Some(at("2026-09-21T12:06:00Z")),
                gate_retry_at: None
            })
        );

        // An empty status: a Release first seen.
        assert_eq!(read(json!({})), State::default());
    }
}
