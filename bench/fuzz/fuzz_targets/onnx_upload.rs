//! An uploaded model file: `read_signature` is what `Registry::push` (and so `keel model
//! push` and the registry's push route) runs on the bytes before anything is stored.
#![no_main]

use keel_fuzz::assert_user_fault;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    match keel_registry::read_signature(bytes) {
        Ok(signature) => {
            // What is accepted has at least one input and one output, and its signature is
            // stored as JSON: it must serialise and read back the same.
            assert!(!signature.inputs.is_empty() && !signature.outputs.is_empty());
            let json = serde_json::to_value(&signature).expect("a signature serialises");
            let back: keel_registry::Signature = serde_json::from_value(json).expect("and reads back");
            assert_eq!(back, signature);
        }
        Err(e) => assert_user_fault("onnx_upload", e.kind(), &e),
    }
});
