//! `glot serve`: LibreTranslate's API over raw HTTP, against the real
//! binary on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{gguf, glot, http_exchange, libretranslatepy, model_dir, run, stderr, stdout};

/// A `glot serve` on a free port, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(home: &Path, args: &[&str]) -> Server {
        let mut cmd = glot(home);
        cmd.args(["serve", "--port", "0"])
            .args(args)
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("glot serve starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("glot serve ended before serving: {seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(at) = line.split(" on http://").nth(1) {
                break at.rsplit(':').next().unwrap().trim().parse().unwrap();
            }
        };
        // The rest of stderr, drained so that the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server { child, port }
    }

    /// Sends a raw request; returns the status, the headers (lower case)
    /// and the body.
    fn raw(&self, request: &[u8]) -> (u16, String, Vec<u8>) {
        http_exchange(self.port, request)
    }

    fn request(&self, method: &str, path: &str, kind: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        if !kind.is_empty() {
            req.push_str(&format!("Content-Type: {kind}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    fn json(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, _, b) = self.request(
            "POST",
            path,
            "application/json",
            body.to_string().as_bytes(),
        );
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    fn form(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, _, b) = self.request(
            "POST",
            path,
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        );
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, b) = self.request("GET", path, "", b"");
        (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        unsafe_kill(self.child.id());
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_kill(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// A server of the Qwen3-shaped Q8_0 fixture, with `args` besides.
fn chat_server(home: &Path, args: &[&str]) -> Server {
    let q8 = gguf("qwen3", "q8_0");
    let mut all = vec!["--model", q8.to_str().unwrap()];
    all.extend(args);
    Server::start(home, &all)
}

/// [`TEXT`] `n` times, a paragraph each.
fn paragraphs(n: usize) -> String {
    vec![TEXT; n].join("\n\n")
}

const TEXT: &str = "The council met on Monday to discuss the budget. The mayor said that the old bridge will be repaired next year.";

/// What `glot translate` writes for `text`, without its last line end
/// unless `text` has one.
fn cli_translation(home: &Path, text: &str, ext: &str, model: &str) -> String {
    let mut t = crate::util::cli_translation(home, text, ext, model);
    if !text.ends_with('\n') {
        t.pop();
    }
    t
}

/// `/translate` answers as `glot translate` does, from JSON and from a
/// form, one text or a list, with the detected language for `auto`;
/// `/detect`, `/languages` and `/frontend/settings` answer as
/// LibreTranslate's do.
#[test]
fn the_api_translates_detects_and_lists_as_libretranslate_does() {
    let home = tempfile::tempdir().unwrap();
    let marian = model_dir("marian");
    let model = marian.to_str().unwrap();
    let server = Server::start(home.path(), &["--model", model]);
    let want = cli_translation(home.path(), TEXT, "txt", model);

    let (status, body) = server.json(
        "/translate",
        json!({"q": TEXT, "source": "en", "target": "de"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["translatedText"], want.as_str());
    assert!(body.get("detectedLanguage").is_none());
    // No field names a file or a model on the server: such fields are
    // nothing to it.
    let (status, body) = server.json(
        "/translate",
        json!({"q": TEXT, "source": "en", "target": "de", "model": "/etc/passwd",
               "prompts": "/etc", "glossary": "/etc/shadow", "file": "/etc/hosts"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["translatedText"], want.as_str());

    let form =
        serde_urlencoded::to_string([("q", TEXT), ("source", "auto"), ("target", "de")]).unwrap();
    let (status, body) = server.form("/translate", &form);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["translatedText"], want.as_str());
    assert_eq!(body["detectedLanguage"]["language"], "en");
    assert!(body["detectedLanguage"]["confidence"].as_f64().unwrap() > 50.0);

    let (status, body) = server.json(
        "/translate",
        json!({"q": [TEXT, "", TEXT], "source": "en", "target": "de"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["translatedText"], json!([want, "", want]));

    // HTML: tags kept, text translated.
    let html = format!("<p>{TEXT}</p>");
    let (status, body) = server.json(
        "/translate",
        json!({"q": html, "source": "en", "target": "de", "format": "html"}),
    );
    assert_eq!(status, 200, "{body}");
    let t = body["translatedText"].as_str().unwrap();
    assert!(t.starts_with("<p>") && t.ends_with("</p>"), "{t}");
    assert_eq!(t, cli_translation(home.path(), &html, "html", model));

    let (status, body) = server.form(
        "/detect",
        "q=Le+conseil+municipal+s%27est+r%C3%A9uni+lundi+pour+discuter+du+budget.",
    );
    assert_eq!(status, 200);
    assert_eq!(body[0]["language"], "fr", "{body}");

    for (status, body) in [server.get("/languages"), server.form("/languages", "")] {
        assert_eq!(status, 200);
        let langs = body.as_array().unwrap();
        let en = langs.iter().find(|l| l["code"] == "en").unwrap();
        assert_eq!(en["name"], "English");
        assert!(en["targets"].as_array().unwrap().contains(&json!("de")));
    }

    let (status, body) = server.get("/frontend/settings");
    assert_eq!(status, 200);
    assert_eq!(body["charLimit"], 100_000);
    assert_eq!(body["keyRequired"], false);
    assert_eq!(body["language"]["source"]["code"], "auto");
    assert!(server.stop().success());
}

/// With the opus-mt registry, `/languages` lists the pairs it can
/// translate (directly or through English), not every language glot knows.
#[test]
fn the_opus_mt_registry_lists_its_own_pairs() {
    let home = tempfile::tempdir().unwrap();
    let server = Server::start(home.path(), &["--model", "opus-mt"]);
    let (status, body) = server.get("/languages");
    assert_eq!(status, 200);
    let langs = body.as_array().unwrap();
    let en = langs.iter().find(|l| l["code"] == "en").unwrap();
    assert!(en["targets"].as_array().unwrap().contains(&json!("de")));
    let (_, everything) = server.get("/frontend/settings");
    assert_eq!(everything["model"], "opus-mt");
    let known = glot::text::lang::all().len();
    assert!(langs.len() < known, "{} of {known}", langs.len());
    assert!(langs
        .iter()
        .all(|l| !l["targets"].as_array().unwrap().is_empty()));
}

/// Bad requests get LibreTranslate's error shape and status: 400 for a
/// missing field, an unknown language, bad JSON or text over the limit;
/// 403 without a listed API key; 413 for a body over the limit; 404 for an
/// unknown path.
#[test]
fn errors_have_the_shape_and_status_libretranslate_gives_them() {
    let home = tempfile::tempdir().unwrap();
    let keys = home.path().join("keys.txt");
    std::fs::write(&keys, "# keys\nsecret-1\n\nsecret-2\n").unwrap();
    let marian = model_dir("marian");
    let server = Server::start(
        home.path(),
        &[
            "--model",
            marian.to_str().unwrap(),
            "--api-keys",
            keys.to_str().unwrap(),
            "--char-limit",
            "200",
            "--body-limit",
            "2000",
        ],
    );
    let error = |(status, body): (u16, Value)| -> (u16, String) {
        (status, body["error"].as_str().unwrap_or("").to_string())
    };
    let ok = json!({"q": "Good morning.", "source": "en", "target": "de", "api_key": "secret-2"});
    assert_eq!(server.json("/translate", ok.clone()).0, 200);
    let mut no_key = ok.clone();
    no_key.as_object_mut().unwrap().remove("api_key");
    let (status, msg) = error(server.json("/translate", no_key));
    assert_eq!((status, msg.contains("API key")), (403, true), "{msg}");
    let mut wrong = ok.clone();
    wrong["api_key"] = json!("secret-3");
    assert_eq!(
        error(server.json("/translate", wrong)),
        (403, "Invalid API key".into())
    );
    let mut bad = ok.clone();
    bad.as_object_mut().unwrap().remove("q");
    assert_eq!(
        error(server.json("/translate", bad)),
        (400, "Invalid request: missing q parameter".into())
    );
    let mut bad = ok.clone();
    bad["target"] = json!("xx-nowhere");
    assert_eq!(error(server.json("/translate", bad)).0, 400);
    let mut long = ok.clone();
    long["q"] = json!("word ".repeat(60));
    let (status, msg) = error(server.json("/translate", long));
    assert_eq!(status, 400);
    assert!(msg.contains("exceeds text limit (200)"), "{msg}");
    let (status, _, body) = server.request("POST", "/translate", "application/json", b"{\"q\": ");
    assert_eq!(status, 400);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string());
    let big = format!("q={}&target=de&api_key=secret-1", "a".repeat(3000));
    let (status, body) = server.form("/translate", &big);
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = server.get("/nothing/here");
    assert_eq!((status, body["error"].is_string()), (404, true));
    // Lists and settings need no key.
    assert_eq!(server.get("/languages").0, 200);
    assert_eq!(server.get("/frontend/settings").1["keyRequired"], true);
}

/// A file sent to `/translate_file` comes back from `/download_file/…` as
/// `glot translate` writes it, in its own format.
#[test]
fn files_are_translated_and_downloaded_in_their_own_format() {
    let home = tempfile::tempdir().unwrap();
    let marian = model_dir("marian");
    let model = marian.to_str().unwrap();
    let server = Server::start(home.path(), &["--model", model]);
    let md = format!("# A title\n\n{TEXT}\n\n- one item\n- `code` stays\n");
    let want = cli_translation(home.path(), &md, "md", model);
    let multipart = |name: &str, data: &str| -> (u16, Value) {
        let b = "glotboundary7";
        let body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\nen\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"target\"\r\n\r\nde\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{data}\r\n--{b}--\r\n"
        );
        let kind = format!("multipart/form-data; boundary={b}");
        let (status, _, out) = server.request("POST", "/translate_file", &kind, body.as_bytes());
        (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
    };
    let (status, body) = multipart("notes.md", &md);
    assert_eq!(status, 200, "{body}");
    let url = body["translatedFileUrl"].as_str().unwrap();
    let path = &url[url.find("/download_file/").unwrap()..];
    assert!(path.ends_with("notes.de.md"), "{path}");
    let (status, head, data) = server.request("GET", path, "", b"");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/markdown"), "{head}");
    assert_eq!(String::from_utf8(data).unwrap(), want);
    let (status, body) = multipart("notes.pdf", "%PDF-1.4");
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("not supported"));
    assert_eq!(server.get("/download_file/nothing.de.md").0, 404);
}

/// `/summarize` answers the summary `glot summarize` writes, with the
/// accounting of `--format json`.
#[test]
fn summaries_come_with_their_accounting() {
    let home = tempfile::tempdir().unwrap();
    let q8 = gguf("qwen3", "q8_0");
    let model = q8.to_str().unwrap();
    let server = Server::start(home.path(), &["--model", model, "--max-context", "512"]);
    let file = home.path().join("a.txt");
    std::fs::write(&file, TEXT).unwrap();
    let mut cmd = glot(home.path());
    cmd.args([
        "summarize",
        file.to_str().unwrap(),
        "--words",
        "20",
        "--format",
        "json",
    ])
    .args(["--model", model, "--max-context", "512"]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let want: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let (status, body) = server.json("/summarize", json!({"q": TEXT, "words": 20}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["text"], want["text"]);
    assert_eq!(
        body["usage"]["generated_tokens"],
        want["usage"]["generated_tokens"]
    );
    assert_eq!(body["words"], 20);
    assert_eq!(body["chunks"], 1);
    // In another language, from a form, by length; from HTML.
    let (status, body) = server.form(
        "/summarize",
        &serde_urlencoded::to_string([("q", TEXT), ("lang", "fr"), ("length", "short")]).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["language"]["code"], "fr");
    assert_eq!(body["words"], 60);
    let (status, body) = server.json(
        "/summarize",
        json!({"q": format!("<p>{TEXT}</p>"), "format": "html", "words": 20}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["input_format"], "html");
    let (status, body) = server.form("/summarize", "q=Short+text.&length=huge");
    assert_eq!((status, body["error"].is_string()), (400, true));
    // A translation model writes no summaries.
    let marian = model_dir("marian");
    let mt = Server::start(home.path(), &["--model", marian.to_str().unwrap()]);
    let (status, body) = mt.json("/summarize", json!({"q": TEXT}));
    assert_eq!(status, 400, "{body}");
}

/// Beyond the queue, requests get 429 at once; every request gets an
/// answer; SIGTERM lets the requests in flight finish, then the server
/// exits 0 and takes no new connection.
#[test]
fn a_full_queue_answers_429_and_sigterm_finishes_what_is_in_flight() {
    let home = tempfile::tempdir().unwrap();
    let server = chat_server(home.path(), &["--queue", "1", "--parallel", "1"]);
    let long = paragraphs(6);
    let body = json!({"q": long, "source": "en", "target": "de"});
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| server.json("/translate", body.clone()).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429) && statuses.contains(&200),
        "{statuses:?}"
    );

    // A request in flight when SIGTERM comes is answered.
    let port = server.port;
    let in_flight = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let b = json!({"q": long, "source": "en", "target": "de"}).to_string();
        let req = format!(
            "POST /translate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    std::thread::sleep(Duration::from_millis(800));
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let answer = in_flight.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// Without `--cors` no page of another origin may call the API; with it,
/// that origin may, preflight included.
#[test]
fn cors_is_off_unless_an_origin_is_named() {
    let home = tempfile::tempdir().unwrap();
    let marian = model_dir("marian");
    let model = marian.to_str().unwrap();
    let get = |server: &Server, method: &str| {
        let req = format!(
            "{method} /languages HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        server.raw(req.as_bytes())
    };
    let closed = Server::start(home.path(), &["--model", model]);
    let (_, head, _) = get(&closed, "GET");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    let open = Server::start(
        home.path(),
        &["--model", model, "--cors", "https://app.example"],
    );
    let (status, head, _) = get(&open, "GET");
    assert_eq!(status, 200);
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    let (status, head, _) = get(&open, "OPTIONS");
    assert_eq!(status, 204);
    assert!(head.contains("access-control-allow-methods"), "{head}");
}

/// LibreTranslate's own Python client (`libretranslatepy`, from PyPI)
/// translates, detects and lists languages through `glot serve`, with an
/// API key.
#[test]
fn libretranslates_own_client_works_against_glot_serve() {
    let home = tempfile::tempdir().unwrap();
    let keys = home.path().join("keys.txt");
    std::fs::write(&keys, "k-123\n").unwrap();
    let marian = model_dir("marian");
    let model = marian.to_str().unwrap();
    let want = cli_translation(home.path(), TEXT, "txt", model);
    let server = Server::start(
        home.path(),
        &["--model", model, "--api-keys", keys.to_str().unwrap()],
    );
    let script = r#"
import json, sys
from libretranslatepy import LibreTranslateAPI
lt = LibreTranslateAPI(sys.argv[1], api_key="k-123")
out = {
    "translate": lt.translate(sys.argv[2], "en", "de"),
    "detect": lt.detect("Der Stadtrat hat am Montag über den Haushalt gesprochen."),
    "languages": lt.languages(),
}
try:
    LibreTranslateAPI(sys.argv[1], api_key="wrong").translate("Hello.", "en", "de")
    out["refused"] = None
except Exception as e:
    out["refused"] = getattr(e, "code", str(e))
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("http://127.0.0.1:{}", server.port))
        .arg(TEXT)
        .env("PYTHONPATH", libretranslatepy())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["translate"], want.as_str());
    assert_eq!(got["detect"][0]["language"], "de", "{got}");
    assert!(got["languages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["code"] == "fr" && l["name"] == "French"));
    assert_eq!(got["refused"], 403);
}

/// The server's resident memory, from /proc.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// 50 clients asking a chat model at once for 30 s on loopback, each
/// waiting 100 ms after a 429: every request is answered, 200 or 429; the
/// server stays up, and its memory stays within bounds. `--nocapture`
/// prints the figures.
#[test]
fn fifty_clients_for_thirty_seconds_all_get_answers() {
    let home = tempfile::tempdir().unwrap();
    // A chat model, whose requests decode together (`--parallel` 8).
    let server = chat_server(home.path(), &["--max-context", "512"]);
    let pid = server.child.id();
    let before = rss_mib(pid);
    let body = json!({"q": TEXT, "source": "en", "target": "de"}).to_string();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let peak = std::sync::Mutex::new(before);
    let results: Vec<(u16, f64)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    let mut seen = Vec::new();
                    while std::time::Instant::now() < until {
                        let start = std::time::Instant::now();
                        let (status, _, _) = server.request(
                            "POST",
                            "/translate",
                            "application/json",
                            body.as_bytes(),
                        );
                        seen.push((status, start.elapsed().as_secs_f64()));
                        // As a client should: wait a little when told to.
                        if status == 429 {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    seen
                })
            })
            .collect();
        while std::time::Instant::now() < until {
            let now = rss_mib(pid);
            let mut p = peak.lock().unwrap();
            *p = p.max(now);
            drop(p);
            std::thread::sleep(Duration::from_millis(250));
        }
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let peak = *peak.lock().unwrap();
    let ok: Vec<f64> = results.iter().filter(|r| r.0 == 200).map(|r| r.1).collect();
    let busy = results.iter().filter(|r| r.0 == 429).count();
    let other: Vec<u16> = results
        .iter()
        .map(|r| r.0)
        .filter(|s| ![200, 429].contains(s))
        .collect();
    let mut sorted = ok.clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    eprintln!(
        "load: {} requests in 30 s from 50 clients: {} answered 200 ({:.1}/s; latency p50 {:.3} s, p95 {:.3} s, max {:.3} s), {busy} answered 429, {} other; server RSS {before:.0} MiB before, {peak:.0} MiB at most",
        results.len(),
        ok.len(),
        ok.len() as f64 / 30.0,
        at(0.5),
        at(0.95),
        at(1.0),
        other.len(),
    );
    assert!(other.is_empty(), "{other:?}");
    assert!(!ok.is_empty() && busy > 0, "{} ok, {busy} busy", ok.len());
    assert!(peak < before + 256.0, "{before:.0} MiB, then {peak:.0} MiB");
    assert_eq!(server.get("/languages").0, 200);
    assert!(server.stop().success());
}

/// A request that takes longer than `--timeout` gets 500 and an error
/// saying so; the server goes on answering.
#[test]
fn a_request_over_the_timeout_gets_500() {
    let home = tempfile::tempdir().unwrap();
    let server = chat_server(home.path(), &["--timeout", "1", "--parallel", "1"]);
    let long = paragraphs(24);
    let (status, body) = server.json(
        "/translate",
        json!({"q": long, "source": "en", "target": "de"}),
    );
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("limit of 1 s"),
        "{body}"
    );
    assert_eq!(server.get("/languages").0, 200);
}
