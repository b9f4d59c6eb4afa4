//! The gRPC front end with tonic's generated client.

use keel_api::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use keel_api::proto::model_infer_request::InferInputTensor;
use keel_api::proto::{
    InferTensorContents, ModelInferRequest, ModelMetadataRequest, ModelReadyRequest, RepositoryIndexRequest,
    RepositoryModelLoadRequest, RepositoryModelUnloadRequest, ServerLiveRequest, ServerReadyRequest,
};

use crate::support::{TestServer, expected};

/// A V2 gRPC request for the breast-cancer fixture's 30-feature rows, typed or raw contents
/// (also the model inputs of gRPC decide, `tests/serving/grpc_decide.rs`).
pub(crate) fn request(model: &str, rows: &[f32], raw: bool) -> ModelInferRequest {
    let n = (rows.len() / 30) as i64;
    let mut input = InferInputTensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![n, 30],
        ..Default::default()
    };
    let mut raw_input_contents = Vec::new();
    if raw {
        raw_input_contents.push(rows.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into());
    } else {
        input.contents = Some(InferTensorContents {
            fp32_contents: rows.to_vec(),
            ..Default::default()
        });
    }
    ModelInferRequest {
        model_name: model.into(),
        inputs: vec![input],
        raw_input_contents,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_metadata_infer_and_repository() {
    let server = TestServer::start(&["bc-lr", "bc-rf"]).await;
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    assert!(
        client
            .server_live(ServerLiveRequest {})
            .await
            .expect("live")
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(ServerReadyRequest {})
            .await
            .expect("ready")
            .into_inner()
            .ready
    );
    let meta = client
        .model_metadata(ModelMetadataRequest {
            name: "bc-rf".into(),
            version: String::new(),
        })
        .await
        .expect("metadata")
        .into_inner();
    assert_eq!(meta.inputs[0].shape, vec![-1, 30]);
    assert_eq!(
        meta.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        vec!["label", "probabilities"]
    );

    let exp = expected();
    let rows: Vec<f32> = exp["models"]["bc-rf"]["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|r| r.as_array().expect("row").iter().map(|v| v.as_f64().expect("f") as f32))
        .collect();
    let want_p: Vec<f64> = exp["models"]["bc-rf"]["outputs"]["probabilities"]["data"]
        .as_array()
        .expect("d")
        .iter()
        .map(|v| v.as_f64().expect("f"))
        .collect();
    // Typed contents in, typed contents out.
    let typed = client
        .model_infer(request("bc-rf", &rows, false))
        .await
        .expect("infer")
        .into_inner();
    let p = typed.outputs.iter().find(|o| o.name == "probabilities").expect("p");
    let got: Vec<f64> = p
        .contents
        .as_ref()
        .expect("contents")
        .fp32_contents
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    assert_eq!(got.len(), want_p.len());
    assert!(got.iter().zip(&want_p).all(|(g, w)| (g - w).abs() < 1e-5));
    // Raw in, raw out.
    let raw = client
        .model_infer(request("bc-rf", &rows, true))
        .await
        .expect("infer")
        .into_inner();
    assert_eq!(raw.raw_output_contents.len(), raw.outputs.len());
    let idx = raw.outputs.iter().position(|o| o.name == "probabilities").expect("p");
    let got: Vec<f64> = raw.raw_output_contents[idx]
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    assert!(got.iter().zip(&want_p).all(|(g, w)| (g - w).abs() < 1e-5));

    // Errors: codes and messages.
    let err = client
        .model_infer(request("nope", &rows, true))
        .await
        .expect_err("unknown model");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().contains("model 'nope' is not loaded"),
        "{}",
        err.message()
    );
    let err = client
        .model_infer(request("bc-rf", &rows[..29], false))
        .await
        .expect_err("bad count");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let mut bad = request("bc-rf", &rows, true);
    bad.raw_input_contents.push(vec![0u8; 4].into());
    let err = client.model_infer(bad).await.expect_err("too many raw");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("raw_input_contents has 2 entries"),
        "{}",
        err.message()
    );

    // Repository extension.
    let index = client
        .repository_index(RepositoryIndexRequest {
            repository_name: String::new(),
            ready: true,
        })
        .await
        .expect("index")
        .into_inner();
    assert_eq!(index.models.len(), 2);
    client
        .repository_model_unload(RepositoryModelUnloadRequest {
            model_name: "bc-lr".into(),
            ..Default::default()
        })
        .await
        .expect("unload");
    let ready = client
        .model_ready(ModelReadyRequest {
            name: "bc-lr".into(),
            version: String::new(),
        })
        .await
        .expect("ready")
        .into_inner();
    assert!(!ready.ready);
    client
        .repository_model_load(RepositoryModelLoadRequest {
            model_name: "bc-lr".into(),
            ..Default::default()
        })
        .await
        .expect("load");
    let ready = client
        .model_ready(ModelReadyRequest {
            name: "bc-lr".into(),
            version: "1".into(),
        })
        .await
        .expect("ready")
        .into_inner();
    assert!(ready.ready);
    let err = client
        .repository_model_load(RepositoryModelLoadRequest {
            model_name: "missing".into(),
            ..Default::default()
        })
        .await
        .expect_err("missing model");
    assert_eq!(err.code(), tonic::Code::NotFound);
}
