//! A REST infer body (`POST /v2/models/{m}/infer`) without the binary extension: decoded by
//! the same `decode_json_request(body, None)` the REST handler calls.
#![no_main]

use keel_fuzz::{assert_user_fault, check_against_model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    match keel_serving::protocol::decode_json_request(body, None) {
        Ok(request) => {
            // What decodes is well formed: every input holds as many values as its shape says.
            for input in &request.inputs {
                let expected = keel_serving::protocol::element_count(&input.name, &input.tensor.shape)
                    .expect("a decoded shape has a size");
                assert_eq!(input.tensor.data.len(), expected, "input '{}'", input.name);
            }
            check_against_model("v2_json", request);
        }
        Err(e) => assert_user_fault("v2_json", e.kind(), &e),
    }
});
