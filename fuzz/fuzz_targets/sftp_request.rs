//! Any bytes as an SFTP packet payload: decoding must never panic, and whatever decodes
//! must be answerable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf_sftp_proto::{Request, Response, StatusCode, decode_init};

fuzz_target!(|data: &[u8]| {
    let _ = decode_init(data);
    let _ = Request::peek_id(data);
    if let Ok(request) = Request::decode(data) {
        let _ = Response::status(request.id, StatusCode::Ok, "").encode();
    }
});
