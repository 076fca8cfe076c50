//! Escaping of keys and values inside a `logs.txt` line.
//!
//! A token never contains a space, a line break or any other control or
//! whitespace character, so a line splits on single ASCII spaces and ends at
//! `\n`. Ordinary text (letters of any script, digits, punctuation, emoji)
//! stays as itself. The rules:
//!
//! | text            | written as   |
//! |-----------------|--------------|
//! | `\`             | `\\`         |
//! | space           | `\s`         |
//! | tab             | `\t`         |
//! | line feed       | `\n`         |
//! | carriage return | `\r`         |
//! | other control or whitespace char (U+0000..U+001F, U+007F..U+009F, U+00A0, U+2028, ...) | `\u{HEX}` |
//! | the empty string (whole token) | `\e` |

use std::fmt::Write as _;

/// Appends the escaped form of `text` to `out`.
pub fn escape_into(text: &str, out: &mut Vec<u8>) {
    if text.is_empty() {
        out.extend_from_slice(b"\\e");
        return;
    }
    // Fast path: most keys and values need no escaping at all.
    if is_plain(text) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            ' ' => out.extend_from_slice(b"\\s"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if needs_escape(c) => {
                let mut s = String::with_capacity(10);
                write!(s, "\\u{{{:X}}}", c as u32).expect("write to String");
                out.extend_from_slice(s.as_bytes());
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// The escaped form of `text`, as a `String`.
pub fn escape(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    escape_into(text, &mut out);
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

/// True when `text` needs no escaping. Checks bytes first (fast, and the
/// common case is printable ASCII), chars only for non-ASCII text.
fn is_plain(text: &str) -> bool {
    let bytes = text.as_bytes();
    // No early exit: the fold compiles to a vector loop (keys and values are
    // short, and this runs for every one of a snapshot's million lines).
    let printable = |b: u8| (b.wrapping_sub(b'!') < 0x7f - b'!') & (b != b'\\');
    if bytes.iter().fold(true, |ok, &b| ok & printable(b)) {
        return true;
    }
    !bytes.is_ascii() && !text.chars().any(needs_escape)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || c.is_whitespace()
}

/// Reverses [`escape`]. Rejects anything `escape` would never write, so a
/// damaged token is noticed rather than read differently.
pub fn unescape(token: &str) -> Result<String, String> {
    if token == "\\e" {
        return Ok(String::new());
    }
    if token.is_empty() {
        return Err("empty token (the empty string is written \\e)".into());
    }
    if is_plain(token) {
        // Fast path (most keys and values): printable ASCII without `\\`.
        return Ok(token.to_owned());
    }
    if !token.contains('\\') {
        if let Some(c) = token.chars().find(|&c| needs_escape(c)) {
            return Err(format!("unescaped character U+{:04X}", c as u32));
        }
        return Ok(token.to_owned());
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if needs_escape(c) {
                return Err(format!("unescaped character U+{:04X}", c as u32));
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('s') => out.push(' '),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('u') => out.push(unescape_unicode(&mut chars)?),
            Some(other) => return Err(format!("unknown escape \\{other}")),
            None => return Err("token ends with a lone backslash".into()),
        }
    }
    Ok(out)
}

fn unescape_unicode(chars: &mut std::str::Chars<'_>) -> Result<char, String> {
    if chars.next() != Some('{') {
        return Err("\\u must be followed by {HEX}".into());
    }
    let mut hex = String::new();
    for c in chars.by_ref() {
        if c == '}' {
            let code =
                u32::from_str_radix(&hex, 16).map_err(|_| format!("bad hex in \\u{{{hex}}}"))?;
            let c =
                char::from_u32(code).ok_or_else(|| format!("\\u{{{hex}}} is not a character"))?;
            if !needs_escape(c) || matches!(c, '\\' | ' ' | '\t' | '\n' | '\r') {
                return Err(format!(
                    "\\u{{{hex}}} escapes a character that has another form"
                ));
            }
            return Ok(c);
        }
        if hex.len() >= 6 {
            break;
        }
        hex.push(c);
    }
    Err("unterminated \\u{...}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_text_stays_itself() {
        for s in ["hello", "user:42", "Grüße", "日本語", "a=b,c;d", "🦀"] {
            assert_eq!(escape(s), s);
        }
    }

    #[test]
    fn special_characters_have_readable_forms() {
        assert_eq!(escape(""), "\\e");
        assert_eq!(escape("a b"), "a\\sb");
        assert_eq!(escape("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(
            escape("\u{0}\u{7f}\u{2028}\u{a0}"),
            "\\u{0}\\u{7F}\\u{2028}\\u{A0}"
        );
        assert_eq!(escape("\\e"), "\\\\e");
    }

    #[test]
    fn damaged_tokens_are_rejected() {
        for bad in [
            "",
            "a\\",
            "a\\q",
            "\\u{",
            "\\u{110000}",
            "\\u{41}",
            "\\u{20}",
            "a\tb",
            "x\\ey",
        ] {
            assert!(unescape(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn escape_round_trips(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(!e.is_empty());
            prop_assert!(!e.contains(' ') && !e.contains('\n') && !e.contains('\t') && !e.contains('\r'));
            prop_assert_eq!(unescape(&e).unwrap(), s);
        }

        #[test]
        fn escape_round_trips_nasty(s in "[ \\\\\t\n\re{}u0-9a-z\u{0}\u{2028}é]{0,20}") {
            prop_assert_eq!(unescape(&escape(&s)).unwrap(), s);
        }
    }
}
