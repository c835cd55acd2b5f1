#!/usr/bin/env bash
# Runs vigil's whole test suite. Installs the Debian packages the tests need when they are
# missing (listed below), then runs every test.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests need, by the command that tells whether they are present:
#   prometheus, promtool  the real Prometheus the source and controller tests query
#   kubectl               the fake Kubernetes API server's kubectl compatibility test
#                         (kubernetes-client; machines may already have a newer kubectl)
#   prometheus-alertmanager  the real Alertmanager that tests/it/alerts.rs sends an alert through
#   chromium              the headless browser that loads the HTML reports (tests/it/report.rs,
#                         tests/it/demo.rs) and screenshots them
missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing Debian packages the tests need: ${missing[*]}" >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# Unit and integration tests; benches are compiled by clippy above and run by `cargo bench`.
cargo test --locked --lib --bins --tests
