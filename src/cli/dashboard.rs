//! `vigil dashboard`: the live dashboard of `vigil run`, served on this machine from the
//! kubeconfig's cluster (as `kubectl argo rollouts dashboard` does).

use super::exit::{EXIT_PASS, Failure, cannot_run, tokio_main, usage};
use clap::Args;

/// The examples of `vigil dashboard --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil dashboard                       # every namespace, at http://127.0.0.1:3100/\n  \
    vigil dashboard -n shop --listen 127.0.0.1:8081\n  \
    kubectl vigil dashboard --prometheus-ui-url http://localhost:9090\n\n\
    The pages are vigil run's: every Release, each with its timeline and status. The evidence \
    and charts of each analysis live in the controller's memory: port-forward to vigil run for \
    those (docs/dashboard.md). The buttons act with your kubeconfig's credentials, as vigil \
    promote does; the server answers this machine only.";

/// Arguments of `vigil dashboard`.
#[derive(Args)]
pub struct DashboardArgs {
    /// Only this namespace's Releases (default: all namespaces).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Where to serve: a loopback address.
    #[arg(long, default_value = "127.0.0.1:3100")]
    listen: std::net::SocketAddr,
    /// Prometheus's web UI, for links from queries to its graph page.
    #[arg(long, value_name = "URL", env = "VIGIL_PROMETHEUS_UI_URL")]
    prometheus_ui_url: Option<String>,
}

/// Serves until Ctrl-C.
pub fn run(args: DashboardArgs) -> Result<u8, Failure> {
    let prometheus_ui = args
        .prometheus_ui_url
        .as_deref()
        .map(super::run::prometheus_ui)
        .transpose()?;
    if !args.listen.ip().is_loopback() {
        return Err(usage(format!(
            "--listen {}: give a loopback address (127.0.0.1:PORT): the dashboard acts with your \
             kubeconfig's credentials",
            args.listen
        )));
    }
    tokio_main(async move {
        let client = kube::Client::try_default().await.map_err(|e| {
            cannot_run(format!(
                "cannot configure a Kubernetes client: {e}: set KUBECONFIG or ~/.kube/config to a \
                 cluster you can reach"
            ))
        })?;
        vigil::runtime::dashboard::serve_local(
            client,
            args.namespace,
            args.listen,
            prometheus_ui,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |addr| eprintln!("vigil dashboard: http://{addr}/ (Ctrl-C stops it)"),
        )
        .await
        .map(|()| EXIT_PASS)
        .map_err(cannot_run)
    })
}
