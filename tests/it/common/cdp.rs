//! Headless Chromium driven over the DevTools protocol, for pages that live: navigate, run
//! JavaScript in the page (fill a form, click a button, read the DOM), wait for the DOM to
//! change, take screenshots, and collect what the page logged (CSP violations, errors).
//!
//! The protocol goes over `--remote-debugging-pipe` (JSON messages ending in a NUL byte on
//! file descriptors 3 and 4): no WebSocket and no port. Chromium gets two FIFOs as those
//! descriptors through `sh -c 'exec ... 3<in 4>out'`.

use super::browser::chromium;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A Chromium with one page.
pub struct Browser {
    child: Child,
    to: std::fs::File,
    from: Receiver<Value>,
    next_id: u64,
    session: String,
    /// Problems the page reported: console errors and warnings, CSP violations, exceptions.
    pub problems: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with an empty profile and opens a blank page of `width` x `height`.
    pub fn start(width: u32, height: u32) -> Browser {
        let dir = tempfile::tempdir().expect("temp dir for chromium");
        let (into, out) = (dir.path().join("in"), dir.path().join("out"));
        for fifo in [&into, &out] {
            let made = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
            assert!(made.success(), "mkfifo {}", fifo.display());
        }
        let binary = chromium();
        let child = Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" \"$@\" 3<\"$CDP_IN\" 4>\"$CDP_OUT\"")
            .arg(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(format!("--window-size={width},{height}"))
            .env("CDP_IN", &into)
            .env("CDP_OUT", &out)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e})", binary.display()));
        // The shell opens `in` for reading first, then `out` for writing: open them in
        // that order, or both sides wait for each other.
        let to = std::fs::OpenOptions::new()
            .write(true)
            .open(&into)
            .expect("the browser's input pipe");
        let reader = std::fs::File::open(&out).expect("the browser's output pipe");
        let (send, from) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        message.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&message)
                            && send.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            to,
            from,
            next_id: 0,
            session: String::new(),
            problems: Vec::new(),
            _dir: dir,
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().expect("a target").to_string();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.call(domain, json!({}));
        }
        browser.viewport(width, height, false);
        browser
    }

    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(
                    params["type"].as_str(),
                    Some("error" | "warning" | "assert")
                ) =>
            {
                self.problems.push(format!("console: {}", params["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.problems
                    .push(format!("exception: {}", params["exceptionDetails"]));
            }
            Some("Log.entryAdded")
                if matches!(params["entry"]["level"].as_str(), Some("error" | "warning")) =>
            {
                self.problems.push(format!("log: {}", params["entry"]));
            }
            _ => {}
        }
    }

    /// Calls `method` (on the page once attached) and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to the browser");
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                    return v["result"].clone();
                }
                Ok(event) => self.note(&event),
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer in {CALL_TIMEOUT:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: the browser exited"),
            }
        }
    }

    /// Sets the page's size; `mobile` as a phone.
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Light or dark, as the system would say (`prefers-color-scheme`).
    pub fn color_scheme(&mut self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page; fails after `limit` with `what`.
    pub fn wait(&mut self, what: &str, expression: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            if self.eval(&format!("Boolean({expression})")) == json!(true) {
                return;
            }
            if started.elapsed() > limit {
                let body = self.eval("document.body ? document.body.innerText : ''");
                panic!("timed out waiting for {what} ({expression}); the page says:\n{body}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub fn open(&mut self, url: &str) {
        self.eval("window.__vigil_old = true");
        self.call("Page.navigate", json!({"url": url}));
        self.wait_loaded(url);
    }

    /// Waits until a new document (not the one marked before) has loaded.
    pub fn wait_loaded(&mut self, what: &str) {
        self.wait(
            &format!("{what} to load"),
            "!window.__vigil_old && document.readyState === 'complete'",
            Duration::from_secs(20),
        );
    }

    /// Saves a PNG of the whole page to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine as _;
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("png data"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifacts dir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
