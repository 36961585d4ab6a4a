//! A tiny stand-in for the Hugging Face Hub on 127.0.0.1, speaking the parts
//! of its protocol hf-hub uses: `resolve` URLs answered to HEAD and GET, LFS
//! files redirected to a CDN path with `X-Linked-Etag` (their SHA-256) and
//! `X-Linked-Size`, `X-Repo-Commit` on every file, and the hub's 401, 403 and
//! 404 answers with `X-Error-Code`. Faults can be injected per file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

/// One repository: files at one commit.
#[derive(Clone, Default)]
pub struct Repo {
    pub files: HashMap<String, Vec<u8>>,
    /// Requests must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The branch the files are on, when not `main` (`refs/pr/4`).
    pub revision: Option<String>,
}

/// What to do wrong for a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// Serve bytes whose hash is not the advertised one.
    Corrupt,
    /// Close the connection halfway through the body.
    Drop,
    /// Accept the request and never answer.
    Hang,
}

#[derive(Default)]
pub struct State {
    pub repos: HashMap<String, Repo>,
    pub faults: HashMap<String, Fault>,
    /// `METHOD path authorization` of every request.
    pub log: Vec<String>,
}

pub struct Hub {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The commit every repository is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".gguf") || file.ends_with(".safetensors")
}

impl Hub {
    pub fn start(repos: HashMap<String, Repo>) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            repos,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || serve(stream, st, port));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Hub {
            url: format!("http://127.0.0.1:{port}"),
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn fault(&self, file: &str, fault: Option<Fault>) {
        let mut s = self.state.lock().unwrap();
        match fault {
            Some(f) => s.faults.insert(file.to_string(), f),
            None => s.faults.remove(file),
        };
    }

    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// Stops accepting connections; the port then refuses them.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
) {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    let mut has_len = false;
    for (k, v) in headers {
        has_len |= k.eq_ignore_ascii_case("content-length");
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes());
    if !head {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
}

fn error(stream: &mut TcpStream, status: &str, code: &str, head: bool) {
    let body = format!("{{\"error\":\"{code}\"}}");
    respond(
        stream,
        status,
        &[
            ("X-Error-Code".into(), code.into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body.as_bytes(),
        head,
    );
}

fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>, port: u16) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = v.trim().to_string();
            }
        }
    }
    let head = method == "HEAD";
    let mut st = state.lock().unwrap();
    st.log.push(format!("{method} {path} {auth}"));

    if let Some(sha) = path.strip_prefix("/cdn/") {
        // The CDN: bytes by hash, with the fault of the file they belong to.
        let found = st
            .repos
            .values()
            .flat_map(|r| r.files.iter())
            .find(|(_, b)| sha256(b) == sha);
        let Some((name, bytes)) = found.map(|(n, b)| (n.clone(), b.clone())) else {
            return error(&mut stream, "404 Not Found", "EntryNotFound", head);
        };
        let fault = st.faults.get(&name).copied();
        drop(st);
        return send_bytes(&mut stream, bytes, fault, head);
    }

    // /{owner}/{name}/resolve/{revision}/{file}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() != 5 || segs[2] != "resolve" {
        return error(&mut stream, "404 Not Found", "RepoNotFound", head);
    }
    let repo_id = format!("{}/{}", segs[0], segs[1]);
    let (revision, file) = (segs[3], segs[4]);
    let Some(repo) = st.repos.get(&repo_id).cloned() else {
        // The hub answers 401 for repos it will not admit exist.
        return error(&mut stream, "401 Unauthorized", "RepoNotFound", head);
    };
    if let Some(token) = &repo.token {
        if auth.is_empty() {
            return error(&mut stream, "401 Unauthorized", "GatedRepo", head);
        }
        if auth != format!("Bearer {token}") {
            return error(&mut stream, "403 Forbidden", "GatedRepo", head);
        }
    }
    // hf-hub sends a revision as one segment, its slashes percent-encoded.
    let revision = revision.replace("%2F", "/").replace("%2f", "/");
    if revision != repo.revision.as_deref().unwrap_or("main") && revision != COMMIT {
        return error(&mut stream, "404 Not Found", "RevisionNotFound", head);
    }
    let Some(bytes) = repo.files.get(file).cloned() else {
        return error(&mut stream, "404 Not Found", "EntryNotFound", head);
    };
    let fault = st.faults.get(file).copied();
    drop(st);
    if fault == Some(Fault::Hang) {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        return;
    }
    let mut headers = vec![("X-Repo-Commit".to_string(), COMMIT.to_string())];
    if is_lfs(file) {
        let sha = sha256(&bytes);
        headers.push(("X-Linked-Etag".into(), format!("\"{sha}\"")));
        headers.push(("X-Linked-Size".into(), bytes.len().to_string()));
        headers.push(("ETag".into(), format!("\"{sha}\"")));
        headers.push((
            "Location".into(),
            format!("http://127.0.0.1:{port}/cdn/{sha}"),
        ));
        respond(&mut stream, "302 Found", &headers, b"", head);
    } else {
        // Small files are stored in git: their ETag is a git object id.
        let etag = &sha256(&bytes)[..40];
        headers.push(("ETag".into(), format!("\"{etag}\"")));
        respond(&mut stream, "200 OK", &headers, &bytes, head);
    }
}

fn send_bytes(stream: &mut TcpStream, mut bytes: Vec<u8>, fault: Option<Fault>, head: bool) {
    match fault {
        Some(Fault::Corrupt) => {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            respond(stream, "200 OK", &[], &bytes, head);
        }
        Some(Fault::Drop) if !head => {
            let header = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&bytes[..bytes.len() / 2]);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        _ => respond(stream, "200 OK", &[], &bytes, head),
    }
}
