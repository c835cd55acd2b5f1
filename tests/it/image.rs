//! The container image (deploy/image/). Built as the README says, `deploy/image/build`; its
//! filesystem exported with `podman create` + `podman export` (the sandbox refuses
//! `podman run`); and the binary run from it as a container runs it: the image's user,
//! working directory and environment, in a chroot of the exported root mounted read-only
//! with an emptyDir-like /tmp, as the Helm chart runs it, in new mount and PID namespaces but
//! the host's network. Names resolve through the root's /etc/resolv.conf and /etc/hosts, as
//! the kubelet writes them: a real DNS server (dnsmasq) answers for `vigil.test`.
//!
//! Needs root (chroot, mounts), podman and dnsmasq; `./test.sh` installs them and builds the
//! image before the tests, so the build here finds everything up to date.

use crate::common::{PromServer, Version, judge_args, openmetrics, require, root};
use serde_json::Value;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The built image, exported once for every test of this module.
struct Image {
    /// The name `deploy/image/build` printed.
    name: String,
    /// `podman image inspect`'s document.
    inspect: Value,
    /// `tar -tv --numeric-owner` of the export, one line per entry.
    listing: Vec<String>,
    /// The exported filesystem, plus what a runtime adds: /etc/resolv.conf, /etc/hosts, and
    /// mount points for /dev and /proc.
    rootfs: PathBuf,
    /// The nameserver's address in that resolv.conf (dnsmasq listens there when started).
    nameserver: Ipv4Addr,
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", text(&out));
    out
}

/// The image the Helm chart runs by default: `image.repository:image.tag` of values.yaml.
fn chart_default_image() -> String {
    let values = std::fs::read_to_string(root().join("deploy/helm/vigil/values.yaml"))
        .expect("read values.yaml");
    let values: Value = serde_saphyr::from_str(&values).expect("values.yaml is YAML");
    let image = &values["image"];
    format!(
        "{}:{}",
        image["repository"].as_str().expect("image.repository"),
        image["tag"].as_str().expect("image.tag")
    )
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(build_and_export)
}

fn build_and_export() -> Image {
    require("podman");
    assert!(
        run_ok(Command::new("id").arg("-u")).stdout == b"0\n",
        "the image tests run the exported image in a chroot, which needs root"
    );
    // Exactly the README's command, from the repository's root.
    let started = Instant::now();
    let out = run_ok(Command::new("deploy/image/build").current_dir(root()));
    eprintln!("deploy/image/build took {:?}", started.elapsed());
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        name,
        chart_default_image(),
        "the Helm chart's default image (deploy/helm/vigil/values.yaml) is the one the build names"
    );

    let inspect = run_ok(Command::new("podman").args(["image", "inspect", &name])).stdout;
    let inspect: Value = serde_json::from_slice(&inspect).expect("podman image inspect JSON");
    let inspect = inspect[0].clone();

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("image");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the export directory");
    let container = format!("vigil-image-test-{}", std::process::id());
    run_ok(Command::new("podman").args(["create", "--name", &container, &name]));
    let tar = dir.join("image.tar");
    let export = Command::new("podman")
        .args(["export", "-o"])
        .arg(&tar)
        .arg(&container)
        .output();
    let _ = Command::new("podman").args(["rm", &container]).output();
    let export = export.expect("run podman export");
    assert!(export.status.success(), "podman export: {}", text(&export));
    let listing = run_ok(
        Command::new("tar")
            .arg("-tvf")
            .arg(&tar)
            .arg("--numeric-owner"),
    )
    .stdout;
    let listing = String::from_utf8_lossy(&listing)
        .lines()
        .map(str::to_string)
        .collect();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir(&rootfs).expect("create rootfs");
    run_ok(
        Command::new("tar")
            .arg("-xpf")
            .arg(&tar)
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&rootfs),
    );

    // What the kubelet (or podman run) adds: mount points for /dev and /proc (a container
    // has both; the static binary reads /dev/urandom, as the getrandom crate finds no
    // glibc getrandom by dlsym in it), a resolv.conf as in a Pod (search domains, ndots:5)
    // naming the test's DNS server, and /etc/hosts with one name of its own. The address
    // is per process, so that two test runs do not share a port 53.
    let pid = std::process::id();
    let nameserver = Ipv4Addr::new(127, 53, (pid % 250 + 1) as u8, (pid / 250 % 250 + 1) as u8);
    for mount_point in ["dev", "proc"] {
        std::fs::create_dir(rootfs.join(mount_point)).expect("create a mount point");
    }
    std::fs::write(
        rootfs.join("etc/resolv.conf"),
        format!("search vigil.test\nnameserver {nameserver}\noptions ndots:5\n"),
    )
    .expect("write resolv.conf");
    std::fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n127.0.0.1\tprometheus.hosts.example\n",
    )
    .expect("write hosts");
    Image {
        name,
        inspect,
        listing,
        rootfs,
        nameserver,
    }
}

impl Image {
    /// The image config's `key` (User, WorkingDir, ...).
    fn config(&self, key: &str) -> &Value {
        &self.inspect["Config"][key]
    }

    /// Runs the image's entrypoint with `args` as a container would: the image's user,
    /// working directory and environment; the root read-only; `tmp` (a host directory,
    /// mode 1777 as an emptyDir) mounted on the image's /tmp.
    fn run(&self, tmp: &Path, args: &[std::ffi::OsString]) -> Output {
        let user = self.config("User").as_str().expect("User");
        let (uid, gid) = user.split_once(':').unwrap_or((user, user));
        let workdir = self.config("WorkingDir").as_str().expect("WorkingDir");
        let entrypoint: Vec<&str> = self
            .config("Entrypoint")
            .as_array()
            .expect("Entrypoint")
            .iter()
            .map(|a| a.as_str().expect("Entrypoint is strings"))
            .collect();
        let env = self.config("Env").as_array().cloned().unwrap_or_default();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation=private", "--pid", "--fork", "--"])
            .args(["sh", "-euc", SANDBOX, "sh"])
            .arg(&self.rootfs)
            .arg(tmp)
            .args([uid, gid, workdir])
            .args(&entrypoint)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        // The image's own environment, for the program (`unshare` passes it on).
        for kv in env.iter().filter_map(Value::as_str) {
            if let Some((k, v)) = kv.split_once('=')
                && k != "PATH"
            {
                cmd.env(k, v);
            }
        }
        cmd.output().expect("run unshare")
    }
}

/// Run by `sh` in new mount and PID namespaces (`unshare`), with the host's network:
/// `ROOT TMP UID GID WORKDIR COMMAND...`. The root becomes a read-only bind mount with a
/// container's /dev (the usual devices), /proc, and TMP on its /tmp; then `unshare --root`
/// chroots into it, changes to WORKDIR and runs COMMAND as UID and GID, with no
/// supplementary groups.
const SANDBOX: &str = r#"root="$1" tmp="$2" uid="$3" gid="$4" wd="$5"; shift 5
mount --bind "$root" "$root"
mount -t tmpfs -o nosuid,noexec,mode=755 tmpfs "$root/dev"
for d in null zero full random urandom; do
  touch "$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
mount -t proc proc "$root/proc"
mount --bind "$tmp" "$root/tmp"
mount -o remount,bind,ro "$root"
exec unshare --root="$root" --wd="$wd" --setuid="$uid" --setgid="$gid" -- "$@"
"#;

/// An emptyDir: a fresh directory with mode 1777.
fn empty_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod 1777");
    dir
}

fn args(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(Into::into).collect()
}

#[test]
fn the_image_holds_the_binary_and_the_ca_certificates_only() {
    let image = image();
    // Each line: mode owner/group size date time path.
    let entries: Vec<(String, String, String)> = image
        .listing
        .iter()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected tar listing line {line:?}");
            let path = fields[5..].join(" ");
            let path = path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            (fields[0].to_string(), fields[1].to_string(), path)
        })
        .filter(|(_, _, path)| !path.is_empty() && path != ".")
        .collect();
    let mut paths: Vec<&str> = entries.iter().map(|(_, _, p)| p.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "etc",
            "etc/ssl",
            "etc/ssl/certs",
            "etc/ssl/certs/ca-certificates.crt",
            "tmp",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/vigil",
        ],
        "the image holds exactly the binary, the CA bundle and /tmp:\n{}",
        image.listing.join("\n")
    );
    let entry = |path: &str| {
        entries
            .iter()
            .find(|(_, _, p)| p == path)
            .map(|(mode, owner, _)| (mode.as_str(), owner.as_str()))
            .unwrap_or_else(|| panic!("no {path}"))
    };
    // The binary belongs to root: the user it runs as cannot change it. /tmp is the user's.
    assert_eq!(entry("usr/local/bin/vigil"), ("-rwxr-xr-x", "0/0"));
    assert_eq!(
        entry("etc/ssl/certs/ca-certificates.crt"),
        ("-rw-r--r--", "0/0")
    );
    assert_eq!(entry("tmp"), ("drwxrwxrwt", "65532/65532"));
    let bundle = std::fs::read_to_string(image.rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("read the CA bundle");
    assert!(
        bundle.matches("-----BEGIN CERTIFICATE-----").count() > 100,
        "the CA bundle holds the public roots"
    );

    // The config: non-root by number (runAsNonRoot checks it without /etc/passwd), the
    // binary as entrypoint, /tmp as working directory, and the OCI labels.
    assert_eq!(image.config("User"), "65532:65532", "{:#}", image.inspect);
    assert_eq!(image.config("WorkingDir"), "/tmp");
    assert_eq!(
        image.config("Entrypoint"),
        &serde_json::json!(["/usr/local/bin/vigil"])
    );
    let labels = image.config("Labels");
    for (label, value) in [
        ("title", "vigil"),
        ("version", env!("CARGO_PKG_VERSION")),
        ("licenses", env!("CARGO_PKG_LICENSE")),
        ("description", env!("CARGO_PKG_DESCRIPTION")),
    ] {
        assert_eq!(
            labels[format!("org.opencontainers.image.{label}")],
            value,
            "{labels:#}"
        );
    }
    // The commit built, not one a cached build step remembers.
    let head = run_ok(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(root()),
    )
    .stdout;
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        String::from_utf8_lossy(&head).trim(),
        "{labels:#}"
    );
    let size = image.inspect["Size"].as_u64().unwrap_or_default();
    eprintln!("{}: {:.1} MB", image.name, size as f64 / 1e6);
}

#[test]
fn the_image_runs_the_version_and_the_demo_on_a_read_only_root() {
    let image = image();
    let tmp = empty_dir();
    let out = image.run(tmp.path(), &args(&["--version"]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vigil {}", env!("CARGO_PKG_VERSION"))
    );

    // The README's first command, in the working directory (/tmp, the emptyDir).
    let out = image.run(tmp.path(), &args(&["demo", "--speed", "0"]));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Report: /tmp/vigil-demo-report.html"),
        "{}",
        text(&out)
    );
    let report = std::fs::read_to_string(tmp.path().join("vigil-demo-report.html"))
        .expect("the demo wrote its report into /tmp");
    assert!(report.contains("<html"), "{report:.200}");

    // The root is read-only indeed: a report anywhere else cannot be written.
    let out = image.run(
        tmp.path(),
        &args(&[
            "demo",
            "--speed",
            "0",
            "--report",
            "/vigil-demo-report.html",
        ]),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{}",
        text(&out)
    );
}

/// dnsmasq answering for `vigil.test` at `address`:53: `prometheus.vigil.test` is 127.0.0.1,
/// any other name in the domain does not exist, and it knows nothing else (no /etc/hosts, no
/// upstream servers). Killed on drop.
struct Dns {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Dns {
    fn start(address: Ipv4Addr) -> Self {
        let dnsmasq = require("dnsmasq");
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("dnsmasq.log");
        let child = Command::new(dnsmasq)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--pid-file",
                "--user=root",
                "--no-hosts",
                "--no-resolv",
                "--bind-interfaces",
                "--port=53",
                "--local=/vigil.test/",
                "--host-record=prometheus.vigil.test,127.0.0.1",
                "--log-queries",
            ])
            .arg(format!("--listen-address={address}"))
            .arg(format!("--log-facility={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let mut dns = Dns {
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((address, 53)).is_err() {
            let exited = dns.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "dnsmasq did not start on {address}:53 ({exited:?}); its log:\n{}",
                dns.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dns
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_image_judges_a_prometheus_it_finds_by_host_name() {
    let image = image();
    let dns = Dns::start(image.nameserver);
    let version = |version, seed| Version {
        job: "search",
        version,
        rps: if version == "v1" { 180.0 } else { 20.0 },
        error_rate: 0.005,
        latency_median: 0.08,
        seed,
        regression: None,
    };
    let prom = PromServer::start(&openmetrics(&[version("v1", 1), version("v2", 2)]));
    let port = prom.url.rsplit(':').next().expect("port");
    let tmp = empty_dir();
    std::fs::copy(
        root().join("analysis-templates/http-prometheus-client.yaml"),
        tmp.path().join("template.yaml"),
    )
    .expect("copy the template");
    let judge = |host: &str| {
        let mut args = judge_args(
            &format!("http://{host}:{port}"),
            Path::new("/tmp/template.yaml"),
            "search",
            "version=\"v1\"",
            "version=\"v2\"",
        );
        args.extend(["--output".into(), "json".into()]);
        image.run(tmp.path(), &args)
    };
    // By DNS: the fully qualified name, and a short one completed by resolv.conf's search
    // domain (as `prometheus-operated.monitoring.svc` is in a cluster).
    for host in ["prometheus.vigil.test", "prometheus"] {
        let out = judge(host);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\ndnsmasq:\n{}", text(&out), dns.log()));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(report["verdict"], "pass", "{report:#}");
    }
    let log = dns.log();
    assert!(
        log.contains("query[A] prometheus.vigil.test")
            && log.contains("prometheus.vigil.test is 127.0.0.1"),
        "the names were resolved by the DNS server:\n{log}"
    );
    // By /etc/hosts, a name the DNS server does not know.
    let out = judge("prometheus.hosts.example");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A name nobody knows fails as a connection error, naming the host.
    let out = judge("absent.vigil.test");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("absent.vigil.test"), "{}", text(&out));
}
