//! From a Release's spec to the core's [`Plan`], the PromQL matchers of both versions, and the
//! revision hash of a pod template.

use super::crd::{AnalysisArg, BlueGreenSpec, MirrorStep, ReleaseSpec, ReleaseStep, TemplateRef};
use crate::rollout::plan::{
    DEFAULT_ABORT_SCALE_DOWN_DELAY, DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_FAILURE_LIMIT,
    DEFAULT_INTERVAL, DEFAULT_PROGRESS_DEADLINE, DEFAULT_SCALE_DOWN_DELAY,
};
use crate::rollout::{
    AnalysisScope, AnalysisSetup, Plan, PlannedStep, Step, Strategy, TemplateUse,
};
use crate::template::selector::Selector;
use crate::template::units::PromDuration;
use std::collections::BTreeMap;
use std::time::Duration;

fn duration(field: &str, value: Option<&str>, default: Duration) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => text
            .parse::<PromDuration>()
            .map(PromDuration::to_std)
            .map_err(|e| format!("{field}: {e}")),
    }
}

fn limit(field: &str, value: Option<i32>, default: u32, least: u32) -> Result<u32, String> {
    match value {
        None => Ok(default),
        Some(n) if n >= least as i32 => Ok(n as u32),
        Some(n) => Err(format!("{field} is {n}; it must be at least {least}")),
    }
}

/// The share of a mirror (`field` names it in the error): 1-100, default 100.
fn mirror_percent(field: &str, m: &MirrorStep) -> Result<u8, String> {
    let percent = m.percent.unwrap_or(100);
    u8::try_from(percent)
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or_else(|| format!("{field} is {percent}; it is a percentage, 1 to 100"))
}

fn weight(field: &str, w: i32) -> Result<u8, String> {
    u8::try_from(w)
        .ok()
        .filter(|w| *w <= 100)
        .ok_or_else(|| format!("{field} is {w}; weights are percentages, 0 to 100"))
}

/// Builds and checks the plan of a Release. The message names the field at fault.
pub fn plan(spec: &ReleaseSpec) -> Result<Plan, String> {
    let analysis = spec.analysis.clone().unwrap_or_default();
    let interval = duration(
        "analysis.interval",
        analysis.interval.as_deref(),
        DEFAULT_INTERVAL,
    )?;
    if interval.is_zero() {
        return Err("analysis.interval must be above zero".into());
    }
    spec.routing.spec()?;
    if !spec.steps.is_empty() && !spec.step_weights.is_empty() {
        return Err("set steps or stepWeights, not both".into());
    }
    let mut steps = Vec::new();
    for (i, w) in spec.step_weights.iter().enumerate() {
        steps.push(PlannedStep {
            step: Step::Weight {
                weight: weight(&format!("stepWeights[{i}]"), *w)?,
            },
            interval,
            min_duration: interval,
        });
    }
    for (i, s) in spec.steps.iter().enumerate() {
        steps.push(planned_step(i, s, interval)?);
    }
    if let Some(bg) = &spec.blue_green {
        if !steps.is_empty() {
            return Err("blueGreen replaces steps and stepWeights: set one of them".into());
        }
        steps = blue_green_steps(bg, interval)?;
        if !analysis.templates.is_empty() {
            return Err(
                "analysis.templates does not apply to blueGreen: name the templates in \
                 blueGreen.prePromotionAnalysis (judged on the preview) or \
                 blueGreen.postPromotionAnalysis (judged after the switch)"
                    .into(),
            );
        }
        if spec.scale_canary_with_weight {
            return Err(
                "scaleCanaryWithWeight does not apply to blueGreen: the new version runs at \
                 full size"
                    .into(),
            );
        }
        if spec.routing.replicas.is_some() {
            return Err(
                "blueGreen cannot use routing.replicas (the full-size new version would take \
                 half the traffic before the switch): use routing.selector to switch the \
                 Service's selector, or a traffic router"
                    .into(),
            );
        }
    }
    for (i, s) in steps.iter().enumerate() {
        let Step::Mirror { percent } = s.step else {
            continue;
        };
        let served = steps[..i].iter().position(|s| {
            matches!(s.step, Step::Match { .. })
                || matches!(s.step, Step::Weight { weight } if weight > 0)
        });
        if let Some(j) = served {
            return Err(format!(
                "step {}: a mirror step must come before users reach the canary (step {} \
                 sends them); mirroring requests it already serves would count them twice",
                i + 1,
                j + 1
            ));
        }
        let routing = &spec.routing;
        if routing.replicas.is_some() || routing.selector.is_some() {
            return Err(format!(
                "step {}: mirror needs a router that copies requests (nginx, gatewayAPI, \
                 istio); routing.{} has no traffic objects",
                i + 1,
                if routing.replicas.is_some() {
                    "replicas"
                } else {
                    "selector"
                }
            ));
        }
        if routing.nginx.is_some() && percent != 100 {
            return Err(format!(
                "step {}: mirror.percent {percent}: ingress-nginx copies every request (its \
                 mirror-target has no sampling); set percent: 100, or use gatewayAPI or istio",
                i + 1
            ));
        }
    }
    if spec.routing.selector.is_some() {
        for (i, s) in steps.iter().enumerate() {
            match s.step {
                Step::Weight { weight } if weight != 0 && weight != 100 => {
                    return Err(format!(
                        "step {}: weight {weight}: routing.selector switches all traffic at \
                         once, so weights must be 0 or 100 (use blueGreen, or a router that \
                         splits traffic: nginx, gatewayAPI, istio, replicas)",
                        i + 1
                    ));
                }
                Step::Match { .. } => {
                    return Err(format!(
                        "step {}: routing.selector cannot route by header or cookie; use a \
                         router that can (nginx, gatewayAPI, istio)",
                        i + 1
                    ));
                }
                _ => {}
            }
        }
    }
    let plan = Plan {
        steps,
        failure_limit: limit(
            "analysis.failureLimit",
            analysis.failure_limit,
            DEFAULT_FAILURE_LIMIT,
            1,
        )?,
        inconclusive_limit: limit(
            "analysis.inconclusiveLimit",
            analysis.inconclusive_limit,
            0,
            0,
        )?,
        consecutive_error_limit: limit(
            "analysis.consecutiveErrorLimit",
            analysis.consecutive_error_limit,
            DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            1,
        )?,
        progress_deadline: duration(
            "progressDeadline",
            spec.progress_deadline.as_deref(),
            DEFAULT_PROGRESS_DEADLINE,
        )?,
        abort_scale_down_delay: duration(
            "abortScaleDownDelay",
            spec.abort_scale_down_delay.as_deref(),
            DEFAULT_ABORT_SCALE_DOWN_DELAY,
        )?,
        abort_steps: match &spec.abort {
            Some(a) => a
                .steps
                .iter()
                .map(|w| {
                    u8::try_from(*w)
                        .map_err(|_| format!("abort.steps: weight {w} is not within 0-100"))
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        },
        abort_step_interval: duration(
            "abort.interval",
            spec.abort.as_ref().and_then(|a| a.interval.as_deref()),
            DEFAULT_INTERVAL,
        )?,
        skip_analysis: spec.skip_analysis,
        bake: match &spec.bake {
            Some(b) => {
                let d = duration("bake.duration", Some(&b.duration), Duration::ZERO)?;
                if d.is_zero() {
                    return Err("bake.duration must be above zero".into());
                }
                Some(d)
            }
            None => None,
        },
        scale_with_weight: spec.scale_canary_with_weight,
        replicas_router: spec.routing.replicas.is_some(),
        strategy: match &spec.blue_green {
            Some(_) => Strategy::BlueGreen,
            None => Strategy::Canary,
        },
        check_split: analysis.check_split.unwrap_or(true),
        gates: gate_kinds(spec)?,
        analyses: analyses(spec),
    };
    plan.check()?;
    if !plan.skip_analysis
        && !plan.background_analysis()
        && !plan.steps.iter().any(|s| s.step == Step::Analysis)
    {
        return Err(
            "the Release has no analysis: add analysis.templates (or analysis steps), or set \
             skipAnalysis: true to advance on time alone"
                .into(),
        );
    }
    Ok(plan)
}

/// What each analysis runs: the background templates with their arguments, and each
/// analysis step's, whose arguments add to and override the background's.
fn analyses(spec: &ReleaseSpec) -> BTreeMap<AnalysisScope, AnalysisSetup> {
    let background = spec.analysis.clone().unwrap_or_default();
    let setup = |templates: &[TemplateRef], args: &[AnalysisArg]| AnalysisSetup {
        templates: templates
            .iter()
            .map(|t| TemplateUse {
                name: t.name.clone(),
                cluster_scope: t.cluster_scope,
            })
            .collect(),
        args: background
            .args
            .iter()
            .chain(args)
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect(),
    };
    let mut out = BTreeMap::new();
    if !background.templates.is_empty() {
        out.insert(AnalysisScope::Background, setup(&background.templates, &[]));
    }
    for (i, step) in spec.steps.iter().enumerate() {
        if let Some(a) = &step.analysis {
            out.insert(AnalysisScope::Step(i), setup(&a.templates, &a.args));
        }
    }
    if let Some(b) = spec.bake.as_ref().filter(|b| !b.templates.is_empty()) {
        out.insert(AnalysisScope::Bake, setup(&b.templates, &b.args));
    }
    // Blue-green: the pre-promotion analysis is the preview's analysis step; the
    // post-promotion analysis runs in the background while the new version has the traffic.
    if let Some(bg) = &spec.blue_green {
        if let Some(a) = &bg.pre_promotion_analysis {
            // The preview's analysis step follows the mirror's, when there is one.
            let index = usize::from(bg.mirror.is_some());
            out.insert(AnalysisScope::Step(index), setup(&a.templates, &a.args));
        }
        if let Some(a) = &bg.post_promotion_analysis {
            out.insert(AnalysisScope::Background, setup(&a.templates, &a.args));
        }
    }
    out
}

/// The steps of a blue-green release: the preview (judged by the pre-promotion analysis,
/// if any), a pause for `vigil promote` without `autoPromotion`, and the switch, held for
/// `scaleDownDelay` while the post-promotion analysis (if any) runs.
fn blue_green_steps(bg: &BlueGreenSpec, interval: Duration) -> Result<Vec<PlannedStep>, String> {
    let mut steps = Vec::new();
    if let Some(m) = &bg.mirror {
        if bg.pre_promotion_analysis.is_none() {
            return Err(
                "blueGreen.mirror copies requests to the preview for the pre-promotion \
                 analysis: add blueGreen.prePromotionAnalysis"
                    .into(),
            );
        }
        let percent = mirror_percent("blueGreen.mirror.percent", m)?;
        // A traffic setting for the preview: it holds through the pre-promotion analysis
        // and goes at the switch.
        steps.push(PlannedStep {
            step: Step::Mirror { percent },
            interval,
            min_duration: Duration::ZERO,
        });
    }
    if let Some(a) = &bg.pre_promotion_analysis {
        if a.templates.is_empty() {
            return Err("blueGreen.prePromotionAnalysis needs at least one template".into());
        }
        steps.push(PlannedStep {
            step: Step::Analysis,
            interval,
            min_duration: Duration::ZERO,
        });
    }
    if bg
        .post_promotion_analysis
        .as_ref()
        .is_some_and(|a| a.templates.is_empty())
    {
        return Err("blueGreen.postPromotionAnalysis needs at least one template".into());
    }
    if !bg.auto_promotion.unwrap_or(true) {
        steps.push(PlannedStep {
            step: Step::Pause { duration: None },
            interval,
            min_duration: Duration::ZERO,
        });
    }
    steps.push(PlannedStep {
        step: Step::Weight { weight: 100 },
        interval,
        min_duration: duration(
            "blueGreen.scaleDownDelay",
            bg.scale_down_delay.as_deref(),
            DEFAULT_SCALE_DOWN_DELAY,
        )?,
    });
    Ok(steps)
}

/// The kinds of gates configured, after checking each webhook.
fn gate_kinds(spec: &ReleaseSpec) -> Result<Vec<crate::rollout::GateKind>, String> {
    let mut kinds = Vec::new();
    for (i, hook) in spec.webhooks.iter().enumerate() {
        let field = format!("webhooks[{i}] ({})", hook.name);
        let url = reqwest::Url::parse(&hook.url)
            .map_err(|e| format!("{field}.url {:?}: {e}", hook.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{field}.url must be http:// or https://"));
        }
        duration(
            &format!("{field}.timeout"),
            hook.timeout.as_deref(),
            Duration::ZERO,
        )?;
        if !kinds.contains(&hook.kind) {
            kinds.push(hook.kind);
        }
    }
    kinds.sort();
    Ok(kinds)
}

fn planned_step(i: usize, s: &ReleaseStep, interval: Duration) -> Result<PlannedStep, String> {
    let field = |name: &str| format!("steps[{i}].{name}");
    let interval = duration(&field("interval"), s.interval.as_deref(), interval)?;
    let set = [
        s.weight.is_some(),
        s.pause.is_some(),
        s.analysis.is_some(),
        s.replicas.is_some(),
        s.matches.is_some(),
        s.mirror.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if set != 1 {
        return Err(format!(
            "steps[{i}] has {set} of weight, pause, analysis, replicas, match, mirror; it needs exactly one"
        ));
    }
    let (step, default_min) = if let Some(w) = s.weight {
        (
            Step::Weight {
                weight: weight(&field("weight"), w)?,
            },
            interval,
        )
    } else if let Some(p) = &s.pause {
        let duration = match p.duration.as_deref() {
            None => None,
            Some(d) => Some(duration(&field("pause.duration"), Some(d), Duration::ZERO)?),
        };
        (Step::Pause { duration }, Duration::ZERO)
    } else if let Some(a) = &s.analysis {
        if a.templates.is_empty() {
            return Err(format!("{} needs at least one template", field("analysis")));
        }
        (Step::Analysis, Duration::ZERO)
    } else if let Some(n) = s.replicas {
        (Step::Replicas { count: n }, Duration::ZERO)
    } else if let Some(m) = &s.mirror {
        let percent = mirror_percent(&field("mirror.percent"), m)?;
        (Step::Mirror { percent }, interval)
    } else {
        let matches = s.matches.clone().unwrap_or_default();
        (Step::Match { matches }, interval)
    };
    Ok(PlannedStep {
        step,
        interval,
        min_duration: duration(
            &field("minDuration"),
            s.min_duration.as_deref(),
            default_min,
        )?,
    })
}

/// The name of the canary Deployment of a target.
pub fn canary_deployment_name(target: &str) -> String {
    format!("{target}-canary")
}

/// The name of the canary Service: `service.canaryName`, else for blue-green
/// `blueGreen.previewService` or `<service>-preview`, else `<service>-canary`.
pub fn canary_service_name(spec: &ReleaseSpec) -> String {
    if let Some(name) = &spec.service.canary_name {
        return name.clone();
    }
    match &spec.blue_green {
        Some(bg) => bg
            .preview_service
            .clone()
            .unwrap_or_else(|| format!("{}-preview", spec.service.name)),
        None => format!("{}-canary", spec.service.name),
    }
}

/// The PromQL matchers the Release sets for the stable version and the canary
/// (`analysis.stableMatchers`/`canaryMatchers`), if it sets them; both or neither. Without
/// them the router's defaults apply (`cluster::routers::matchers`).
pub fn matchers_set(spec: &ReleaseSpec) -> Result<Option<(Selector, Selector)>, String> {
    let analysis = spec.analysis.clone().unwrap_or_default();
    match (&analysis.stable_matchers, &analysis.canary_matchers) {
        (Some(stable), Some(canary)) => Ok(Some((
            parse_matchers("stableMatchers", stable)?,
            parse_matchers("canaryMatchers", canary)?,
        ))),
        (None, None) => Ok(None),
        _ => Err("set both analysis.stableMatchers and analysis.canaryMatchers, or neither".into()),
    }
}

/// Matchers of `analysis.<field>` (or a router's default for it), parsed.
pub fn parse_matchers(field: &str, text: &str) -> Result<Selector, String> {
    text.parse::<Selector>()
        .map_err(|e| format!("analysis.{field} {text:?}: {e}"))
}

/// A short, stable hash of a pod template: the revision vigil records. The same template
/// always gives the same hash, across restarts and versions of vigil (FNV-1a over the
/// template's JSON, whose key order serde fixes).
pub fn revision(template: &serde_json::Value) -> String {
    let text = template.to_string();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// A Release spec for tests of the plan and of what builds on it.
#[cfg(test)]
pub(crate) mod testing {
    use crate::api::crd::{Release, ReleaseSpec};

    /// A Release routed by ingress-nginx, with background analysis and no steps yet.
    pub const BASE: &str = "apiVersion: vigil.dev/v1alpha1
kind: Release
metadata: {name: web, namespace: shop}
spec:
  targetRef: {name: web}
  service: {name: web, port: 80}
  routing: {nginx: {ingress: web}}
  analysis:
    templates: [{name: ingress-nginx}]
    interval: 30s
";

    /// The spec of a Release document.
    pub fn canary(yaml: &str) -> ReleaseSpec {
        let c: Release = serde_saphyr::from_str(yaml).unwrap();
        c.spec
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{BASE, canary};
    use super::*;

    #[test]
    fn a_gradual_abort_is_planned_and_bad_steps_are_named() {
        let with = |abort: &str| {
            plan(&canary(&format!(
                "{BASE}  stepWeights: [10, 50, 100]\n  abort: {abort}\n"
            )))
        };
        let p = with("{steps: [50, 10, 0], interval: 30s}").unwrap();
        assert_eq!(p.abort_steps, [50, 10, 0]);
        assert_eq!(p.abort_step_interval, Duration::from_secs(30));
        assert_eq!(
            with("{steps: [50, 0]}").unwrap().abort_step_interval,
            DEFAULT_INTERVAL
        );
        assert!(
            plan(&canary(&format!("{BASE}  stepWeights: [10]\n")))
                .unwrap()
                .abort_steps
                .is_empty()
        );
        let err = with("{steps: [-5, 0]}").unwrap_err();
        assert!(err.contains("abort.steps: weight -5"), "{err}");
        let err = with("{steps: [10, 50, 0]}").unwrap_err();
        assert!(err.contains("must decrease"), "{err}");
        let err = with("{steps: [50, 0], interval: soon}").unwrap_err();
        assert!(err.starts_with("abort.interval"), "{err}");
    }

    /// A blue-green Release routed by `routing`, with `blue_green` as its `blueGreen` body.
    fn blue_green(routing: &str, blue_green: &str) -> Result<Plan, String> {
        let yaml = BASE.replace("{nginx: {ingress: web}}", routing).replace(
            "  analysis:\n    templates: [{name: ingress-nginx}]\n",
            "  analysis:\n",
        );
        let spec = canary(&format!("{yaml}  blueGreen: {blue_green}\n"));
        plan(&spec)
    }

    #[test]
    fn blue_green_is_planned_as_preview_pause_and_switch() {
        let pre = "prePromotionAnalysis: {templates: [{name: smoke}]}";
        let post = "postPromotionAnalysis: {templates: [{name: ingress-nginx}], args: [{name: a, value: b}]}";
        let p = blue_green(
            "{selector: {}}",
            &format!("{{{pre}, {post}, autoPromotion: false, scaleDownDelay: 2m}}"),
        )
        .unwrap();
        assert_eq!(p.strategy, Strategy::BlueGreen);
        let steps: Vec<&Step> = p.steps.iter().map(|s| &s.step).collect();
        assert_eq!(
            steps,
            [
                &Step::Analysis,
                &Step::Pause { duration: None },
                &Step::Weight { weight: 100 }
            ]
        );
        assert_eq!(p.steps[2].min_duration, Duration::from_secs(120));
        assert_eq!(p.steps[2].interval, Duration::from_secs(30));
        assert_eq!(
            p.analysis(AnalysisScope::Step(0)).templates[0].name,
            "smoke"
        );
        let setup = p.analysis(AnalysisScope::Background);
        assert_eq!(setup.templates[0].name, "ingress-nginx");
        assert_eq!(setup.args.get("a").map(String::as_str), Some("b"));
        // Automatic promotion, 30 s by default; no analysis needs skipAnalysis.
        let p = blue_green("{nginx: {ingress: web}}", &format!("{{{post}}}")).unwrap();
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].min_duration, DEFAULT_SCALE_DOWN_DELAY);
        let err = blue_green("{nginx: {ingress: web}}", "{}").unwrap_err();
        assert!(err.contains("has no analysis"), "{err}");
    }

    #[test]
    fn blue_green_can_mirror_users_requests_to_the_preview() {
        let pre = "prePromotionAnalysis: {templates: [{name: smoke}]}";
        let p = blue_green(
            "{istio: {virtualService: web}}",
            &format!("{{{pre}, mirror: {{percent: 20}}}}"),
        )
        .unwrap();
        let steps: Vec<&Step> = p.steps.iter().map(|s| &s.step).collect();
        assert_eq!(
            steps,
            [
                &Step::Mirror { percent: 20 },
                &Step::Analysis,
                &Step::Weight { weight: 100 }
            ]
        );
        assert_eq!(
            p.analysis(AnalysisScope::Step(1)).templates[0].name,
            "smoke"
        );
        assert!(p.analysis(AnalysisScope::Step(0)).templates.is_empty());
        let err = blue_green("{selector: {}}", &format!("{{{pre}, mirror: {{}}}}")).unwrap_err();
        assert!(err.contains("mirror needs a router"), "{err}");
        let err = blue_green(
            "{istio: {virtualService: web}}",
            "{mirror: {}, postPromotionAnalysis: {templates: [{name: x}]}}",
        )
        .unwrap_err();
        assert!(err.contains("add blueGreen.prePromotionAnalysis"), "{err}");
    }

    #[test]
    fn blue_green_names_the_preview_service_and_refuses_what_does_not_fit() {
        let yaml = format!("{BASE}  blueGreen: {{}}\n  skipAnalysis: true\n");
        let err = plan(&canary(&yaml)).unwrap_err();
        assert!(err.contains("analysis.templates does not apply"), "{err}");
        let spec = canary(&yaml);
        assert_eq!(canary_service_name(&spec), "web-preview");
        let named =
            canary(&yaml.replace("blueGreen: {}", "blueGreen: {previewService: web-green}"));
        assert_eq!(canary_service_name(&named), "web-green");
        let err = blue_green("{replicas: {}}", "{}").unwrap_err();
        assert!(err.contains("routing.selector"), "{err}");
        let both = canary(&format!("{yaml}  stepWeights: [10]\n"));
        assert!(plan(&both).unwrap_err().contains("replaces steps"));
        // The selector router switches all or nothing.
        let sel = canary(&format!(
            "{}  stepWeights: [10, 100]\n",
            BASE.replace("{nginx: {ingress: web}}", "{selector: {}}")
        ));
        let err = plan(&sel).unwrap_err();
        assert!(err.contains("weight 10: routing.selector"), "{err}");
        let sel = canary(&format!(
            "{}  stepWeights: [0, 100]\n",
            BASE.replace("{nginx: {ingress: web}}", "{selector: {}}")
        ));
        assert!(plan(&sel).is_ok());
    }

    #[test]
    fn a_mirror_step_is_planned_where_the_router_can_copy_requests() {
        let with = |routing: &str, mirror: &str| {
            plan(&canary(&format!(
                "{}  steps:\n    - mirror: {mirror}\n    - weight: 10\n",
                BASE.replace("{nginx: {ingress: web}}", routing)
            )))
        };
        let p = with("{istio: {virtualService: web}}", "{percent: 20}").unwrap();
        assert_eq!(p.steps[0].step, Step::Mirror { percent: 20 });
        assert_eq!(p.steps[0].min_duration, Duration::from_secs(30));
        let p = with("{nginx: {ingress: web}}", "{}").unwrap();
        assert_eq!(p.steps[0].step, Step::Mirror { percent: 100 });
        let err = with("{nginx: {ingress: web}}", "{percent: 20}").unwrap_err();
        assert!(err.contains("ingress-nginx copies every request"), "{err}");
        let err = with("{replicas: {}}", "{}").unwrap_err();
        assert!(
            err.contains("routing.replicas has no traffic objects"),
            "{err}"
        );
        let err = with("{gatewayAPI: {httpRoute: r}}", "{percent: 0}").unwrap_err();
        assert!(err.contains("steps[0].mirror.percent is 0"), "{err}");
        let late = canary(&format!(
            "{}  steps:\n    - weight: 10\n    - mirror: {{}}\n",
            BASE.replace("{nginx: {ingress: web}}", "{istio: {virtualService: web}}")
        ));
        let err = plan(&late).unwrap_err();
        assert!(
            err.contains("step 2: a mirror step must come before"),
            "{err}"
        );
    }

    #[test]
    fn step_weights_become_weight_steps_with_the_interval() {
        let spec = canary(&format!("{BASE}  stepWeights: [10, 50, 100]\n"));
        let p = plan(&spec).unwrap();
        assert_eq!(p.steps.len(), 3);
        assert_eq!(p.steps[1].step, Step::Weight { weight: 50 });
        assert_eq!(p.steps[1].interval, Duration::from_secs(30));
        assert_eq!(p.failure_limit, 1);
        assert!(p.background_analysis());
    }

    #[test]
    fn explicit_steps_with_their_own_timing() {
        let spec = canary(&format!(
            "{BASE}  steps:\n  - weight: 20\n    interval: 2m\n    minDuration: 10m\n  - pause: {{}}\n  - pause: {{duration: 1h}}\n  - replicas: 3\n  - match: [{{header: {{name: X-Canary, exact: 'yes'}}}}]\n  - analysis: {{templates: [{{name: t, clusterScope: true}}]}}\n"
        ));
        let p = plan(&spec).unwrap();
        assert_eq!(p.steps[0].interval, Duration::from_secs(120));
        assert_eq!(p.steps[0].min_duration, Duration::from_secs(600));
        assert_eq!(p.steps[1].step, Step::Pause { duration: None });
        assert_eq!(
            p.steps[2].step,
            Step::Pause {
                duration: Some(Duration::from_secs(3600))
            }
        );
        assert_eq!(p.steps[3].step, Step::Replicas { count: 3 });
        assert!(matches!(p.steps[4].step, Step::Match { .. }));
        assert_eq!(p.steps[5].step, Step::Analysis);
    }

    #[test]
    fn bad_specs_are_refused_with_the_field() {
        let cases = [
            ("  stepWeights: [10, 150]\n", "stepWeights[1] is 150"),
            ("  steps: [{weight: 10, pause: {}}]\n", "steps[0] has 2 of"),
            (
                "  steps: [{weight: 10, interval: soon}]\n",
                "steps[0].interval",
            ),
            ("", "no steps"),
            ("  stepWeights: [10]\n  steps: [{weight: 10}]\n", "not both"),
        ];
        for (extra, want) in cases {
            let err = plan(&canary(&format!("{BASE}{extra}"))).unwrap_err();
            assert!(err.contains(want), "{extra:?}: {err}");
        }
        let no_analysis = BASE.replace("    templates: [{name: ingress-nginx}]\n", "");
        let err = plan(&canary(&format!("{no_analysis}  stepWeights: [10]\n"))).unwrap_err();
        assert!(err.contains("skipAnalysis"), "{err}");
    }

    #[test]
    fn revision_is_stable_and_sensitive() {
        let a = serde_json::json!({"spec": {"containers": [{"image": "web:1"}]}});
        let b = serde_json::json!({"spec": {"containers": [{"image": "web:2"}]}});
        assert_eq!(revision(&a), revision(&a.clone()));
        assert_ne!(revision(&a), revision(&b));
        assert_eq!(revision(&a).len(), 10);
    }
}
