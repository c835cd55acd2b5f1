//! Which notifications go where: per Release (`spec.notifications`, secrets in Kubernetes
//! Secrets of the Release's namespace) and cluster-wide (`vigil run --notify-config FILE`,
//! secrets in files, typically a mounted Secret). Secrets are read at send time, so a
//! rotated Secret takes effect without a restart, and are never written to logs.

use super::{EventName, Format, Notification, ProviderKind, Secrets, Severity, parse_url};
use k8s_openapi::api::core::v1::Secret;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default key of the webhook URL in a Secret.
pub const DEFAULT_URL_KEY: &str = "url";
/// The default key of the signing secret in a Secret (optional unless named).
pub const DEFAULT_SECRET_KEY: &str = "secret";

/// One receiver of a Release's notifications: an entry of `spec.notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseNotification {
    /// The receiving service: slack, teams, discord, dingtalk, feishu or webhook.
    pub provider: ProviderKind,
    /// The Secret, in the Release's namespace, holding the webhook URL and the optional
    /// signing secret. Never put them in the Release itself.
    pub secret_ref: NotificationSecretRef,
    /// The events to send (`started`, `step-advanced`, `paused`, `resumed`,
    /// `analysis-failed`, `analysis-inconclusive`, `analysis-error`, `aborted`, `promoting`,
    /// `succeeded`, `superseded`, `stalled`, `adopted`); default all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventName>,
    /// Send only events at least this severe: info (default), warning or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Feishu only: `card` (default) or `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
}

/// Where a receiver's URL and signing secret are, in a Secret of the Release's namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSecretRef {
    /// The Secret's name.
    pub name: String,
    /// The key of the webhook URL; default `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_key: Option<String>,
    /// The key of the signing secret; default `secret`, used when present. When set, the
    /// key must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

/// The file of `vigil run --notify-config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyConfig {
    /// Receivers of every Release's notifications.
    #[serde(default)]
    pub notifications: Vec<ClusterNotification>,
}

/// A receiver of every Release's notifications, with its secrets in files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterNotification {
    /// The receiving service.
    pub provider: ProviderKind,
    /// A file holding the webhook URL (e.g. a key of a mounted Secret).
    pub url_file: PathBuf,
    /// A file holding the signing secret, if the receiver checks signatures.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The events to send; default all.
    #[serde(default)]
    pub events: Vec<EventName>,
    /// Send only events at least this severe; default info.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// Feishu only: card (default) or text.
    #[serde(default)]
    pub format: Option<Format>,
}

/// Which notifications a receiver wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    /// The events; empty means all.
    pub events: Vec<EventName>,
    /// The least severity.
    pub min_severity: Severity,
}

impl Filter {
    /// The filter of a configuration entry: `events` (empty: all) at `min_severity`
    /// (default info) or above.
    pub fn new(events: &[EventName], min_severity: Option<Severity>) -> Self {
        Filter {
            events: events.to_vec(),
            min_severity: min_severity.unwrap_or_default(),
        }
    }

    /// Whether `notification` passes.
    pub fn matches(&self, notification: &Notification) -> bool {
        (self.events.is_empty() || self.events.contains(&notification.event))
            && notification.severity >= self.min_severity
    }
}

/// Where a receiver's secrets are read from at send time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// A Kubernetes Secret.
    Kube {
        /// Its namespace (the Release's).
        namespace: String,
        /// Its name.
        name: String,
        /// The URL's key.
        url_key: String,
        /// The signing secret's key.
        secret_key: String,
        /// Whether a missing signing-secret key is an error (it was named explicitly).
        secret_required: bool,
    },
    /// Files, e.g. a mounted Secret.
    Files {
        /// The URL's file.
        url_file: PathBuf,
        /// The signing secret's file.
        secret_file: Option<PathBuf>,
    },
}

/// A receiver: a provider and where its secrets are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The service.
    pub provider: ProviderKind,
    /// Card or text, for the services with a choice.
    pub format: Format,
    /// Its secrets.
    pub secrets: SecretSource,
}

impl Target {
    /// Where the secrets come from, for logs (never the secrets themselves).
    pub fn describe(&self) -> String {
        match &self.secrets {
            SecretSource::Kube {
                namespace, name, ..
            } => format!("{} via Secret {namespace}/{name}", self.provider.as_str()),
            SecretSource::Files { url_file, .. } => {
                format!("{} via file {}", self.provider.as_str(), url_file.display())
            }
        }
    }
}

/// A receiver and its filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// What it wants.
    pub filter: Filter,
    /// Where it is.
    pub target: Target,
}

impl ReleaseNotification {
    /// The rule for a Release in `namespace`.
    pub fn rule(&self, namespace: &str) -> Rule {
        Rule {
            filter: Filter::new(&self.events, self.min_severity),
            target: Target {
                provider: self.provider,
                format: self.format.unwrap_or_default(),
                secrets: SecretSource::Kube {
                    namespace: namespace.into(),
                    name: self.secret_ref.name.clone(),
                    url_key: self
                        .secret_ref
                        .url_key
                        .clone()
                        .unwrap_or_else(|| DEFAULT_URL_KEY.into()),
                    secret_key: self
                        .secret_ref
                        .secret_key
                        .clone()
                        .unwrap_or_else(|| DEFAULT_SECRET_KEY.into()),
                    secret_required: self.secret_ref.secret_key.is_some(),
                },
            },
        }
    }
}

/// Why a receiver's secrets could not be read; the message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

fn read_file(path: &Path, what: &str) -> Result<String, ResolveError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ResolveError(format!(
            "cannot read the {what} file {}: {e}; mount the Secret holding it, or fix the path in the notify config",
            path.display()
        ))
    })?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(ResolveError(format!(
            "the {what} file {} is empty",
            path.display()
        )));
    }
    Ok(text)
}

fn secret_value(secret: &Secret, key: &str) -> Option<Result<String, ()>> {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(
            String::from_utf8(bytes.0.clone())
                .map(|s| s.trim().to_string())
                .map_err(|_| ()),
        );
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|s| Ok(s.trim().to_string()))
}

/// Reads a target's URL and signing secret: from the Kubernetes Secret (with `client`) or
/// the files. Checks that the URL is http(s), without ever repeating it.
pub async fn resolve(
    source: &SecretSource,
    client: Option<&kube::Client>,
) -> Result<Secrets, ResolveError> {
    let secrets = match source {
        SecretSource::Files {
            url_file,
            secret_file,
        } => Secrets {
            url: read_file(url_file, "webhook URL")?,
            secret: secret_file
                .as_deref()
                .map(|f| read_file(f, "signing secret"))
                .transpose()?,
        },
        SecretSource::Kube {
            namespace,
            name,
            url_key,
            secret_key,
            secret_required,
        } => {
            let client = client.ok_or_else(|| {
                ResolveError(format!(
                    "Secret {namespace}/{name}: no Kubernetes client to read it with"
                ))
            })?;
            let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
            let secret = api.get_opt(name).await.map_err(|e| {
                let hint = match &e {
                    kube::Error::Api(s) if s.code == 403 => {
                        "; the controller's ServiceAccount needs `get` on secrets (the Helm chart grants it)"
                    }
                    _ => "",
                };
                ResolveError(format!("cannot read Secret {namespace}/{name}: {e}{hint}"))
            })?;
            let secret = secret.ok_or_else(|| {
                ResolveError(format!(
                    "Secret {namespace}/{name} not found: create it in the Release's namespace, e.g. `kubectl -n {namespace} create secret generic {name} --from-literal={url_key}=https://...`"
                ))
            })?;
            let not_utf8 = |key: &str| {
                ResolveError(format!(
                    "Secret {namespace}/{name}: key `{key}` is not UTF-8 text"
                ))
            };
            let url = match secret_value(&secret, url_key) {
                Some(Ok(url)) if !url.is_empty() => url,
                Some(Err(())) => return Err(not_utf8(url_key)),
                _ => {
                    return Err(ResolveError(format!(
                        "Secret {namespace}/{name} has no key `{url_key}` with the webhook URL: add it, or set secretRef.urlKey to the key that holds it"
                    )));
                }
            };
            let secret = match secret_value(&secret, secret_key) {
                Some(Ok(s)) if !s.is_empty() => Some(s),
                Some(Err(())) => return Err(not_utf8(secret_key)),
                _ if *secret_required => {
                    return Err(ResolveError(format!(
                        "Secret {namespace}/{name} has no key `{secret_key}` (secretRef.secretKey) with the signing secret: add it, or remove secretKey"
                    )));
                }
                _ => None,
            };
            Secrets { url, secret }
        }
    };
    parse_url(&secrets.url).map_err(|e| ResolveError(format!("{}: {e}", describe(source))))?;
    Ok(secrets)
}

fn describe(source: &SecretSource) -> String {
    match source {
        SecretSource::Kube {
            namespace,
            name,
            url_key,
            ..
        } => format!("Secret {namespace}/{name} key `{url_key}`"),
        SecretSource::Files { url_file, .. } => format!("file {}", url_file.display()),
    }
}

impl NotifyConfig {
    /// Parses a notify config document; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        serde_saphyr::from_str(text).map_err(|e| {
            format!(
                "{}: not a valid notify config: {e}. Expected `notifications:` with entries of provider (slack, teams, discord, dingtalk, feishu, webhook), urlFile, and optional secretFile, events, minSeverity, format",
                path.display()
            )
        })
    }

    /// Reads and checks `vigil run --notify-config FILE`: every file it names is readable
    /// and every URL is http(s).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the notify config {}: {e}", path.display()))?;
        let config = Self::parse(&text, path)?;
        for (i, entry) in config.notifications.iter().enumerate() {
            let target = entry.rule().target;
            resolve_files_now(&target.secrets).map_err(|e| {
                format!(
                    "{}: notifications[{i}] ({}): {e}",
                    path.display(),
                    entry.provider.as_str()
                )
            })?;
        }
        Ok(config)
    }

    /// The rules, in file order.
    pub fn rules(&self) -> Vec<Rule> {
        self.notifications
            .iter()
            .map(ClusterNotification::rule)
            .collect()
    }
}

/// [`resolve`] for file sources, synchronously (at startup).
fn resolve_files_now(source: &SecretSource) -> Result<(), ResolveError> {
    if let SecretSource::Files {
        url_file,
        secret_file,
    } = source
    {
        let url = read_file(url_file, "webhook URL")?;
        parse_url(&url).map_err(|e| ResolveError(format!("{}: {e}", describe(source))))?;
        if let Some(f) = secret_file {
            read_file(f, "signing secret")?;
        }
    }
    Ok(())
}

impl ClusterNotification {
    /// Its rule.
    pub fn rule(&self) -> Rule {
        Rule {
            filter: Filter::new(&self.events, self.min_severity),
            target: Target {
                provider: self.provider,
                format: self.format.unwrap_or_default(),
                secrets: SecretSource::Files {
                    url_file: self.url_file.clone(),
                    secret_file: self.secret_file.clone(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing::sample;

    #[test]
    fn filters_by_event_and_severity() {
        let n = sample(); // analysis-failed, error
        assert!(Filter::default().matches(&n));
        let only_started = Filter {
            events: vec![EventName::Started],
            ..Filter::default()
        };
        assert!(!only_started.matches(&n));
        let mut info = n.clone();
        info.event = EventName::StepAdvanced;
        info.severity = Severity::Info;
        let warnings = Filter {
            events: vec![],
            min_severity: Severity::Warning,
        };
        assert!(warnings.matches(&n) && !warnings.matches(&info));
    }

    #[test]
    fn bad_config_names_the_file_and_the_problem() {
        let path = Path::new("/etc/vigil/notify.yaml");
        let err = NotifyConfig::parse(
            "notifications:\n  - provider: pager\n    urlFile: /x\n",
            path,
        )
        .unwrap_err();
        assert!(
            err.contains("/etc/vigil/notify.yaml") && err.contains("pager"),
            "{err}"
        );
        let err = NotifyConfig::parse(
            "notifications:\n  - provider: slack\n    url: https://x\n",
            path,
        )
        .unwrap_err();
        assert!(err.contains("url"), "{err}");
    }

    #[test]
    fn load_checks_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("url");
        std::fs::write(&url, "https://hooks.example/abc\n").unwrap();
        let config = dir.path().join("notify.yaml");
        std::fs::write(
            &config,
            format!(
                "notifications:\n  - provider: slack\n    urlFile: {}\n    events: [aborted]\n    minSeverity: warning\n",
                url.display()
            ),
        )
        .unwrap();
        let loaded = NotifyConfig::load(&config).unwrap();
        let rules = loaded.rules();
        assert_eq!(rules[0].filter.events, vec![EventName::Aborted]);
        assert_eq!(rules[0].filter.min_severity, Severity::Warning);

        std::fs::write(
            &config,
            "notifications:\n  - provider: webhook\n    urlFile: /nonexistent/url\n",
        )
        .unwrap();
        let err = NotifyConfig::load(&config).unwrap_err();
        assert!(
            err.contains("notifications[0] (webhook)") && err.contains("/nonexistent/url"),
            "{err}"
        );

        std::fs::write(&url, "ftp://secret-token@x\n").unwrap();
        std::fs::write(
            &config,
            format!(
                "notifications:\n  - provider: slack\n    urlFile: {}\n",
                url.display()
            ),
        )
        .unwrap();
        let err = NotifyConfig::load(&config).unwrap_err();
        assert!(
            !err.contains("secret-token"),
            "the URL must not leak: {err}"
        );
    }
}
