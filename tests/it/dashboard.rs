//! The live dashboard in real headless Chromium (driven over the DevTools protocol), served
//! by the controller's server while the controller runs against the fake API server and a
//! real Prometheus: the overview with Releases in several phases, a rollout advancing on an
//! open page (the DOM changes, the page is not reloaded), an aborted rollout's page with
//! its reason and charts, and the operator buttons: hidden for a read-only token, a promote
//! clicked through for a writer. Screenshots go to `target/test-artifacts/dashboard-*.png`.

use crate::common::browser::artifacts_dir;
use crate::common::cdp::Browser;
use crate::common::controller::{
    Controller, NS, app, clock, phase_is, release_app, releases, setup, versions, wait_for,
};
use crate::common::fake_kube::FakeKube;
use crate::common::{PromServer, Version, openmetrics};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil::runtime::dashboard::Dashboard;
use vigil::runtime::dashboard::store::{Evidence, EvidenceObserver, watch_releases};
use vigil::runtime::metrics::Metrics;
use vigil::runtime::server::{self, ApiState, AuthConfig, ServerState};
use vigil::source::prometheus::{Prometheus, PrometheusConfig};

const WRITER: &str = "dashboard-writer-token";
const READER: &str = "dashboard-reader-token";

/// The controller and its server with the dashboard, over Prometheus and the fake cluster.
struct Served {
    url: String,
    prom: PromServer,
    fake: FakeKube,
    controller: Controller,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A Release's status by name.
fn status_of(fake: &FakeKube, name: &str) -> Value {
    fake.get(&releases(), NS, name)
        .and_then(|r| r.get("status").cloned())
        .unwrap_or(Value::Null)
}

async fn wait_status(fake: &FakeKube, name: &str, what: &str, check: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    while !check(&status_of(fake, name)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name}: timed out waiting for {what}: {}",
            status_of(fake, name)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Job `api`'s versions: a canary with five times the errors and twice the latency.
fn bad_api() -> Vec<Version> {
    let mut v = versions(0.10, 0.2);
    for (version, seed) in v.iter_mut().zip([3, 4]) {
        version.job = "api";
        version.seed = seed;
    }
    v
}

/// Steps that hold each weight `hold` (virtual time) at least.
fn slow_steps(hold: &str) -> Value {
    json!({
        "stepWeights": null,
        "steps": [{"weight": 10, "minDuration": hold}, {"weight": 50, "minDuration": hold}, {"weight": 100}],
    })
}

async fn serve(web: Value, others: &[(&str, Value)]) -> Served {
    let mut history = versions(0.02, 0.1);
    history.extend(bad_api());
    let prom = PromServer::start(&openmetrics(&history));
    let fake = FakeKube::start().await;
    setup(&fake, web);
    for (name, extra) in others {
        app(&fake, name, extra.clone());
    }
    let evidence = Arc::new(Evidence::new());
    let clock = clock();
    let controller = Controller::observed(
        &fake,
        &prom.url,
        clock,
        Arc::new(EvidenceObserver(evidence.clone())),
    );
    wait_for(
        &fake,
        "adoption",
        Duration::from_secs(10),
        phase_is("Waiting"),
    )
    .await;
    for (name, _) in others {
        wait_status(&fake, name, "adoption", |s| s["phase"] == "Waiting").await;
    }
    let auth = AuthConfig {
        token: Some(WRITER.into()),
        read_token: Some(READER.into()),
        ..AuthConfig::default()
    };
    let source = Prometheus::new(PrometheusConfig::new(&prom.url)).expect("prometheus client");
    let api = ApiState::new(fake.client(), Arc::new(source), auth.clone());
    let dashboard = Dashboard {
        releases: watch_releases(fake.client(), Some(NS), None),
        evidence: Some(evidence),
        auth,
        insecure_no_auth: false,
        prometheus_ui: Some(prom.url.clone()),
        clock,
        poll_ms: 500,
    };
    let state = ServerState::new(Arc::new(Metrics::new()))
        .with_api(api)
        .with_dashboard(dashboard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, server::router(state), async move {
        let _ = stopped.await;
    }));
    Served {
        url,
        prom,
        fake,
        controller,
        _stop: stop,
    }
}

/// Signs in through the form with `token`; lands on `next`.
fn sign_in(browser: &mut Browser, url: &str, token: &str, next: &str) {
    browser.open(&format!("{url}/login?next={next}"));
    browser.eval(&format!(
        "window.__vigil_old = true; document.querySelector('input[name=token]').value = '{token}'; \
         document.querySelector('.login form').submit(); true"
    ));
    browser.wait_loaded("the page after signing in");
    let path = browser.eval("location.pathname");
    assert_eq!(path, json!(next), "signed in");
}

fn text(browser: &mut Browser, selector: &str) -> String {
    browser
        .eval(&format!(
            "(document.querySelector('{selector}') || {{}}).textContent || ''"
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn count(browser: &mut Browser, selector: &str) -> u64 {
    browser
        .eval(&format!("document.querySelectorAll('{selector}').length"))
        .as_u64()
        .unwrap_or(0)
}

fn shot(browser: &mut Browser, name: &str) {
    browser.screenshot(&artifacts_dir().join(format!("dashboard-{name}.png")));
}

/// Runs the blocking browser session beside the controller.
async fn in_browser<T: Send + 'static>(f: impl FnOnce(&mut Browser) -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::start(1280, 900);
        let out = f(&mut browser);
        assert!(
            browser.problems.is_empty(),
            "the pages reported problems: {:#?}",
            browser.problems
        );
        out
    })
    .await
    .expect("the browser session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_and_release_pages_follow_rollouts_live() {
    let served = serve(slow_steps("8m"), &[("api", json!({})), ("cart", json!({}))]).await;
    let fake = &served.fake;
    release_app(fake, "api", "api:2").await;
    wait_status(fake, "api", "the abort", |s| s["phase"] == "Failed").await;
    release_app(fake, "web", "web:2").await;
    wait_status(fake, "web", "the first step", |s| s["weight"] == 10).await;

    let url = served.url.clone();
    let prom = served.prom.url.clone();
    in_browser(move |b| {
        // A rollout that advances while its page is open.
        sign_in(b, &url, WRITER, &format!("/releases/{NS}/web"));
        let loaded = b.eval("document.body.dataset.loadedAt");
        let weight = text(b, "#weight");
        b.wait(
            "the next step on the open page",
            &format!("document.querySelector('#weight').textContent !== '{weight}'"),
            Duration::from_secs(40),
        );
        assert_eq!(
            b.eval("document.body.dataset.loadedAt"),
            loaded,
            "not reloaded"
        );
        assert!(b.eval("Number(document.body.dataset.updates)").as_u64() > Some(0));
        b.wait(
            "the evidence's charts",
            "document.querySelectorAll('#evidence svg.chart .data').length > 0",
            Duration::from_secs(20),
        );
        let link = b.eval("document.querySelector('#evidence a.graph').href");
        assert!(
            link.as_str()
                .is_some_and(|l| l.starts_with(&format!("{prom}/graph?g0.expr="))),
            "{link}"
        );
        assert!(text(b, "#evidence").contains("e-value"));
        shot(b, "release");

        b.open(&format!("{url}/"));
        b.wait(
            "three Releases",
            "document.querySelectorAll('#rows tr[data-release]').length === 3",
            Duration::from_secs(10),
        );
        let rows = b.eval(
            "Array.from(document.querySelectorAll('#rows tr[data-release]')).map(r => \
             [r.dataset.release, r.dataset.phase, r.querySelector('.reason').className, r.querySelector('.reason').textContent])",
        );
        let phase_of = |name: &str| {
            rows.as_array()
                .and_then(|rows| rows.iter().find(|r| r[0] == format!("{NS}/{name}")))
                .cloned()
                .unwrap_or_else(|| panic!("no row for {name}: {rows}"))
        };
        assert!(
            ["Progressing", "Promoting", "Succeeded"].contains(&phase_of("web")[1].as_str().unwrap_or("")),
            "{rows}"
        );
        assert_eq!(phase_of("cart")[1], "Waiting", "{rows}");
        let api = phase_of("api");
        assert_eq!(api[1], "Failed", "{rows}");
        assert_eq!(api[2], "reason failed", "the reason is flagged: {rows}");
        assert!(api[3].as_str().is_some_and(|r| r.contains("error-rate")), "{rows}");
        shot(b, "overview");
        b.color_scheme("dark");
        shot(b, "overview-dark");
        b.color_scheme("light");
        b.viewport(390, 844, true);
        shot(b, "overview-phone");
        b.viewport(1280, 900, false);

        // The phase filter: choosing one reloads the overview with it.
        b.eval(
            "window.__vigil_old = true; const s = document.querySelector('select[name=phase]'); \
             s.value = 'Failed'; s.dispatchEvent(new Event('change', {bubbles: true})); true",
        );
        b.wait_loaded("the filtered overview");
        assert_eq!(count(b, "#rows tr[data-release]"), 1);
        assert_eq!(text(b, "#rows tr[data-release] td"), "api");

        // The aborted rollout: its reason, its decisions and its charts.
        b.open(&format!("{url}/releases/{NS}/api"));
        assert_eq!(text(b, "#phase"), "Failed");
        assert!(text(b, "#message").contains("error-rate"));
        assert!(count(b, "#timeline tr.mark-abort") >= 1, "the abort in the timeline");
        assert!(count(b, "#evidence svg.chart") >= 4, "charts of the analysis");
        assert!(text(b, "#evidence").contains("HIGH"));
        shot(b, "aborted");
    })
    .await;
    served.controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons_follow_the_credential_and_a_promote_goes_through() {
    // Held far longer than the test runs (5 real minutes at the test clock's speed): only
    // the promote may take the rollout past 10%. With "30m" (15 real seconds) a slow
    // browser session let the step end by itself before the writer's page was checked.
    let served = serve(slow_steps("10h"), &[]).await;
    let fake = &served.fake;
    release_app(fake, "web", "web:2").await;
    wait_status(fake, "web", "the first step", |s| s["weight"] == 10).await;
    let url = served.url.clone();
    let page = format!("/releases/{NS}/web");
    in_browser(move |b| {
        sign_in(b, &url, READER, &page);
        assert!(text(b, "#who").contains("read-only"));
        assert_eq!(count(b, "button[data-action]"), 0, "no buttons for a reader");
        let refused = b.eval(
            "fetch('/v1/releases/shop/web/promote', {method: 'POST', credentials: 'same-origin'}).then(r => r.status)",
        );
        assert_eq!(refused, json!(403), "the reader's cookie may not act");
        // Chromium logs the refused request; that is the point here.
        b.problems.retain(|p| !p.contains("403"));
        shot(b, "read-only");

        b.eval("window.__vigil_old = true; document.querySelector('header.bar form').submit(); true");
        b.wait_loaded("the sign-in page after signing out");
        sign_in(b, &url, WRITER, &page);
        assert_eq!(count(b, "button[data-action]"), 4);
        assert_eq!(text(b, "#weight"), "10%");
        b.eval("document.querySelector('button[data-action=promote]').click(); true");
        b.wait(
            "the promote's answer",
            "document.querySelector('#action-result').dataset.status === '202'",
            Duration::from_secs(10),
        );
        b.wait(
            "the next weight on the page",
            "document.querySelector('#weight').textContent === '50%'",
            Duration::from_secs(20),
        );
        shot(b, "promoted");
    })
    .await;
    let weight = status_of(fake, "web")["weight"].as_u64();
    assert!(
        weight >= Some(50),
        "promoted past the first step: {weight:?}"
    );
    served.controller.stop().await;
}

/// Kills the child on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_dashboard_serves_the_kubeconfig_cluster_on_this_machine_only() {
    let fake = FakeKube::start().await;
    setup(&fake, json!({}));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let port = crate::common::free_port();
    let _child = Killed(
        crate::common::vigil()
            .args([
                "dashboard",
                "-n",
                NS,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("vigil dashboard"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    let overview = loop {
        if let Ok(r) = http.get(format!("{url}/")).send().await
            && let Ok(body) = r.text().await
            && body.contains("data-release=\"shop/web\"")
        {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "vigil dashboard never listed the Release"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        overview.contains("signed in: may act"),
        "the kubeconfig's user acts"
    );
    let page = http
        .get(format!("{url}/releases/{NS}/web"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("The evidence of each analysis is kept in memory by the controller"));
    let pause = format!("{url}/v1/releases/{NS}/web/pause");
    for (name, value, expected, why) in [
        (
            "Origin",
            "http://evil.example".to_string(),
            403,
            "another site's page may not act",
        ),
        (
            "Host",
            format!("evil.example:{port}"),
            403,
            "nor one whose name points here",
        ),
        ("Origin", url.clone(), 202, "its own page acts"),
    ] {
        let answer = http
            .post(&pause)
            .header(name, value)
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status(), expected, "{why}");
    }
    let release = fake.get(&releases(), NS, "web").expect("release");
    assert_eq!(release["spec"]["paused"], true);
}
