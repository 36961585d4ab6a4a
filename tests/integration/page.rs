//! The page `glot serve` serves at `/`, in a real browser: Debian's
//! Chromium, headless, driven through chromedriver's WebDriver protocol.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{cli_translation, glot, http_exchange, model_dir};

/// A JSON request to a local HTTP server: the answer's JSON.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let b = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    );
    let (_, _, body) = http_exchange(port, req.as_bytes());
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebDriver session of a headless Chromium.
struct Browser {
    port: u16,
    session: String,
    _driver: Killed,
}

impl Browser {
    fn start(downloads: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) runs");
        let driver = Killed(driver);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let r = http(port, "POST", "/session", Some(&caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        Browser {
            port,
            session,
            _driver: driver,
        }
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (method == "POST").then_some(&body);
        let r = http(self.port, method, &path, body);
        assert!(r["value"].get("error").is_none(), "{path}: {r}");
        r["value"].clone()
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn element(&self, css: &str) -> String {
        let e = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        e.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    /// Waits until `script` returns true.
    fn wait_for(&self, script: &str, what: &str) {
        let start = Instant::now();
        while self.script(script) != json!(true) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "waited too long for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        base64(self.call("GET", "/screenshot", json!({})).as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = std::panic::catch_unwind(|| http(self.port, "DELETE", &path, None));
    }
}

fn base64(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// The page translates a pasted text, showing the translation as it comes
/// (more than one part before the end), offers it for download as a file
/// of the text's own format, shows errors, and fits a phone's width.
#[test]
fn the_page_translates_pasted_text_as_it_comes_and_downloads_it() {
    let home = tempfile::tempdir().unwrap();
    let marian = model_dir("marian");
    let model = marian.to_str().unwrap();
    // Enough sentences for the translation model's answers to come in
    // more than one part.
    let text: String = (0..24)
        .map(|i| format!("Part {i} is short. It has three sentences. The end is near."))
        .collect::<Vec<_>>()
        .join("\n\n");
    let want = cli_translation(home.path(), &text, "txt", model);

    let port = free_port();
    let mut cmd = glot(home.path());
    cmd.args(["serve", "--port", &port.to_string(), "--model", model])
        .stderr(Stdio::null());
    let _server = Killed(cmd.spawn().unwrap());
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "glot serve did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let downloads = home.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads);
    browser.call(
        "POST",
        "/url",
        json!({ "url": format!("http://127.0.0.1:{port}/") }),
    );
    browser.wait_for(
        "return document.getElementById('target').options.length > 10",
        "the languages",
    );

    // No text: the page says so.
    browser.click("#go");
    browser.wait_for(
        "return document.getElementById('error').textContent.includes('no text')",
        "an error",
    );

    browser.type_into("#src", &text);
    browser.script("document.getElementById('target').value = 'de'; return true;");
    browser.click("#go");
    browser.wait_for(
        "return !document.getElementById('download').disabled",
        "the translation",
    );
    let trace = browser.script("return window.glotTrace");
    let parts: Vec<u64> = trace
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "text")
        .map(|e| e["length"].as_u64().unwrap())
        .collect();
    assert!(parts.len() >= 2, "{trace}");
    assert!(parts.windows(2).all(|w| w[1] > w[0]), "{trace}");
    let shown = browser.script("return document.getElementById('out').textContent");
    assert_eq!(shown.as_str().unwrap(), want.trim_end_matches('\n'));
    assert_eq!(
        browser.script("return document.getElementById('error').textContent"),
        ""
    );

    browser.click("#download");
    let saved = downloads.join("text.de.txt");
    let start = Instant::now();
    while !saved.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no download in {}",
            downloads.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), want);

    let png = browser.screenshot();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Ok(dir) = std::env::var("GLOT_SCREENSHOTS") {
        std::fs::write(Path::new(&dir).join("serve-page.png"), &png).unwrap();
    }

    // A phone's width: nothing wider than the screen.
    browser.call("POST", "/window/rect", json!({"width": 390, "height": 844}));
    let widths = browser.script(
        "return [document.documentElement.scrollWidth, window.innerWidth, \
         [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth).map(e => e.tagName + '#' + e.id)]",
    );
    if let Ok(dir) = std::env::var("GLOT_SCREENSHOTS") {
        std::fs::write(
            Path::new(&dir).join("serve-page-phone.png"),
            browser.screenshot(),
        )
        .unwrap();
    }
    assert!(widths[0].as_u64() <= widths[1].as_u64(), "{widths}");
}
