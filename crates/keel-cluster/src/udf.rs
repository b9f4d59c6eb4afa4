//! `keel_score`: a DataFusion scalar function that scores record batches with a registered ONNX
//! model version. It carries its [`ScoreSpec`] (shipped in the plan by [`crate::codec`]); the
//! model itself is loaded where the function runs, from the registry, once per process.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use keel_batch::ScoreSpec;
use keel_lake::arrow::array::{ArrayRef, RecordBatch, StructArray, new_empty_array};
use keel_lake::arrow::datatypes::{DataType, Field, Fields, Schema};
use keel_lake::datafusion::common::{DataFusionError, Result as DfResult};
use keel_lake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use keel_registry::{Registry, VersionSelector};
use keel_runtime::{Model, ModelOptions, Runtime};

use crate::ClusterError;

/// The function's name in plans.
pub const KEEL_SCORE: &str = "keel_score";

/// Where an executor finds model versions: the metadata store and the artifact store of the
/// keel home it serves (the same ones the client registered the models in).
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// `sqlite:///path/keel.db` or `postgres://...`.
    pub store: String,
    /// A folder, `file:///path` or `s3://bucket/prefix`.
    pub artifacts: String,
}

/// The models an executor has loaded, by name and version: each is fetched and loaded once.
#[derive(Debug)]
pub struct Models {
    source: ModelSource,
    loaded: Mutex<HashMap<(String, i64), Arc<Model>>>,
}

impl Models {
    pub fn new(source: ModelSource) -> Models {
        Models {
            source,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Model `name` version `version`, loaded on first use. The lock is held while loading, so
    /// tasks arriving together wait for one load instead of starting their own.
    fn get(&self, name: &str, version: i64) -> Result<Arc<Model>, ClusterError> {
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| ClusterError::Internal("the model cache lock is poisoned".into()))?;
        if let Some(model) = loaded.get(&(name.to_owned(), version)) {
            return Ok(model.clone());
        }
        let bytes = self.fetch(name, version)?;
        let model = Arc::new(Runtime::global()?.load_model(&bytes, &ModelOptions::default())?);
        loaded.insert((name.to_owned(), version), model.clone());
        tracing::info!(model = name, version, "model loaded for scoring");
        Ok(model)
    }

    /// The model's bytes from the registry. Called from inside a DataFusion task (a runtime
    /// thread that must not block on the runtime): the registry is opened and read on a
    /// thread of its own with a runtime of its own.
    fn fetch(&self, name: &str, version: i64) -> Result<Vec<u8>, ClusterError> {
        let source = self.source.clone();
        let name = name.to_owned();
        std::thread::scope(|scope| {
            scope
                .spawn(move || -> Result<Vec<u8>, ClusterError> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| ClusterError::Internal(format!("cannot start the model loader: {e}")))?;
                    runtime.block_on(async move {
                        let store = keel_store::Store::open(&source.store).await?;
                        let registry = Registry::open(store, &source.artifacts)?;
                        let record = registry.resolve(&name, &VersionSelector::Number(version)).await?;
                        Ok(registry.fetch(&record).await?.to_vec())
                    })
                })
                .join()
                .map_err(|_| ClusterError::Internal("the model loader thread panicked".into()))?
        })
    }
}

/// The scalar function: its arguments are the spec's input columns, its answer a struct with
/// one field per output column.
#[derive(Debug)]
pub struct KeelScore {
    spec: ScoreSpec,
    /// The spec as shipped: what two functions are compared and hashed by.
    json: String,
    signature: Signature,
    output: Fields,
    /// `None` where the function is planned but never run (the client, the scheduler).
    models: Option<Arc<Models>>,
}

impl KeelScore {
    pub fn new(spec: ScoreSpec, models: Option<Arc<Models>>) -> Result<KeelScore, ClusterError> {
        let json = serde_json::to_string(&spec).map_err(|e| ClusterError::Internal(e.to_string()))?;
        let output = spec.output_schema().fields().clone();
        Ok(KeelScore {
            spec,
            json,
            signature: Signature::variadic_any(Volatility::Immutable),
            output,
            models,
        })
    }

    /// The function as shipped in a plan: the spec's JSON.
    pub fn encoded(&self) -> &[u8] {
        self.json.as_bytes()
    }

    /// The function from what [`KeelScore::encoded`] wrote, running with `models`.
    pub fn decode(buf: &[u8], models: Option<Arc<Models>>) -> Result<KeelScore, ClusterError> {
        let spec: ScoreSpec = serde_json::from_slice(buf)
            .map_err(|e| ClusterError::Internal(format!("cannot read a keel_score function from a plan: {e}")))?;
        KeelScore::new(spec, models)
    }

    pub fn udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }

    /// The output columns, as the struct the function answers.
    pub fn output_type(&self) -> DataType {
        DataType::Struct(self.output.clone())
    }
}

impl PartialEq for KeelScore {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Eq for KeelScore {}

impl Hash for KeelScore {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.json.hash(state);
    }
}

impl ScalarUDFImpl for KeelScore {
    fn name(&self) -> &str {
        KEEL_SCORE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.output_type())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let failed = |e: ClusterError| DataFusionError::Execution(e.to_string());
        let models = self.models.as_ref().ok_or_else(|| {
            failed(ClusterError::Internal(
                "keel_score runs on executors started with `keel cluster executor`".into(),
            ))
        })?;
        let names = self.spec.input_columns();
        if names.len() != args.args.len() {
            return Err(DataFusionError::Execution(format!(
                "keel_score takes {} columns, got {}",
                names.len(),
                args.args.len()
            )));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let fields: Vec<Field> = names
            .iter()
            .zip(&arrays)
            .map(|(name, a)| Field::new(name, a.data_type().clone(), true))
            .collect();
        let inputs = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        if inputs.num_rows() == 0 {
            return Ok(ColumnarValue::Array(new_empty_array(&self.output_type())));
        }
        let model = models.get(&self.spec.model, self.spec.model_version).map_err(failed)?;
        let scored = self
            .spec
            .score(&model, &inputs)
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        let columns: Vec<ArrayRef> = scored.columns().to_vec();
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            self.output.clone(),
            columns,
            None,
        )?)))
    }
}
