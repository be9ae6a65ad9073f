//! Any bytes as a client path: the result is refused or stays normalised inside the home.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf_types::VirtualPath;

fuzz_target!(|data: &[u8]| {
    let base = VirtualPath::parse("/a/b").unwrap_or_else(|_| VirtualPath::root());
    if let Ok(path) = VirtualPath::resolve(&base, data) {
        let text = path.as_str();
        assert!(text.starts_with('/'));
        assert!(!text.split('/').any(|c| c == ".." || c == "."));
        assert!(!text.contains('\0') && !text.contains('\\'));
        assert_eq!(VirtualPath::parse(text).as_ref(), Ok(&path));
    }
});
