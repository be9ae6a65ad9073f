//! Any URL path and Range header: decoded or refused, never a panic, never a `..` segment.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf_http::{path, range};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(p) = path::decode(&text) {
        assert!(p.starts_with('/'));
        assert!(!p.split('/').any(|s| s == ".." || s == "."));
    }
    for size in [0u64, 1, 10, u64::MAX] {
        if let range::RangeRequest::Partial { start, end } = range::parse(Some(&text), size) {
            assert!(start <= end && end < size);
        }
    }
});
