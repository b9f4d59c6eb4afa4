//! A gRPC `ModelInfer` message: protobuf-decoded as tonic does, then converted to the
//! transport-neutral request by `keel_api::grpc::decode_request`, as the service does.
#![no_main]

use keel_api::proto::ModelInferRequest;
use keel_fuzz::{assert_user_status, check_against_model};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    // Bytes that are not a ModelInferRequest never reach keel: tonic-prost's codec refuses
    // them with INTERNAL, as the gRPC status-code guide prescribes for parse errors.
    let Ok(message) = ModelInferRequest::decode(data) else {
        return;
    };
    match keel_api::grpc::decode_request(message) {
        Ok(request) => {
            for input in &request.inputs {
                let expected = keel_serving::protocol::element_count(&input.name, &input.tensor.shape)
                    .expect("a decoded shape has a size");
                assert_eq!(input.tensor.data.len(), expected, "input '{}'", input.name);
            }
            check_against_model("grpc_infer", request);
        }
        Err(status) => assert_user_status("grpc_infer", &status),
    }
});
