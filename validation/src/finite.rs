//! The deep check: every weight value read once, and tensors holding NaN or infinity named.
//! A model with one NaN in an embedding row answers with NaN for every text that reaches that
//! row, so `serve` refuses it at load and `validate-model --deep` reports it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use tessera_core::inspection::{TensorInfo, WeightsFormat, WeightsIndex};
use tessera_core::Finding;

/// Bytes read at a time: bounded memory whatever the tensor's size.
const CHUNK: usize = 1 << 20;

/// Tensors named in the finding; the rest are counted.
const LISTED: usize = 3;

/// Largest finite float16 magnitude: larger values become infinite when converted.
const F16_MAX: f64 = 65504.0;

/// NaN and infinite values found in one tensor, and finite ones beyond float16's range.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    nan: u64,
    infinite: u64,
    beyond_f16: u64,
}

impl Count {
    fn any(self) -> bool {
        self.nan + self.infinite > 0
    }

    fn add(&mut self, other: Count) {
        self.nan += other.nan;
        self.infinite += other.infinite;
        self.beyond_f16 += other.beyond_f16;
    }
}

/// A float format: element size and how to tell NaN from infinity in its bits.
#[derive(Debug, Clone, Copy)]
struct Float {
    size: usize,
    /// Exponent bits (all set: NaN or infinity).
    exponent: u64,
    /// Mantissa bits (zero with a full exponent: infinity).
    mantissa: u64,
}

impl Float {
    fn of(dtype: &str) -> Option<Self> {
        Some(match dtype {
            "F64" => Float {
                size: 8,
                exponent: 0x7ff0_0000_0000_0000,
                mantissa: 0x000f_ffff_ffff_ffff,
            },
            "F32" => Float {
                size: 4,
                exponent: 0x7f80_0000,
                mantissa: 0x007f_ffff,
            },
            "F16" => Float {
                size: 2,
                exponent: 0x7c00,
                mantissa: 0x03ff,
            },
            "BF16" => Float {
                size: 2,
                exponent: 0x7f80,
                mantissa: 0x007f,
            },
            _ => return None,
        })
    }

    /// Counts non-finite values in little-endian `bytes` (a whole number of elements), and
    /// finite values beyond float16's range.
    fn count(self, bytes: &[u8]) -> Count {
        let mut count = Count::default();
        let mut check = |bits: u64, value: f64| {
            if bits & self.exponent == self.exponent {
                if bits & self.mantissa == 0 {
                    count.infinite += 1;
                } else {
                    count.nan += 1;
                }
            } else if value.abs() > F16_MAX {
                count.beyond_f16 += 1;
            }
        };
        // The common case (every value finite and in float16's range) is one cheap test per
        // block; only a block that fails it is examined value by value.
        match self.size {
            4 => {
                // For non-negative floats the bit patterns order like the values, and NaN and
                // infinity lie above every finite one: one integer max per block (which
                // vectorizes) tells whether the block needs a closer look.
                const F16_MAX_BITS: u32 = 0x477f_e000;
                for block in bytes.chunks(4096) {
                    let bits = block
                        .chunks_exact(4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                    if bits.fold(0, u32::max) > F16_MAX_BITS {
                        block.chunks_exact(4).for_each(|b| {
                            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            check(u64::from(v.to_bits()), f64::from(v))
                        });
                    }
                }
            }
            2 => bytes.chunks_exact(2).for_each(|b| {
                let bits = u16::from_le_bytes([b[0], b[1]]);
                // float16 values are in range by construction; bfloat16's are its upper f32 half.
                let value = if self.exponent == 0x7c00 {
                    0.0
                } else {
                    f64::from(f32::from_bits(u32::from(bits) << 16))
                };
                check(u64::from(bits), value)
            }),
            _ => bytes.chunks_exact(8).for_each(|b| {
                let mut word = [0u8; 8];
                word.copy_from_slice(b);
                let bits = u64::from_le_bytes(word);
                check(bits, f64::from_bits(bits))
            }),
        }
        count
    }
}

/// Reads every float tensor of `weights` and returns one error finding naming the tensors that
/// hold NaN or infinity (none when all values are finite), and with `float16`, one naming those
/// with values beyond float16's range (they would turn infinite when converted at load).
/// Reading failures become findings too.
pub fn scan_weights(weights: &WeightsIndex, float16: bool) -> Vec<Finding> {
    let mut counts: BTreeMap<String, Count> = BTreeMap::new();
    let mut findings = Vec::new();
    match weights.format {
        WeightsFormat::Safetensors | WeightsFormat::ShardedSafetensors => {
            for file in &weights.files {
                let tensors = weights.tensors.iter().filter(|(_, t)| &t.file == file);
                if let Err(e) = scan_safetensors(file, tensors, &mut counts) {
                    findings.push(unreadable(file, &e.to_string()));
                }
            }
        }
        WeightsFormat::PyTorch => {
            for file in &weights.files {
                if let Err(e) = scan_pth(file, &mut counts) {
                    findings.push(unreadable(file, &e.to_string()));
                }
            }
        }
    }
    let file_of = |name: &str| weights.tensors.get(name).map(|t| t.file.clone()).unwrap_or_default();
    let non_finite: Vec<(&String, String)> = counts
        .iter()
        .filter(|(_, c)| c.any())
        .map(|(name, c)| {
            let what = match (c.nan, c.infinite) {
                (nan, 0) => format!("{nan} NaN"),
                (0, inf) => format!("{inf} infinite"),
                (nan, inf) => format!("{nan} NaN, {inf} infinite"),
            };
            (name, what)
        })
        .collect();
    if let Some((first, _)) = non_finite.first() {
        findings.push(
            Finding::error(
                "weights-non-finite",
                format!("the weights hold NaN or infinite values: {}", listing(&non_finite)),
            )
            .in_file(file_of(first))
            .about(first.to_string())
            .fix(
                "the checkpoint is damaged or its training diverged; save the weights again from a healthy checkpoint",
            ),
        );
    }
    let beyond: Vec<(&String, String)> = counts
        .iter()
        .filter(|(_, c)| c.beyond_f16 > 0)
        .map(|(name, c)| (name, format!("{} values", c.beyond_f16)))
        .collect();
    if let (true, Some((first, _))) = (float16, beyond.first()) {
        findings.push(
            Finding::error(
                "weights-overflow-float16",
                format!(
                    "values beyond float16's range (+-65504) would become infinite at --dtype float16: {}",
                    listing(&beyond)
                ),
            )
            .in_file(file_of(first))
            .about(first.to_string())
            .fix("serve it in float32 or bfloat16 (--dtype)"),
        );
    }
    findings
}

/// The first few `name (what)` entries, then how many more.
fn listing(entries: &[(&String, String)]) -> String {
    let mut listed: Vec<String> = entries
        .iter()
        .take(LISTED)
        .map(|(name, what)| format!("`{name}` ({what})"))
        .collect();
    if entries.len() > LISTED {
        listed.push(format!("and {} more tensors", entries.len() - LISTED));
    }
    listed.join(", ")
}

fn unreadable(file: &Path, why: &str) -> Finding {
    Finding::error("weights-corrupt", format!("the weights cannot be read: {why}"))
        .in_file(file)
        .fix("download or save the weights again; the file is damaged or incomplete")
}

fn scan_safetensors<'a>(
    path: &Path,
    tensors: impl Iterator<Item = (&'a String, &'a TensorInfo)>,
    bad: &mut BTreeMap<String, Count>,
) -> std::io::Result<()> {
    let mut file = File::open(path)?;
    let mut tensors: Vec<_> = tensors
        .filter_map(|(name, t)| Some((name, t.bytes.clone()?, Float::of(&t.dtype)?)))
        .collect();
    // In file order, so the reads are sequential.
    tensors.sort_by_key(|(_, bytes, _)| bytes.start);
    let mut buffer = vec![0u8; CHUNK];
    for (name, bytes, float) in tensors {
        file.seek(SeekFrom::Start(bytes.start))?;
        let mut left = bytes.end.saturating_sub(bytes.start);
        let mut count = Count::default();
        // A whole number of elements per read, so no value straddles two chunks.
        let step = (CHUNK / float.size * float.size) as u64;
        while left > 0 {
            let n = left.min(step) as usize;
            file.read_exact(&mut buffer[..n])?;
            count.add(float.count(&buffer[..n]));
            left -= n as u64;
        }
        if count != Count::default() {
            bad.insert(name.clone(), count);
        }
    }
    Ok(())
}

fn scan_pth(path: &Path, bad: &mut BTreeMap<String, Count>) -> candle_core::Result<()> {
    for (name, tensor) in candle_core::pickle::read_all(path)? {
        if !tensor.dtype().is_float() {
            continue;
        }
        let values = tensor
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let count = values.iter().fold(Count::default(), |mut c, v| {
            if v.is_nan() {
                c.nan += 1;
            } else if v.is_infinite() {
                c.infinite += 1;
            } else if f64::from(v.abs()) > F16_MAX {
                c.beyond_f16 += 1;
            }
            c
        });
        if count != Count::default() {
            bad.insert(name, count);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nan_and_infinity_in_every_float_format() {
        let f32s: Vec<u8> = [1.0f32, f32::NAN, f32::INFINITY, -f32::INFINITY, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let count = |dtype: &str, bytes: &[u8]| {
            let c = Float::of(dtype).unwrap().count(bytes);
            (c.nan, c.infinite, c.beyond_f16)
        };
        assert_eq!(count("F32", &f32s), (1, 2, 0));
        let f64s: Vec<u8> = [f64::NAN, 2.0, -1e6].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(count("F64", &f64s), (1, 0, 1));
        // f16: 0x7c00 is +inf, 0x7e00 NaN, 0x3c00 one; bf16: 0x7f80 +inf, 0x7fc0 NaN.
        let f16s: Vec<u8> = [0x7c00u16, 0x7e00, 0x3c00]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(count("F16", &f16s), (1, 1, 0));
        // bf16 0x4780 is 65536, beyond float16.
        let bf16s: Vec<u8> = [0x7f80u16, 0x7fc0, 0x3f80, 0xff80, 0x4780]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(count("BF16", &bf16s), (1, 2, 1));
        assert!(Float::of("I64").is_none());
    }

    #[test]
    fn large_finite_values_are_finite_but_beyond_float16() {
        let values: Vec<u8> = (0..10_000)
            .map(|i| if i % 2 == 0 { f32::MAX } else { -1e-30 })
            .flat_map(|v: f32| v.to_le_bytes())
            .collect();
        let count = Float::of("F32").unwrap().count(&values);
        assert!(!count.any());
        assert_eq!(count.beyond_f16, 5_000);
    }
}
