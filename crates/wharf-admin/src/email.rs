//! The e-mail address an account or group may have, for notifications. It is written into a
//! mail header by whatever sends them, so only one bare address is taken: a second address,
//! a display name, a comment or a line break smuggled in would change who receives the mail
//! or what the header says. Checked here once, for the commands and the Manager alike.

use crate::AdminError;

/// The longest address there is (RFC 5321's path limit less its angle brackets).
pub const MAX_EMAIL: usize = 254;

/// Characters that mean something in a header beyond a bare address: address lists (`,`),
/// angle-bracketed and quoted forms, comments, groups, quoted pairs and domain literals.
const SPECIALS: &[char] = &[',', '<', '>', '"', '(', ')', '[', ']', ':', ';', '\\'];

/// Checks an address as given; an empty one means none (it clears the stored address).
pub fn email_address(text: &str) -> Result<Option<String>, AdminError> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_EMAIL {
        // Not echoed: it could be anything, and long.
        return Err(AdminError::invalid(format!(
            "e-mail address: at most {MAX_EMAIL} bytes, not {}",
            text.len()
        )));
    }
    // `{text:?}` escapes what it shows, so a line break is named, never printed.
    let refuse = |why: &str| AdminError::invalid(format!("e-mail address {text:?}: {why}"));
    if text.chars().any(char::is_control) {
        return Err(refuse(
            "no control characters (such as a line break): give one bare address",
        ));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(refuse("no spaces or other blanks"));
    }
    if let Some(c) = text.chars().find(|c| SPECIALS.contains(c)) {
        return Err(refuse(&format!(
            "no {c:?}: give one bare address, such as name@example.org, without a name, \
             angle brackets, quotes or a second address"
        )));
    }
    let Some((local, domain)) = text.split_once('@') else {
        return Err(refuse("needs an @, such as name@example.org"));
    };
    if domain.contains('@') {
        return Err(refuse("exactly one @, such as name@example.org"));
    }
    if local.is_empty() {
        return Err(refuse("nothing before the @"));
    }
    if !domain.contains('.') || domain.split('.').any(str::is_empty) {
        return Err(refuse(
            "the domain after the @ needs a dot between its names, such as example.org",
        ));
    }
    Ok(Some(text.to_owned()))
}

/// A record's address as given: checked, and an empty one made none.
pub(crate) fn checked(email: Option<&str>) -> Result<Option<String>, AdminError> {
    match email {
        Some(text) => email_address(text),
        None => Ok(None),
    }
}

/// What a change's event says of the address it gives. Only a change that passed
/// [`email_address`] is described, so the text holds nothing but the address.
pub(crate) fn described(email: Option<&str>) -> String {
    match email {
        Some(address) if !address.is_empty() => format!("e-mail address set to {address}"),
        _ => "e-mail address removed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_are_taken_and_empty_clears() {
        for good in [
            "ops@example.org",
            "first.last+wharf@mail.example.co.uk",
            "o'brien@example.org",
            "jörg@bücher.example",
        ] {
            assert_eq!(email_address(good).unwrap().as_deref(), Some(good));
        }
        assert_eq!(email_address("").unwrap(), None);
        assert_eq!(checked(None).unwrap(), None);
        assert_eq!(checked(Some("")).unwrap(), None);
    }

    #[test]
    fn what_a_header_would_misread_is_refused_and_said() {
        for (bad, said) in [
            ("a b@x.org", "blanks"),
            ("x@y", "needs a dot"),
            ("x@y.", "needs a dot"),
            ("x@.y", "needs a dot"),
            ("x@a..org", "needs a dot"),
            ("<x@y.org>", "no '<'"),
            ("x@y.org\r\nBcc: z@w.org", "control characters"),
            ("x@y.org\nBcc: z@w.org", "control characters"),
            ("x@y.org,z@w.org", "no ','"),
            ("\"x\"@y.org", "no '\"'"),
            ("Name <x@y.org>", "blanks"),
            ("x@y.org (comment)", "blanks"),
            ("x(c)@y.org", "no '('"),
            ("x@[192.0.2.1]", "no '['"),
            ("undisclosed:;", "no ':'"),
            ("xy.org", "needs an @"),
            ("x@y@z.org", "exactly one @"),
            ("@y.org", "nothing before the @"),
            (" x@y.org", "blanks"),
            ("x@y.org\u{2028}", "blanks"),
            ("x\u{7f}@y.org", "control characters"),
            ("x\u{85}@y.org", "control characters"),
        ] {
            let e = email_address(bad).unwrap_err().to_string();
            assert!(e.contains(said), "{bad:?}: {e}");
            assert!(!e.contains('\r') && !e.contains('\n'), "{bad:?}: {e}");
        }
        let long = format!("{}@example.org", "a".repeat(MAX_EMAIL));
        let e = email_address(&long).unwrap_err().to_string();
        assert!(e.contains("at most 254 bytes"), "{e}");
        assert!(!e.contains("aaaa"), "{e}");
        let longest = format!("{}@example.org", "a".repeat(MAX_EMAIL - 12));
        assert_eq!(longest.len(), MAX_EMAIL);
        assert!(email_address(&longest).is_ok());
    }
}
