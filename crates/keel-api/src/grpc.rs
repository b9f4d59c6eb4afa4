//! gRPC front end: `inference.GRPCInferenceService` over the same serving operations.

use std::sync::Arc;

use bytes::Bytes;
use keel_serving::metrics::Protocol;
use keel_serving::protocol::{Parameters, check_count, element_count};
use keel_serving::{
    DataType, InferRequest, InferResponse, InferenceService, InputTensor, RequestedOutput, ServingError, Tensor,
    TensorData,
};
use tonic::{Request, Response, Status};

use crate::error::grpc_status;
use crate::proto::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::{self, infer_parameter::ParameterChoice};

fn status(e: ServingError) -> Status {
    grpc_status(&e)
}

fn bad(msg: String) -> Status {
    status(ServingError::BadRequest(msg))
}

/// The service implementation.
pub struct GrpcService {
    service: Arc<InferenceService>,
}

impl GrpcService {
    pub fn new(service: Arc<InferenceService>) -> GrpcService {
        GrpcService { service }
    }
}

fn version_arg(v: &str) -> Option<&str> {
    (!v.is_empty()).then_some(v)
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse {
            live: self.service.server_live(),
        }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Result<Response<proto::ServerReadyResponse>, Status> {
        Ok(Response::new(proto::ServerReadyResponse {
            ready: self.service.server_ready(),
        }))
    }

    async fn model_ready(
        &self,
        req: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(proto::ModelReadyResponse {
            ready: self.service.model_ready(&r.name, version_arg(&r.version)),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        let m = self.service.server_metadata();
        Ok(Response::new(proto::ServerMetadataResponse {
            name: m.name,
            version: m.version,
            extensions: m.extensions,
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let r = req.into_inner();
        let m = self
            .service
            .model_metadata(&r.name, version_arg(&r.version))
            .map_err(status)?;
        let tensors = |v: Vec<keel_serving::TensorMetadata>| {
            v.into_iter()
                .map(|t| proto::model_metadata_response::TensorMetadata {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                })
                .collect()
        };
        Ok(Response::new(proto::ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: tensors(m.inputs),
            outputs: tensors(m.outputs),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        let r = req.into_inner();
        let raw_outputs = !r.raw_input_contents.is_empty();
        let name = r.model_name.clone();
        let version = r.model_version.clone();
        let request = decode_request(r)?;
        let response = self
            .service
            .infer(Protocol::Grpc, &name, version_arg(&version), request)
            .await
            .map_err(status)?;
        Ok(Response::new(encode_response(response, raw_outputs)))
    }

    async fn repository_index(
        &self,
        req: Request<proto::RepositoryIndexRequest>,
    ) -> Result<Response<proto::RepositoryIndexResponse>, Status> {
        let r = req.into_inner();
        let entries = self.service.repository_index(r.ready).await.map_err(status)?;
        Ok(Response::new(proto::RepositoryIndexResponse {
            models: entries
                .into_iter()
                .map(|e| proto::repository_index_response::ModelIndex {
                    name: e.name,
                    version: e.version,
                    state: e.state,
                    reason: e.reason,
                })
                .collect(),
        }))
    }

    async fn repository_model_load(
        &self,
        req: Request<proto::RepositoryModelLoadRequest>,
    ) -> Result<Response<proto::RepositoryModelLoadResponse>, Status> {
        use proto::model_repository_parameter::ParameterChoice as P;
        let r = req.into_inner();
        let version = match r.parameters.get("version").and_then(|p| p.parameter_choice.as_ref()) {
            None => None,
            Some(P::StringParam(s)) => Some(s.clone()),
            Some(P::Int64Param(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(bad(
                    "parameter 'version' must be a string or int64 such as \"3\" or \"@staging\"".into(),
                ));
            }
        };
        self.service
            .load_model(&r.model_name, version.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        req: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Result<Response<proto::RepositoryModelUnloadResponse>, Status> {
        let r = req.into_inner();
        self.service.unload_model(&r.model_name).await.map_err(status)?;
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }
}

fn parameters(map: std::collections::HashMap<String, proto::InferParameter>) -> Parameters {
    map.into_iter()
        .filter_map(|(k, v)| {
            let value = match v.parameter_choice? {
                ParameterChoice::BoolParam(b) => serde_json::Value::from(b),
                ParameterChoice::Int64Param(i) => serde_json::Value::from(i),
                ParameterChoice::StringParam(s) => serde_json::Value::from(s),
                ParameterChoice::DoubleParam(d) => serde_json::Value::from(d),
                ParameterChoice::Uint64Param(u) => serde_json::Value::from(u),
            };
            Some((k, value))
        })
        .collect()
}

/// Converts the gRPC request into the transport-neutral one; tensor data comes either from
/// `raw_input_contents` (one entry per input, little-endian) or from typed `contents`.
pub fn decode_request(r: proto::ModelInferRequest) -> Result<InferRequest, Status> {
    let use_raw = !r.raw_input_contents.is_empty();
    if use_raw && r.raw_input_contents.len() != r.inputs.len() {
        return Err(bad(format!(
            "raw_input_contents has {} entries but there are {} inputs; send one per input",
            r.raw_input_contents.len(),
            r.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(r.inputs.len());
    for (i, input) in r.inputs.into_iter().enumerate() {
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            bad(format!(
                "input '{}' has unknown datatype '{}'",
                input.name, input.datatype
            ))
        })?;
        let expected = element_count(&input.name, &input.shape).map_err(status)?;
        let data = if use_raw {
            if input.contents.is_some() {
                return Err(bad(format!(
                    "input '{}' has both contents and raw_input_contents; send one of them",
                    input.name
                )));
            }
            let raw: &Bytes = &r.raw_input_contents[i];
            TensorData::from_raw_bytes(datatype, raw).map_err(|e| bad(format!("input '{}': {e}", input.name)))?
        } else {
            let contents = input.contents.unwrap_or_default();
            from_contents(&input.name, datatype, contents)?
        };
        check_count(&input.name, &input.shape, expected, data.len()).map_err(status)?;
        inputs.push(InputTensor {
            name: input.name,
            tensor: Tensor {
                shape: input.shape,
                data,
            },
            parameters: parameters(input.parameters),
        });
    }
    Ok(InferRequest {
        id: (!r.id.is_empty()).then_some(r.id),
        parameters: parameters(r.parameters),
        inputs,
        outputs: r
            .outputs
            .into_iter()
            .map(|o| RequestedOutput {
                name: o.name,
                parameters: parameters(o.parameters),
            })
            .collect(),
    })
}

fn from_contents(name: &str, datatype: DataType, c: proto::InferTensorContents) -> Result<TensorData, Status> {
    fn narrow<T: TryFrom<i64>>(name: &str, v: impl IntoIterator<Item = i64>, what: &str) -> Result<Vec<T>, Status> {
        v.into_iter()
            .enumerate()
            .map(|(i, x)| {
                T::try_from(x)
                    .map_err(|_| bad(format!("input '{name}': value {x} at position {i} does not fit {what}")))
            })
            .collect()
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Int8 => TensorData::Int8(narrow(name, c.int_contents.into_iter().map(i64::from), "INT8")?),
        DataType::Int16 => TensorData::Int16(narrow(name, c.int_contents.into_iter().map(i64::from), "INT16")?),
        DataType::Int32 => TensorData::Int32(c.int_contents),
        DataType::Int64 => TensorData::Int64(c.int64_contents),
        DataType::Uint8 => TensorData::Uint8(narrow(name, c.uint_contents.into_iter().map(i64::from), "UINT8")?),
        DataType::Uint16 => TensorData::Uint16(narrow(name, c.uint_contents.into_iter().map(i64::from), "UINT16")?),
        DataType::Uint32 => TensorData::Uint32(c.uint_contents),
        DataType::Uint64 => TensorData::Uint64(c.uint64_contents),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
        DataType::Fp16 => {
            return Err(bad(format!(
                "input '{name}': FP16 has no typed contents field; send it in raw_input_contents"
            )));
        }
    })
}

fn to_contents(data: TensorData) -> proto::InferTensorContents {
    let mut c = proto::InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::Int8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::Int16(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::Int32(v) => c.int_contents = v,
        TensorData::Int64(v) => c.int64_contents = v,
        TensorData::Uint8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::Uint16(v) | TensorData::Fp16(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::Uint32(v) => c.uint_contents = v,
        TensorData::Uint64(v) => c.uint64_contents = v,
        TensorData::Fp32(v) => c.fp32_contents = v,
        TensorData::Fp64(v) => c.fp64_contents = v,
        TensorData::Bytes(v) => c.bytes_contents = v,
    }
    c
}

/// Encodes the response; raw output contents when the request used raw inputs.
pub fn encode_response(r: InferResponse, raw: bool) -> proto::ModelInferResponse {
    let mut outputs = Vec::with_capacity(r.outputs.len());
    let mut raw_output_contents = Vec::new();
    for out in r.outputs {
        let datatype = out.tensor.datatype().as_str().to_string();
        let contents = if raw {
            raw_output_contents.push(Bytes::from(out.tensor.data.to_raw_bytes()));
            None
        } else {
            Some(to_contents(out.tensor.data))
        };
        outputs.push(proto::model_infer_response::InferOutputTensor {
            name: out.name,
            datatype,
            shape: out.tensor.shape,
            parameters: Default::default(),
            contents,
        });
    }
    let mut parameters = std::collections::HashMap::new();
    if let Some(id) = r.prediction_id {
        parameters.insert(
            "prediction_id".to_string(),
            proto::InferParameter {
                parameter_choice: Some(ParameterChoice::StringParam(id)),
            },
        );
    }
    proto::ModelInferResponse {
        model_name: r.model_name,
        model_version: r.model_version,
        id: r.id.unwrap_or_default(),
        parameters,
        outputs,
        raw_output_contents,
    }
}
