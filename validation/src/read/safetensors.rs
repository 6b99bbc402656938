//! Weight headers: safetensors (single or sharded) and pytorch_model.bin, never the data.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tessera_core::inspection::{TensorInfo, WeightsFormat, WeightsIndex};
use tessera_core::Finding;

use super::read_json;

/// Headers larger than this are not a safetensors file (the format caps them at 100 MB).
const MAX_HEADER: u64 = 100 << 20;

pub(super) fn read(root: &Path, findings: &mut Vec<Finding>) -> Option<WeightsIndex> {
    let single = root.join("model.safetensors");
    if single.is_file() {
        let tensors = read_header(&single, findings)?;
        return Some(WeightsIndex {
            format: WeightsFormat::Safetensors,
            files: vec![single],
            tensors,
        });
    }
    let index = root.join("model.safetensors.index.json");
    if index.is_file() {
        return read_sharded(root, &index, findings);
    }
    let pth = root.join("pytorch_model.bin");
    if pth.is_file() {
        return read_pth(&pth, findings);
    }
    findings.push(
        Finding::error(
            "weights-missing",
            "no weights found (model.safetensors, model.safetensors.index.json or pytorch_model.bin)",
        )
        .in_file(&single)
        .fix("save the model with `model.save_pretrained(dir)` into the model directory"),
    );
    None
}

/// Reads one safetensors header. A truncated or corrupt file becomes a finding.
pub(crate) fn read_header(path: &Path, findings: &mut Vec<Finding>) -> Option<BTreeMap<String, TensorInfo>> {
    let corrupt = |findings: &mut Vec<Finding>, why: String| {
        findings.push(
            Finding::error("weights-corrupt", format!("the safetensors file is unreadable: {why}"))
                .in_file(path)
                .fix("download or save the weights again; the file is damaged or incomplete"),
        );
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) => {
            corrupt(findings, e.to_string());
            return None;
        }
    };
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut len_bytes = [0u8; 8];
    if file.read_exact(&mut len_bytes).is_err() {
        corrupt(
            findings,
            format!("only {file_len} bytes, shorter than the 8-byte header length"),
        );
        return None;
    }
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len + 8 > file_len {
        corrupt(
            findings,
            format!("header length {header_len} does not fit in a {file_len}-byte file"),
        );
        return None;
    }
    let mut header = vec![0u8; header_len as usize];
    if let Err(e) = file.read_exact(&mut header) {
        corrupt(findings, e.to_string());
        return None;
    }
    let header: BTreeMap<String, Value> = match serde_json::from_slice(&header) {
        Ok(h) => h,
        Err(e) => {
            corrupt(findings, format!("header is not valid JSON: {e}"));
            return None;
        }
    };
    let data_len = file_len - 8 - header_len;
    let mut tensors = BTreeMap::new();
    let mut truncated = Vec::new();
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = entry.get("dtype").and_then(Value::as_str).map(str::to_string);
        let shape: Option<Vec<usize>> = entry
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        let offsets = entry.get("data_offsets").and_then(Value::as_array);
        let begin = offsets.and_then(|o| o.first()).and_then(Value::as_u64);
        let end = offsets.and_then(|o| o.get(1)).and_then(Value::as_u64);
        let (Some(dtype), Some(shape), Some(begin), Some(end)) = (dtype, shape, begin, end) else {
            corrupt(
                findings,
                format!("tensor `{name}` has no valid dtype/shape/data_offsets"),
            );
            return None;
        };
        let elements = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let size = dtype_size(&dtype).zip(elements).and_then(|(s, n)| n.checked_mul(s));
        if end < begin || size.is_some_and(|size| size != end - begin) {
            corrupt(
                findings,
                format!(
                    "tensor `{name}` ({dtype} {shape:?}) does not match its {} stored bytes",
                    end.saturating_sub(begin)
                ),
            );
            return None;
        }
        if end > data_len {
            truncated.push(name.clone());
        }
        tensors.insert(
            name,
            TensorInfo {
                shape,
                dtype,
                file: path.to_path_buf(),
                bytes: Some(8 + header_len + begin..8 + header_len + end),
            },
        );
    }
    if !truncated.is_empty() {
        findings.push(
            Finding::error(
                "weights-truncated",
                format!(
                    "the file is truncated: {} tensor(s) end past its {data_len} data bytes (first: `{}`)",
                    truncated.len(),
                    truncated[0]
                ),
            )
            .in_file(path)
            .about(truncated[0].clone())
            .fix("the download was interrupted; fetch the weights again"),
        );
    }
    Some(tensors)
}

/// Bytes per element of a safetensors dtype; `None` for types this check does not know.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

fn read_sharded(root: &Path, index: &Path, findings: &mut Vec<Finding>) -> Option<WeightsIndex> {
    let invalid = |findings: &mut Vec<Finding>, why: String| {
        findings.push(
            Finding::error("weights-index-invalid", format!("model.safetensors.index.json {why}"))
                .in_file(index)
                .fix("save the model again; the index must map every tensor to a shard"),
        );
    };
    let value = match read_json(index)? {
        Ok(value) => value,
        Err(problem) => {
            invalid(findings, problem.describe());
            return None;
        }
    };
    let Some(map) = value.get("weight_map").and_then(Value::as_object) else {
        invalid(findings, "has no `weight_map` object".into());
        return None;
    };
    let mut shards: Vec<String> = map.values().filter_map(Value::as_str).map(str::to_string).collect();
    shards.sort();
    shards.dedup();
    let mut tensors = BTreeMap::new();
    let mut files = Vec::new();
    for shard in shards {
        let path = root.join(&shard);
        if shard.contains("..") || !path.is_file() {
            findings.push(
                Finding::error(
                    "weights-missing",
                    format!("shard `{shard}` named in the index is missing"),
                )
                .in_file(&path)
                .fix("download every shard listed in model.safetensors.index.json"),
            );
            continue;
        }
        if let Some(t) = read_header(&path, findings) {
            tensors.extend(t);
        }
        files.push(path);
    }
    Some(WeightsIndex {
        format: WeightsFormat::ShardedSafetensors,
        files,
        tensors,
    })
}

fn read_pth(path: &Path, findings: &mut Vec<Finding>) -> Option<WeightsIndex> {
    match candle_core::pickle::read_pth_tensor_info(path, false, None) {
        Ok(infos) => {
            let tensors = infos
                .into_iter()
                .map(|info| {
                    let dtype = format!("{:?}", info.dtype).to_uppercase();
                    (
                        info.name,
                        TensorInfo {
                            shape: info.layout.shape().dims().to_vec(),
                            dtype,
                            file: PathBuf::from(path),
                            bytes: None,
                        },
                    )
                })
                .collect();
            Some(WeightsIndex {
                format: WeightsFormat::PyTorch,
                files: vec![path.to_path_buf()],
                tensors,
            })
        }
        Err(e) => {
            findings.push(
                Finding::error("weights-corrupt", format!("pytorch_model.bin cannot be read: {e}"))
                    .in_file(path)
                    .fix("convert the weights to safetensors or save them again"),
            );
            None
        }
    }
}
