//! Any bytes as an SSH exec command line: parsed or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wharf_ssh::exec::parse(data);
});
