//! Any bytes a load balancer's connection starts with: a PROXY header, more wanted, or
//! refused; never a panic, never a header longer than its limit or than the bytes given.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf_net::proxy_header::{MAX_HEADER, Progress, V1_MAX, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(Progress::Complete(parsed)) = parse(data) {
        assert!(parsed.length <= data.len() && parsed.length <= MAX_HEADER);
        assert!(parsed.version == 2 || parsed.length <= V1_MAX);
        // A header is judged on its own bytes alone.
        assert_eq!(parse(&data[..parsed.length]), Ok(Progress::Complete(parsed)));
    }
    if data.len() > MAX_HEADER {
        assert!(!matches!(parse(data), Ok(Progress::Incomplete)));
    }
});
