//! Loading a model into ONNX Runtime sessions and running it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::logging::LogLevel;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use crate::locate::{Located, find_library};
use crate::{DataType, Result, RuntimeError, Tensor, TensorData};

/// The process-wide ONNX Runtime: the library is loaded once per process.
pub struct Runtime {
    env: Environment,
    library: PathBuf,
}

static RUNTIME: OnceLock<std::result::Result<Runtime, RuntimeError>> = OnceLock::new();

impl Runtime {
    /// The runtime of this process, loading the library on first use.
    pub fn global() -> Result<&'static Runtime> {
        RUNTIME
            .get_or_init(|| match find_library() {
                Located::Found(path) => Runtime::load(&path),
                Located::NotFound(searched) => Err(RuntimeError::LibraryNotFound {
                    searched: searched.join("; "),
                }),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn load(path: &Path) -> Result<Runtime> {
        let load_err = |reason: String| RuntimeError::LibraryLoad {
            path: path.to_path_buf(),
            reason,
        };
        let builder = ort::init_from(path).map_err(|e| load_err(e.to_string()))?;
        let env = builder
            .with_name("keel")
            .with_telemetry(false)
            .build()
            .map_err(|e| load_err(e.to_string()))?;
        env.set_log_level(LogLevel::Error);
        tracing::debug!(library = %path.display(), "loaded ONNX Runtime");
        Ok(Runtime {
            env,
            library: path.to_path_buf(),
        })
    }

    /// Path of the library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Loads ONNX model bytes into a pool of sessions.
    pub fn load_model(&self, bytes: &[u8], options: &ModelOptions) -> Result<Model> {
        let count = options.sessions.max(1);
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            sessions.push(Mutex::new(self.session(bytes, options)?));
        }
        let (inputs, outputs) = {
            let first = sessions[0]
                .lock()
                .map_err(|_| RuntimeError::InvalidModel("session lock poisoned".into()))?;
            let inputs = first
                .inputs()
                .iter()
                .map(|o| IoSpec::from_value_type(o.name(), o.dtype()))
                .collect::<Result<Vec<_>>>()?;
            let outputs = first
                .outputs()
                .iter()
                .map(|o| IoSpec::from_value_type(o.name(), o.dtype()))
                .collect::<Result<Vec<_>>>()?;
            (inputs, outputs)
        };
        Ok(Model {
            sessions,
            next: AtomicUsize::new(0),
            inputs,
            outputs,
        })
    }

    fn session(&self, bytes: &[u8], options: &ModelOptions) -> Result<Session> {
        let invalid = |e: ort::Error<_>| RuntimeError::InvalidModel(e.to_string());
        Session::builder(&self.env)
            .map_err(|e| RuntimeError::InvalidModel(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(invalid)?
            .with_intra_threads(options.intra_threads.max(1))
            .map_err(invalid)?
            .with_inter_threads(1)
            .map_err(invalid)?
            .with_log_level(LogLevel::Error)
            .map_err(invalid)?
            .commit_from_memory(bytes)
            .map_err(|e| RuntimeError::InvalidModel(e.to_string()))
    }
}

/// How a model is loaded.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Sessions in the pool: requests beyond this many wait for a free one.
    pub sessions: usize,
    /// Threads inside one session run (1 is fastest for single rows).
    pub intra_threads: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        ModelOptions {
            sessions: cores,
            intra_threads: 1,
        }
    }
}

/// What an input or output carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// A plain tensor.
    Tensor,
    /// A scikit-learn ZipMap output (a sequence of maps from class to probability), which
    /// keel returns as a `[batch, classes]` tensor with classes in ascending order.
    ZipMap,
}

/// Name, type and shape of a model input or output (`-1` marks a free dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct IoSpec {
    pub name: String,
    pub datatype: DataType,
    pub shape: Vec<i64>,
    pub kind: IoKind,
}

impl IoSpec {
    fn from_value_type(name: &str, ty: &ValueType) -> Result<IoSpec> {
        let unsupported = |reason: String| RuntimeError::UnsupportedOutput {
            name: name.to_string(),
            reason,
        };
        match ty {
            ValueType::Tensor { ty, shape, .. } => Ok(IoSpec {
                name: name.to_string(),
                datatype: datatype_of(*ty).ok_or_else(|| unsupported(format!("element type {ty}")))?,
                shape: shape.iter().copied().collect(),
                kind: IoKind::Tensor,
            }),
            ValueType::Sequence(inner) => match inner.as_ref() {
                ValueType::Map { value, .. } => Ok(IoSpec {
                    name: name.to_string(),
                    datatype: datatype_of(*value).ok_or_else(|| unsupported(format!("map value type {value}")))?,
                    shape: vec![-1, -1],
                    kind: IoKind::ZipMap,
                }),
                other => Err(unsupported(format!("sequence of {other}"))),
            },
            other => Err(unsupported(format!("value type {other}"))),
        }
    }
}

fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// A loaded model: a pool of sessions over the same graph.
pub struct Model {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("sessions", &self.sessions.len())
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl Model {
    pub fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    /// Runs the model. `inputs` are given in any order by name; `requested` limits the
    /// outputs (all outputs, in graph order, when `None`). Callers validate types and shapes
    /// first; the runtime still refuses what ONNX Runtime cannot take, with a message.
    pub fn run(&self, inputs: &[(&str, &Tensor)], requested: Option<&[&str]>) -> Result<Vec<(String, Tensor)>> {
        let mut values: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        let mut strings: Vec<Vec<String>> = Vec::new();
        for (name, tensor) in inputs {
            if let TensorData::Bytes(items) = &tensor.data {
                let converted = items
                    .iter()
                    .map(|b| {
                        String::from_utf8(b.clone()).map_err(|_| {
                            RuntimeError::InvalidInput(format!(
                                "input '{name}' has a BYTES element that is not valid UTF-8; string inputs must be UTF-8"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                strings.push(converted);
            }
        }
        let mut string_iter = strings.iter();
        for (name, tensor) in inputs {
            let shape = tensor.shape.clone();
            let value: SessionInputValue<'_> = match &tensor.data {
                TensorData::Fp32(v) => view(shape, v)?,
                TensorData::Fp64(v) => view(shape, v)?,
                TensorData::Int64(v) => view(shape, v)?,
                TensorData::Int32(v) => view(shape, v)?,
                TensorData::Int16(v) => view(shape, v)?,
                TensorData::Int8(v) => view(shape, v)?,
                TensorData::Uint8(v) => view(shape, v)?,
                TensorData::Uint16(v) => view(shape, v)?,
                TensorData::Uint32(v) => view(shape, v)?,
                TensorData::Uint64(v) => view(shape, v)?,
                TensorData::Bool(v) => view(shape, v)?,
                TensorData::Fp16(_) => {
                    return Err(RuntimeError::InvalidInput(format!(
                        "input '{name}' is FP16, which keel's runtime does not accept yet; send FP32"
                    )));
                }
                TensorData::Bytes(_) => {
                    let items = string_iter
                        .next()
                        .ok_or_else(|| RuntimeError::Inference("string input bookkeeping out of step".into()))?;
                    ort::value::Tensor::from_string_array((shape, items.as_slice()))
                        .map_err(|e| RuntimeError::InvalidInput(format!("input '{name}': {e}")))?
                        .into()
                }
            };
            values.push(((*name).into(), value));
        }

        let mut session = self.acquire()?;
        let outputs = session
            .run(values)
            .map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let mut result = Vec::new();
        match requested {
            None => {
                for spec in &self.outputs {
                    if let Some(value) = outputs.get(&spec.name) {
                        result.push((spec.name.clone(), extract(&spec.name, value)?));
                    }
                }
            }
            Some(names) => {
                for name in names {
                    let value = outputs
                        .get(name)
                        .ok_or_else(|| RuntimeError::InvalidInput(format!("the model has no output named '{name}'")))?;
                    result.push(((*name).to_string(), extract(name, value)?));
                }
            }
        }
        Ok(result)
    }

    /// A free session, else the next one in turn (waiting for it).
    fn acquire(&self) -> Result<std::sync::MutexGuard<'_, Session>> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(guard) = self.sessions[(start + i) % n].try_lock() {
                return Ok(guard);
            }
        }
        self.sessions[start % n]
            .lock()
            .map_err(|_| RuntimeError::Inference("a session panicked earlier; reload the model".into()))
    }
}

fn view<'a, T>(shape: Vec<i64>, data: &'a [T]) -> Result<SessionInputValue<'a>>
where
    T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static,
{
    TensorRef::from_array_view((shape, data))
        .map(Into::into)
        .map_err(|e| RuntimeError::InvalidInput(e.to_string()))
}

fn extract(name: &str, value: &DynValue) -> Result<Tensor> {
    let fail = |e: ort::Error| RuntimeError::UnsupportedOutput {
        name: name.to_string(),
        reason: e.to_string(),
    };
    match value.dtype() {
        ValueType::Tensor { ty, .. } => {
            macro_rules! prim {
                ($t:ty, $variant:ident) => {{
                    let (shape, data) = value.try_extract_tensor::<$t>().map_err(fail)?;
                    Tensor {
                        shape: shape.to_vec(),
                        data: TensorData::$variant(data.to_vec()),
                    }
                }};
            }
            Ok(match ty {
                TensorElementType::Float32 => prim!(f32, Fp32),
                TensorElementType::Float64 => prim!(f64, Fp64),
                TensorElementType::Int64 => prim!(i64, Int64),
                TensorElementType::Int32 => prim!(i32, Int32),
                TensorElementType::Int16 => prim!(i16, Int16),
                TensorElementType::Int8 => prim!(i8, Int8),
                TensorElementType::Uint8 => prim!(u8, Uint8),
                TensorElementType::Uint16 => prim!(u16, Uint16),
                TensorElementType::Uint32 => prim!(u32, Uint32),
                TensorElementType::Uint64 => prim!(u64, Uint64),
                TensorElementType::Bool => prim!(bool, Bool),
                TensorElementType::String => {
                    let (shape, data) = value.try_extract_strings().map_err(fail)?;
                    Tensor {
                        shape: shape.to_vec(),
                        data: TensorData::Bytes(data.into_iter().map(String::into_bytes).collect()),
                    }
                }
                other => {
                    return Err(RuntimeError::UnsupportedOutput {
                        name: name.to_string(),
                        reason: format!("element type {other}"),
                    });
                }
            })
        }
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map { key, .. } => zipmap(name, value, *key),
            other => Err(RuntimeError::UnsupportedOutput {
                name: name.to_string(),
                reason: format!("sequence of {other}"),
            }),
        },
        other => Err(RuntimeError::UnsupportedOutput {
            name: name.to_string(),
            reason: format!("value type {other}"),
        }),
    }
}

/// ZipMap output (one map per row, class -> probability) as a `[rows, classes]` FP32 tensor,
/// classes in ascending order.
fn zipmap(name: &str, value: &DynValue, key: TensorElementType) -> Result<Tensor> {
    let fail = |e: ort::Error| RuntimeError::UnsupportedOutput {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let maps = value
        .try_extract_sequence::<ort::value::DynMapValueType>()
        .map_err(fail)?;
    let rows = maps.len();
    let mut data: Vec<f32> = Vec::new();
    let mut classes = 0usize;
    for map in &maps {
        let mut row: Vec<f32> = match key {
            TensorElementType::Int64 => {
                let mut kv = map.try_extract_key_values::<i64, f32>().map_err(fail)?;
                kv.sort_by_key(|(k, _)| *k);
                kv.into_iter().map(|(_, v)| v).collect()
            }
            TensorElementType::String => {
                let mut kv = map.try_extract_key_values::<String, f32>().map_err(fail)?;
                kv.sort_by(|a, b| a.0.cmp(&b.0));
                kv.into_iter().map(|(_, v)| v).collect()
            }
            other => {
                return Err(RuntimeError::UnsupportedOutput {
                    name: name.to_string(),
                    reason: format!("map with {other} keys"),
                });
            }
        };
        if classes == 0 {
            classes = row.len();
        } else if classes != row.len() {
            return Err(RuntimeError::UnsupportedOutput {
                name: name.to_string(),
                reason: "rows of the map output have different class counts".into(),
            });
        }
        data.append(&mut row);
    }
    Ok(Tensor {
        shape: vec![rows as i64, classes as i64],
        data: TensorData::Fp32(data),
    })
}
