//! Any bytes on the FTP control channel: framed, parsed or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf_ftp_proto::{Command, Line, find_abort, next_line, parse_eprt, parse_port};

fuzz_target!(|data: &[u8]| {
    if let Line::Complete(line, used) = next_line(data) {
        assert!(used <= data.len());
        let _ = Command::parse(line);
    }
    let _ = Command::parse(data);
    if let Some(range) = find_abort(data) {
        assert!(range.start < range.end && range.end <= data.len());
    }
    let text = String::from_utf8_lossy(data);
    let _ = parse_port(&text);
    let _ = parse_eprt(&text);
});
