//! Any text as an SCP record: parsed or refused, and a parsed name is one plain component.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok((_, _, name)) = wharf_ssh::scp::parse_entry(line) {
            assert!(!name.is_empty() && !name.contains('/') && name != "." && name != "..");
        }
        let _ = wharf_ssh::scp::parse_times(line);
    }
});
