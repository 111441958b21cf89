//! The recorded sample records of `samples/`, loaded as Kafka records.

use std::path::Path;

use base64::Engine;
use serde_json::Value;

/// One recorded record: `mode`, `key`, `headers` as `[name, value]` pairs, and the value
/// as JSON (`value`, structured mode) or as base64 (`value_base64`, binary mode).
pub struct Sample {
    pub name: String,
    pub json: Value,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Vec<u8>,
}

impl Sample {
    /// The headers in the shape `hookgate_event::Record` takes.
    pub fn borrowed_headers(&self) -> Vec<(&str, &[u8])> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect()
    }
}

/// Every sample, by file name.
pub fn samples() -> Vec<Sample> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

fn load(path: &Path) -> Sample {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let json: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let headers = json["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let value = h[1].as_str().unwrap().as_bytes().to_vec();
            (h[0].as_str().unwrap().to_string(), value)
        })
        .collect();
    let value = match json["mode"].as_str().unwrap() {
        "structured" => serde_json::to_vec(&json["value"]).unwrap(),
        _ => base64::engine::general_purpose::STANDARD
            .decode(json["value_base64"].as_str().unwrap())
            .unwrap(),
    };
    Sample {
        name,
        json,
        headers,
        value,
    }
}
