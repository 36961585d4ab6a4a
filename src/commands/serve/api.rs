//! The HTTP side of `glot serve`: LibreTranslate's paths, fields and error
//! shapes, and `/summarize`.
//!
//! Every request body may be JSON or a form (`/translate_file` a multipart
//! form); every error is `{"error": "…"}`: 400 for a request that cannot be
//! answered as it is, 403 for a missing or unknown API key, 413 for a body
//! over the limit, 429 when the queue is full, 500 when the model fails or
//! takes longer than `--timeout`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State as Shared};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use glot::markup::Format;
use glot::text::lang::{self, Language};
use serde_json::{json, Map, Value};

use super::work::{Done, Failure, Job, Task};
use crate::printer::Printer;
use crate::settings::ServeSettings;

/// What every request reads, and the queue to the workers.
pub struct State {
    pub model: String,
    keys: Option<HashSet<String>>,
    /// `None` once the server stops taking work.
    tx: Mutex<Option<SyncSender<Task>>>,
    queue: usize,
    char_limit: usize,
    body_limit: usize,
    timeout: Duration,
    cors: Option<String>,
    /// Whether the model writes summaries.
    summaries: bool,
    languages: Vec<Listed>,
    files: Mutex<Files>,
}

/// A language as `/languages` lists it.
#[derive(serde::Serialize)]
pub struct Listed {
    pub code: &'static str,
    pub name: &'static str,
    pub targets: Vec<&'static str>,
}

/// Translated files waiting to be downloaded, oldest first.
#[derive(Default)]
struct Files {
    by_name: HashMap<String, (Vec<u8>, &'static str)>,
    order: VecDeque<String>,
}

/// Translated files kept for download: the oldest go first.
const KEPT_FILES: usize = 64;

impl State {
    pub fn new(
        s: &ServeSettings,
        keys: Option<HashSet<String>>,
        tx: SyncSender<Task>,
        model: String,
        summaries: bool,
        languages: Vec<Listed>,
    ) -> State {
        State {
            model,
            keys,
            tx: Mutex::new(Some(tx)),
            queue: s.queue,
            char_limit: s.char_limit,
            body_limit: s.body_limit,
            timeout: s.timeout,
            cors: s.cors.clone(),
            summaries,
            languages,
            files: Mutex::default(),
        }
    }

    /// Takes no more work: the workers end once the queue is empty.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
    }

    /// Hands `job` to the workers and waits for its answer.
    async fn submit(&self, job: Job) -> Result<Done, ApiError> {
        let answer = self.enqueue(job, None)?;
        self.answer(answer).await
    }

    /// Hands `job` to the workers: where its answer will come.
    fn enqueue(
        &self,
        job: Job,
        live: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Done, Failure>>, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let tx = self.tx.lock().ok().and_then(|tx| tx.clone());
        let Some(tx) = tx else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            ));
        };
        match tx.try_send(Task { job, reply, live }) {
            Ok(()) => Ok(answer),
            Err(TrySendError::Full(_)) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many requests: {} are waiting already; try again later",
                    self.queue
                ),
            )),
            Err(TrySendError::Disconnected(_)) => {
                Err(ApiError::internal("the model stopped answering"))
            }
        }
    }

    /// The answer to a job handed over, within the timeout.
    async fn answer(
        &self,
        answer: tokio::sync::oneshot::Receiver<Result<Done, Failure>>,
    ) -> Result<Done, ApiError> {
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(ApiError::internal(format!(
                "the request took longer than the server's limit of {} s",
                self.timeout.as_secs()
            ))),
            Ok(Err(_)) => Err(ApiError::internal("the model stopped answering")),
            Ok(Ok(Ok(done))) => Ok(done),
            Ok(Ok(Err(Failure::Bad(m)))) => Err(ApiError::bad(m)),
            Ok(Ok(Err(Failure::Failed(m)))) => Err(ApiError::internal(m)),
        }
    }

    /// Refuses a request without a listed key, when keys are set.
    fn check_key(&self, params: &Params) -> Result<(), ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        match params.str("api_key") {
            Some(k) if keys.contains(k) => Ok(()),
            Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "Invalid API key")),
            None => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "An API key is required (api_key)",
            )),
        }
    }

    /// Refuses texts longer than `--char-limit` in all.
    fn check_chars<'t>(&self, texts: impl IntoIterator<Item = &'t String>) -> Result<(), ApiError> {
        let chars: usize = texts.into_iter().map(|t| t.chars().count()).sum();
        if self.char_limit > 0 && chars > self.char_limit {
            return Err(ApiError::bad(format!(
                "Invalid request: request ({chars}) exceeds text limit ({})",
                self.char_limit
            )));
        }
        Ok(())
    }

    fn keep_file(&self, name: String, data: Vec<u8>, kind: &'static str) {
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        while files.order.len() >= KEPT_FILES {
            if let Some(old) = files.order.pop_front() {
                files.by_name.remove(&old);
            }
        }
        files.order.push_back(name.clone());
        files.by_name.insert(name, (data, kind));
    }
}

/// An error as LibreTranslate gives it: a status and `{"error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn missing(name: &str) -> ApiError {
        ApiError::bad(format!("Invalid request: missing {name} parameter"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// A request's fields, from a JSON object, a form or the query string.
struct Params(Map<String, Value>);

impl Params {
    fn read(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Result<Params, ApiError> {
        let mut map = Map::new();
        if let Some(q) = query {
            add_form(&mut map, q.as_bytes());
        }
        let kind = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let json = kind.starts_with("application/json")
            || (kind.is_empty() && body.trim_ascii_start().starts_with(b"{"));
        if json {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(fields)) => map.extend(fields),
                Ok(_) => {
                    return Err(ApiError::bad(
                        "Invalid request: the body is not a JSON object",
                    ))
                }
                Err(e) => return Err(ApiError::bad(format!("Invalid request: bad JSON ({e})"))),
            }
        } else if !body.is_empty() {
            add_form(&mut map, body);
        }
        Ok(Params(map))
    }

    /// A field given as a string (or a number), if any; empty is none.
    fn str(&self, name: &str) -> Option<&str> {
        match self.0.get(name)? {
            Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name).ok_or_else(|| ApiError::missing(name))
    }

    /// The language `field` names; `None` for `auto`, or none named.
    fn language_or_auto(&self, field: &str) -> Result<Option<Language>, ApiError> {
        match self.str(field).unwrap_or("auto") {
            "auto" => Ok(None),
            named => language(field, named).map(Some),
        }
    }

    /// The translation of `texts` the fields ask for, in `format`, or in
    /// the one the `format` field names.
    fn translation(&self, texts: Vec<String>, format: Option<Format>) -> Result<Job, ApiError> {
        Ok(Job::Translate {
            texts,
            source: self.language_or_auto("source")?,
            target: language("target", self.required("target")?)?,
            format: match format {
                Some(f) => f,
                None => self::format(self)?,
            },
        })
    }

    /// The summary of `text` the fields ask for.
    fn summary(&self, text: String) -> Result<Job, ApiError> {
        Ok(Job::Summarize {
            text,
            format: format(self)?,
            language: self.language_or_auto("lang")?,
            words: words(self)?,
        })
    }

    /// `q`: one text, or a list of them (`true` for a list).
    fn texts(&self) -> Result<(Vec<String>, bool), ApiError> {
        match self.0.get("q") {
            Some(Value::String(s)) => Ok((vec![s.clone()], false)),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::bad(
                        "Invalid request: q holds a value that is not text",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|t| (t, true)),
            Some(_) => Err(ApiError::bad("Invalid request: q is not text")),
            None => Err(ApiError::missing("q")),
        }
    }
}

/// A request's fields, its API key checked: every endpoint that works the
/// model takes them so.
impl FromRequest<Arc<State>> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &Arc<State>) -> Result<Params, ApiError> {
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().map(String::from);
        let headers = parts.headers.clone();
        let bytes = Bytes::from_request(Request::from_parts(parts, body), st)
            .await
            .map_err(|e| {
                ApiError::new(e.status(), format!("Invalid request: {}", e.body_text()))
            })?;
        let params = Params::read(&headers, query.as_deref(), &bytes)?;
        st.check_key(&params)?;
        Ok(params)
    }
}

/// Fields of a form (or query string); a name given twice gives a list.
fn add_form(map: &mut Map<String, Value>, form: &[u8]) {
    for (k, v) in form_urlencoded(form) {
        match map.get_mut(&k) {
            Some(Value::Array(list)) => list.push(Value::String(v)),
            Some(first) => {
                let first = first.take();
                map.insert(k, Value::Array(vec![first, Value::String(v)]));
            }
            None => {
                map.insert(k, Value::String(v));
            }
        }
    }
}

fn form_urlencoded(form: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(form).unwrap_or_default()
}

/// A language of a request: a code or a name glot knows.
fn language(field: &str, value: &str) -> Result<Language, ApiError> {
    lang::resolve(value).map_err(|_| ApiError::bad(format!("{value} is not supported ({field})")))
}

/// `format`: `text` (the default) or `html`; `markdown` too.
fn format(params: &Params) -> Result<Format, ApiError> {
    match params.str("format").unwrap_or("text") {
        "text" => Ok(Format::Text),
        "html" => Ok(Format::Html),
        "markdown" => Ok(Format::Markdown),
        other => Err(ApiError::bad(format!(
            "Invalid request: format {other} is not text, html or markdown"
        ))),
    }
}

type Reply = Result<Response, ApiError>;

async fn translate(Shared(st): Shared<Arc<State>>, params: Params) -> Reply {
    let (texts, list) = params.texts()?;
    st.check_chars(&texts)?;
    let job = params.translation(texts, None)?;
    let auto = matches!(job, Job::Translate { source: None, .. });
    let Done::Translated(out) = st.submit(job).await? else {
        return Err(ApiError::internal(
            "a translation came back as something else",
        ));
    };
    let detected = |d: &Option<lang::Detected>| match d {
        Some(d) => {
            json!({"confidence": (d.confidence * 100.0).round(), "language": d.language.code})
        }
        None => json!({"confidence": 0.0, "language": "en"}),
    };
    let body = match list {
        true => {
            let texts: Vec<&str> = out.iter().map(|t| t.text.as_str()).collect();
            let mut b = json!({ "translatedText": texts });
            if auto {
                b["detectedLanguage"] = out.iter().map(|t| detected(&t.detected)).collect();
            }
            b
        }
        false => {
            let t = &out[0];
            let mut b = json!({ "translatedText": t.text });
            if auto {
                b["detectedLanguage"] = detected(&t.detected);
            }
            b
        }
    };
    Ok(Json(body).into_response())
}

async fn detect(Shared(st): Shared<Arc<State>>, params: Params) -> Reply {
    let (texts, _) = params.texts()?;
    st.check_chars(&texts)?;
    let found: Vec<Value> = lang::detect(&texts.join("\n\n"))
        .map(|d| json!({"confidence": (d.confidence * 100.0).round(), "language": d.language.code}))
        .into_iter()
        .collect();
    Ok(Json(found).into_response())
}

async fn languages(Shared(st): Shared<Arc<State>>) -> Reply {
    Ok(Json(&st.languages).into_response())
}

async fn frontend_settings(Shared(st): Shared<Arc<State>>) -> Reply {
    Ok(Json(json!({
        "apiKeys": st.keys.is_some(),
        "keyRequired": st.keys.is_some(),
        "charLimit": st.char_limit,
        "frontendTimeout": 500,
        "filesTranslation": true,
        "supportedFilesFormat": [".txt", ".md", ".html", ".htm"],
        "suggestions": false,
        "summaries": st.summaries,
        "model": st.model,
        "language": {
            "source": {"code": "auto", "name": "Auto Detect"},
            "target": {"code": "en", "name": "English"},
        },
    }))
    .into_response())
}

async fn summarize(Shared(st): Shared<Arc<State>>, params: Params) -> Reply {
    let text = match (params.str("q"), params.str("text")) {
        (Some(t), _) | (None, Some(t)) => t.to_string(),
        (None, None) => return Err(ApiError::missing("q")),
    };
    st.check_chars([&text])?;
    let job = params.summary(text)?;
    let Done::Summary(mut out) = st.submit(job).await? else {
        return Err(ApiError::internal("a summary came back as something else"));
    };
    out["model"] = Value::String(st.model.clone());
    Ok(Json(out).into_response())
}

/// `/stream`: a translation or summary of one text as Server-Sent Events,
/// for the page at `/`: `text` events carry the result settled so far
/// (all of it, each time), then `done` the whole result as `/translate` or
/// `/summarize` answers it, or `error` an error as they give it.
async fn stream(Shared(st): Shared<Arc<State>>, params: Params) -> Reply {
    let text = match params.texts()? {
        (mut texts, false) => texts.remove(0),
        (_, true) => return Err(ApiError::bad("Invalid request: /stream takes one text")),
    };
    st.check_chars([&text])?;
    let job = match params.str("task").unwrap_or("translate") {
        "translate" => params.translation(vec![text], None)?,
        "summarize" => params.summary(text)?,
        other => {
            return Err(ApiError::bad(format!(
                "Invalid request: task {other} is not translate or summarize"
            )))
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let answer = st.enqueue(job, Some(tx))?;
    let deadline = tokio::time::Instant::now() + st.timeout;
    let events = futures_util::stream::unfold(Some((rx, answer, st)), move |state| async move {
        let (mut rx, answer, st) = state?;
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(text)) => {
                return Some((sse("text", json!({ "text": text })), Some((rx, answer, st))))
            }
            // The job is over: its answer follows.
            Ok(None) => match st.answer(answer).await {
                Ok(Done::Translated(mut t)) => {
                    let t = t.remove(0);
                    let detected = t.detected.map(|d| d.language.code);
                    sse(
                        "done",
                        json!({ "text": t.text, "detectedLanguage": detected }),
                    )
                }
                Ok(Done::Summary(mut v)) => {
                    v["model"] = Value::String(st.model.clone());
                    sse("done", v)
                }
                Err(e) => sse(
                    "error",
                    json!({ "error": e.message, "status": e.status.as_u16() }),
                ),
            },
            Err(_) => sse(
                "error",
                json!({
                    "error": format!("the request took longer than the server's limit of {} s", st.timeout.as_secs()),
                    "status": 500,
                }),
            ),
        };
        Some((event, None))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse(name: &str, data: Value) -> Result<Event, std::convert::Infallible> {
    Ok(Event::default().event(name).data(data.to_string()))
}

/// The summary's length: `words`, or `length` short, medium or long.
fn words(params: &Params) -> Result<usize, ApiError> {
    match (params.0.get("words"), params.str("length")) {
        (Some(w), _) => match w.as_u64().or_else(|| w.as_str()?.parse().ok()) {
            Some(n) if (10..=2000).contains(&n) => Ok(n as usize),
            _ => Err(ApiError::bad(
                "Invalid request: words is a number from 10 to 2000",
            )),
        },
        (None, None | Some("medium")) => Ok(150),
        (None, Some("short")) => Ok(60),
        (None, Some("long")) => Ok(300),
        (None, Some(other)) => Err(ApiError::bad(format!(
            "Invalid request: length {other} is not short, medium or long"
        ))),
    }
}

/// The page at `/`: a form over `/stream`, with no build step and nothing
/// fetched from elsewhere.
async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// The formats `/translate_file` takes, by extension.
fn file_format(name: &str) -> Option<(Format, &'static str)> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "txt" => Some((Format::Text, "text/plain; charset=utf-8")),
        "md" | "markdown" => Some((Format::Markdown, "text/markdown; charset=utf-8")),
        "html" | "htm" => Some((Format::Html, "text/html; charset=utf-8")),
        _ => None,
    }
}

async fn translate_file(
    Shared(st): Shared<Arc<State>>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Reply {
    let mut multipart = multipart
        .map_err(|e| ApiError::new(e.status(), format!("Invalid request: {}", e.body_text())))?;
    let mut fields = Map::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    loop {
        let field = multipart.next_field().await.map_err(|e| {
            ApiError::new(e.status(), format!("Invalid request: {}", e.body_text()))
        })?;
        let Some(field) = field else {
            break;
        };
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let filename = field.file_name().unwrap_or("file.txt").to_string();
            let data = field.bytes().await.map_err(|e| {
                ApiError::new(e.status(), format!("Invalid request: {}", e.body_text()))
            })?;
            file = Some((filename, data.to_vec()));
        } else {
            let value = field.text().await.unwrap_or_default();
            fields.insert(name, Value::String(value));
        }
    }
    let params = Params(fields);
    st.check_key(&params)?;
    let (filename, data) = file.ok_or_else(|| ApiError::missing("file"))?;
    let Some((format, kind)) = file_format(&filename) else {
        return Err(ApiError::bad(
            "Invalid request: file format not supported (.txt, .md, .html)",
        ));
    };
    let (text, _) = glot::input::decode(&filename, &data, false)
        .map_err(|e| ApiError::bad(format!("Invalid request: {e}")))?;
    st.check_chars([&text])?;
    let job = params.translation(vec![text], Some(format))?;
    let Job::Translate { target, .. } = &job else {
        unreachable!("a translation")
    };
    let code = target.code.clone();
    let Done::Translated(mut out) = st.submit(job).await? else {
        return Err(ApiError::internal(
            "a translation came back as something else",
        ));
    };
    let translated = out.remove(0).text;
    // The name the file came with, its language before its extension.
    let base = filename.rsplit(['/', '\\']).next().unwrap_or("file.txt");
    let (stem, ext) = base.rsplit_once('.').unwrap_or((base, "txt"));
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let id: u64 = rand::random();
    let name = format!("{id:016x}-{}.{}.{}", clean(stem), clean(&code), clean(ext));
    st.keep_file(name.clone(), translated.into_bytes(), kind);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    Ok(Json(json!({
        "translatedFileUrl": format!("http://{host}/download_file/{name}")
    }))
    .into_response())
}

async fn download_file(Shared(st): Shared<Arc<State>>, Path(name): Path<String>) -> Reply {
    let files = st
        .files
        .lock()
        .map_err(|_| ApiError::internal("the file store failed"))?;
    let Some((data, kind)) = files.by_name.get(&name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such file (files are kept for a while only)",
        ));
    };
    let disposition = format!(
        "attachment; filename=\"{}\"",
        name.split_once('-').map_or(name.as_str(), |(_, n)| n)
    );
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        data.clone(),
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Not Found")
}

/// CORS headers for the one origin `--cors` names (`*` for any), and
/// answers to browsers' preflight requests; nothing without `--cors`.
async fn cors(Shared(st): Shared<Arc<State>>, req: Request, next: Next) -> Response {
    let Some(allowed) = st.cors.clone() else {
        return next.run(req).await;
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(String::from);
    let allow = match origin {
        Some(o) if allowed == "*" || o == allowed => {
            Some(if allowed == "*" { "*".to_string() } else { o })
        }
        _ => None,
    };
    let preflight = req.method() == Method::OPTIONS;
    let mut res = match preflight {
        true => StatusCode::NO_CONTENT.into_response(),
        false => next.run(req).await,
    };
    if let Some(a) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, a);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if preflight {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Content-Type"),
            );
        }
    }
    res
}

fn router(st: Arc<State>) -> Router {
    Router::new()
        .route("/translate", post(translate))
        .route("/detect", post(detect))
        .route("/languages", get(languages).post(languages))
        .route("/frontend/settings", get(frontend_settings))
        .route("/translate_file", post(translate_file))
        .route("/download_file/{name}", get(download_file))
        .route("/summarize", post(summarize))
        .route("/stream", post(stream))
        .route("/", get(page))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(st.body_limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&st), cors))
        .with_state(st)
}

/// Serves HTTP on `listener` until SIGTERM or Ctrl-C, then finishes the
/// requests in flight.
pub fn listen(listener: std::net::TcpListener, st: Arc<State>, printer: &Printer) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let quiet = printer.quiet();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router(st))
            .with_graceful_shutdown(async move {
                stop_signal().await;
                if !quiet {
                    eprintln!(
                        "glot: stopping: answering the requests in flight, taking no new ones"
                    );
                }
            })
            .await?;
        Ok(())
    })
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
