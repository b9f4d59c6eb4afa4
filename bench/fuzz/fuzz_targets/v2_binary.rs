//! A REST infer body with the binary tensor extension: the first two bytes of the input give
//! the `Inference-Header-Content-Length` value (little-endian, so it may also point past the
//! end of the body), the rest is the body.
#![no_main]

use keel_fuzz::{assert_user_fault, check_against_model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let header_len = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let body = &data[2..];
    match keel_serving::protocol::decode_json_request(body, Some(header_len)) {
        Ok(request) => {
            for input in &request.inputs {
                let expected = keel_serving::protocol::element_count(&input.name, &input.tensor.shape)
                    .expect("a decoded shape has a size");
                assert_eq!(input.tensor.data.len(), expected, "input '{}'", input.name);
            }
            check_against_model("v2_binary", request);
        }
        Err(e) => assert_user_fault("v2_binary", e.kind(), &e),
    }
});
