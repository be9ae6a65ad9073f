//! `wharf pdf-text` (hidden): the text of the PDF document on standard input, on standard
//! output. Content checks run it in a process of its own, its memory and CPU time capped
//! (see `wharf_handlers::content::pdf`), because the PDF reader meeting a hostile document
//! may recurse past its stack, loop or inflate without end: here that ends this process,
//! never the server. Exits 0 with the whole text, 2 with one line on stderr otherwise.

use std::io::{Read, Write};
use std::process::ExitCode;

/// Largest document read (the server sends no more).
const MAX_PDF: u64 = wharf_handlers::content::pdf::MAX_PDF;

pub fn run() -> ExitCode {
    // A panic's message could quote the document; the exit status says enough.
    std::panic::set_hook(Box::new(|_| {}));
    let mut pdf = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_PDF + 1).read_to_end(&mut pdf) {
        eprintln!("cannot read the document: {e}");
        return ExitCode::from(2);
    }
    if pdf.len() as u64 > MAX_PDF {
        eprintln!("the document is larger than {MAX_PDF} bytes");
        return ExitCode::from(2);
    }
    let text = match std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(&pdf)) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => {
            // The reader's errors may quote the document: one short line, no controls.
            let reason: String = e
                .to_string()
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect();
            eprintln!("{reason}");
            return ExitCode::from(2);
        }
        Err(_) => {
            eprintln!("the PDF reader failed on this document");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // The server stopped reading (a limit reached): nothing to say.
        Err(_) => ExitCode::from(2),
    }
}
