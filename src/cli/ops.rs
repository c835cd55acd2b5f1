//! The commands on a Release in a cluster: `vigil promote`, `abort`, `pause`, `resume` and
//! `status`. They write requests to the Release (or read it); the controller acts.

use super::exit::{EXIT_FAIL, EXIT_PASS, Failure, cannot_run};
use chrono::Utc;
use clap::Args;
use vigil::cluster::ops;
use vigil::rollout::Phase;

/// The examples of `vigil promote --help`.
pub const PROMOTE_EXAMPLES: &str = "Examples:\n  \
    vigil promote web                 # pass the current step (e.g. a pause without duration)\n  \
    vigil promote web -n shop --full  # skip every remaining step and promote now\n  \
    kubectl vigil promote web         # the same, as a kubectl plugin\n\n\
    The request is written to the Release's status.request; the controller acts on it at its \
    next reconcile.";

/// The examples of `vigil abort --help`.
pub const ABORT_EXAMPLES: &str = "Examples:\n  \
    vigil abort web\n  \
    vigil abort web -n shop --reason \"5xx spike on the dashboard\"\n\n\
    The request is written to the Release's status.request; the controller acts on it at its \
    next reconcile. The aborted revision is not retried until the pod template changes again.";

/// The examples of `vigil pause --help`.
pub const PAUSE_EXAMPLES: &str = "Examples:\n  \
    vigil pause web\n  \
    vigil pause web -n shop\n\n\
    Traffic stays as it is until `vigil resume`.";

/// The examples of `vigil resume --help`.
pub const RESUME_EXAMPLES: &str = "Examples:\n  \
    vigil resume web\n  \
    vigil resume web -n shop";

/// The examples of `vigil status --help`.
pub const STATUS_EXAMPLES: &str = "Examples:\n  \
    vigil status web\n  \
    vigil status web -n shop --watch\n\n\
    With --watch, the status is printed again at every change until the rollout has \
    Succeeded (exit 0) or Failed (exit 1), or until Ctrl-C (exit 0).";

/// A Release, by name and namespace (the arguments of `vigil pause` and `vigil resume`).
#[derive(Args)]
pub struct ReleaseArgs {
    /// The Release's name.
    name: String,
    /// Its namespace; default the current kubeconfig context's.
    #[arg(short, long)]
    namespace: Option<String>,
}

/// Arguments of `vigil promote`.
#[derive(Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    canary: ReleaseArgs,
    /// Skip every remaining step and promote now.
    #[arg(long)]
    full: bool,
}

/// Arguments of `vigil abort`.
#[derive(Args)]
pub struct AbortArgs {
    #[command(flatten)]
    canary: ReleaseArgs,
    /// Why, shown in the Release's status and events.
    #[arg(long, value_name = "TEXT", default_value = "aborted by an operator")]
    reason: String,
}

/// Arguments of `vigil status`.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    canary: ReleaseArgs,
    /// Print the status again at every change, until the rollout ends.
    #[arg(short, long)]
    watch: bool,
}

/// A client from the kubeconfig (or the in-cluster config) and the namespace to use.
async fn kube_client(args: &ReleaseArgs) -> Result<(kube::Client, String), Failure> {
    let client = kube::Client::try_default().await.map_err(|e| {
        cannot_run(format!(
            "cannot configure a Kubernetes client: {e}: set KUBECONFIG or ~/.kube/config to a \
             cluster you can reach (or run inside a cluster)"
        ))
    })?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, namespace))
}

/// Asks the controller to promote a canary.
pub async fn promote(args: PromoteArgs) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args.canary).await?;
    let name = &args.canary.name;
    let done = ops::promote(client, &ns, name, args.full)
        .await
        .map_err(cannot_run)?;
    let what = if args.full {
        "full promotion"
    } else {
        "promotion to the next step"
    };
    report_request(&ns, name, what, &done);
    Ok(EXIT_PASS)
}

/// Asks the controller to abort a release.
pub async fn abort(args: AbortArgs) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args.canary).await?;
    let name = &args.canary.name;
    let done = ops::abort(client, &ns, name, &args.reason)
        .await
        .map_err(cannot_run)?;
    report_request(&ns, name, "abort", &done);
    Ok(EXIT_PASS)
}

fn report_request(ns: &str, name: &str, what: &str, done: &ops::Requested) {
    println!(
        "canary {ns}/{name}: {what} requested (phase {}); the controller acts on it at its next reconcile",
        done.phase.as_str()
    );
    if let Some(old) = &done.replaced {
        println!(
            "  it replaces a pending {:?} request of {}",
            old.action,
            old.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    if done.paused {
        println!("  note: spec.paused is set, so the rollout holds until `vigil resume {name}`");
    }
}

/// Pauses (`paused`) or resumes a canary.
pub async fn set_paused(args: ReleaseArgs, paused: bool) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args).await?;
    let name = &args.name;
    let changed = ops::set_paused(client, &ns, name, paused)
        .await
        .map_err(cannot_run)?;
    match (paused, changed) {
        (true, true) => println!("canary {ns}/{name} paused: `vigil resume {name}` to go on"),
        (true, false) => println!("canary {ns}/{name} was already paused"),
        (false, true) => println!("canary {ns}/{name} resumed"),
        (false, false) => println!("canary {ns}/{name} was not paused"),
    }
    Ok(EXIT_PASS)
}

/// Shows a canary's status, once or at every change.
pub async fn status(args: StatusArgs) -> Result<u8, Failure> {
    let (client, ns) = kube_client(&args.canary).await?;
    let name = &args.canary.name;
    if !args.watch {
        print!(
            "{}",
            ops::status(client, &ns, name).await.map_err(cannot_run)?
        );
        return Ok(EXIT_PASS);
    }
    let mut first = true;
    let watch = ops::watch_status(client, &ns, name, |text| {
        if !first {
            println!();
        }
        first = false;
        println!(
            "[{}]",
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        print!("{text}");
    });
    tokio::select! {
        phase = watch => match phase.map_err(cannot_run)? {
            Phase::Failed => Ok(EXIT_FAIL),
            _ => Ok(EXIT_PASS),
        },
        _ = tokio::signal::ctrl_c() => Ok(EXIT_PASS),
    }
}
