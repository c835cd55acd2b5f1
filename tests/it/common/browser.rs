//! Opens an HTML report in headless Chromium (Debian package `chromium`): the DOM as the
//! browser built it, the console messages it printed (Content-Security-Policy violations,
//! errors), and a screenshot. A missing Chromium fails the test with how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take before it is killed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// What the browser made of a page.
#[derive(Debug, Clone)]
pub struct BrowserCheck {
    /// The DOM after loading (`--dump-dom`).
    pub dom: String,
    /// Console messages and CSP violations from Chromium's log; a good report has none.
    pub console: Vec<String>,
    /// Every `<svg class="chart">` of the DOM: its `data-metric` and how many plotted
    /// (`class="data ..."`) elements it has.
    pub charts: Vec<(String, usize)>,
    /// Where the screenshot was written.
    pub screenshot: PathBuf,
}

/// The Chromium binary, or a panic that says how to install it.
pub fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("VIGIL_CHROMIUM") {
        return PathBuf::from(path);
    }
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|b| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(b))
                    .find(|p| p.is_file())
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "this test needs headless Chromium: install Debian's `chromium` package \
                 (sudo apt-get install -y chromium), or set VIGIL_CHROMIUM to its binary"
            )
        })
}

/// The lines of Chromium's stderr log that report a problem of the page: console messages
/// (`...:INFO:CONSOLE:0] "Loading the image 'http://...' violates the following Content
/// Security Policy directive..."` is how a blocked fetch looks) and CSP refusals.
pub fn console_problems(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("Content Security Policy")
                || l.contains("Refused to")
                || l.contains("Uncaught")
        })
        .map(str::to_string)
        .collect()
}

/// The `<svg class="chart" ...>` elements of a DOM with their metric and plotted elements.
pub fn chart_svgs(dom: &str) -> Vec<(String, usize)> {
    dom.match_indices("<svg ")
        .filter_map(|(i, _)| {
            let svg = &dom[i..i + dom[i..].find("</svg>")?];
            let open = &svg[..svg.find('>')?];
            if !open.contains("class=\"chart\"") {
                return None;
            }
            let metric = open
                .split("data-metric=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_string();
            Some((metric, svg.matches("class=\"data ").count()))
        })
        .collect()
}

/// Runs Chromium with `args` and the page, in a throwaway profile; returns (stdout, stderr).
fn run(args: &[&str], page: &Path) -> (String, String) {
    let binary = chromium();
    let dir = tempfile::tempdir().expect("temp dir for chromium");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let url = format!(
        "file://{}",
        page.canonicalize().expect("the page exists").display()
    );
    let mut child = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(args)
        .arg(&url)
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): install Debian's `chromium` package",
                binary.display()
            )
        });
    let started = Instant::now();
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(status) => {
                let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
                assert!(status.success(), "chromium failed ({status}):\n{stderr}");
                let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
                return (stdout, stderr);
            }
            None if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
                panic!("chromium took over {TIMEOUT:?} on {url}; killed it:\n{stderr}");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Loads `html_path` in headless Chromium: dumps the DOM, collects console problems from
/// both runs, and saves a 1280x2400 screenshot to `screenshot_path`.
pub fn check_report(html_path: &Path, screenshot_path: &Path) -> BrowserCheck {
    let (dom, stderr) = run(&["--dump-dom"], html_path);
    if let Some(parent) = screenshot_path.parent() {
        std::fs::create_dir_all(parent).expect("screenshot directory");
    }
    let shot = format!("--screenshot={}", screenshot_path.display());
    let (_, shot_stderr) = run(
        &[&shot, "--window-size=1280,2400", "--hide-scrollbars"],
        html_path,
    );
    let mut console = console_problems(&stderr);
    console.extend(console_problems(&shot_stderr));
    BrowserCheck {
        charts: chart_svgs(&dom),
        dom,
        console,
        screenshot: screenshot_path.to_path_buf(),
    }
}

/// Where test artifacts go: `target/test-artifacts/` (next to `CARGO_TARGET_TMPDIR`, so it
/// follows `CARGO_TARGET_DIR`).
pub fn artifacts_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("test-artifacts")
}

/// Asserts that `check` found a clean page: no console problems, the expected number of
/// charts each with plotted elements, and a real screenshot.
pub fn assert_clean(check: &BrowserCheck, charts: usize) {
    assert!(
        check.console.is_empty(),
        "console problems: {:#?}",
        check.console
    );
    assert_eq!(check.charts.len(), charts, "{:?}", check.charts);
    for (metric, plotted) in &check.charts {
        assert!(
            *plotted > 0,
            "{metric}: nothing plotted in the browser's DOM"
        );
    }
    let png = std::fs::read(&check.screenshot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
