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
//! | invisible or bidirectional char: format chars (Unicode category Cf: U+00AD, U+200B..U+200F, U+202A..U+202E, U+2060..U+206F, U+FEFF, ...), fillers (U+034F, U+115F, U+1160, U+3164, U+FFA0, ...), noncharacters (U+FFFE, ...) | `\u{HEX}` |
//! | the empty string (whole token) | `\e` |
//!
//! Invisible characters are escaped so that two keys that differ only by one
//! (`admin` and `admin\u{200B}`) look different in `logs.txt` and
//! `snapshot.txt`, and a bidirectional override cannot reorder what a reader
//! sees. Files written before they were escaped hold them raw: reading
//! accepts that (only control and whitespace characters must be escaped).

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

/// What [`escape`] writes as `\u{HEX}` or another escape.
fn needs_escape(c: char) -> bool {
    must_escape(c) || is_invisible(c)
}

/// What a token may never hold raw: it would split or end the line, or
/// (a backslash) start an escape. Older files hold invisible characters raw,
/// so reading rejects only these.
fn must_escape(c: char) -> bool {
    c == '\\' || c.is_control() || c.is_whitespace()
}

/// Characters that print as nothing or reorder text around them: Unicode's
/// format characters (general category Cf, Unicode 15.1), the Hangul and
/// other fillers that render blank, the combining grapheme joiner, and
/// noncharacters.
pub(crate) fn is_invisible(c: char) -> bool {
    let u = c as u32;
    if u < 0xAD {
        return false;
    }
    matches!(
        u,
        0xAD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0x3164
            | 0xFDD0..=0xFDEF
            | 0xFEFF
            | 0xFFA0
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    ) || (u & 0xFFFE) == 0xFFFE
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
        if let Some(c) = token.chars().find(|&c| must_escape(c)) {
            return Err(format!("unescaped character U+{:04X}", c as u32));
        }
        return Ok(token.to_owned());
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if must_escape(c) {
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
    fn invisible_and_bidi_characters_are_escaped() {
        assert_eq!(escape("admin\u{200b}"), "admin\\u{200B}");
        assert_ne!(escape("admin\u{200b}"), escape("admin"));
        assert_eq!(
            escape("\u{ad}\u{feff}\u{202e}\u{2066}\u{2069}\u{200d}\u{3164}\u{e0041}\u{ffff}"),
            "\\u{AD}\\u{FEFF}\\u{202E}\\u{2066}\\u{2069}\\u{200D}\\u{3164}\\u{E0041}\\u{FFFF}"
        );
        // A right-to-left override inside a value cannot flip what follows.
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202E}fed");
        for s in [
            "x\u{200b}",
            "\u{feff}",
            "a\u{ad}b\u{202e}c",
            "\u{600}\u{1d173}",
        ] {
            assert_eq!(unescape(&escape(s)).unwrap(), s, "{s:?}");
        }
        // Visible text next to them is untouched.
        assert_eq!(escape("é\u{200b}日"), "é\\u{200B}日");
    }

    #[test]
    fn old_files_with_raw_invisible_characters_still_read() {
        // Written before invisible characters were escaped.
        for raw in ["admin\u{200b}", "\u{feff}key", "a\u{ad}b", "rtl\u{202e}x"] {
            assert_eq!(unescape(raw).unwrap(), raw, "{raw:?}");
        }
        // Mixed with escapes of the old rules.
        assert_eq!(unescape("a\\sb\u{200b}").unwrap(), "a b\u{200b}");
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
        fn escape_round_trips_invisible(s in "[a\u{ad}\u{200b}-\u{200f}\u{202a}-\u{202e}\u{2060}-\u{206f}\u{feff}\u{e0001}\u{fff9}-\u{fffb} \\\\u{}]{0,20}") {
            let e = escape(&s);
            prop_assert!(!e.chars().any(is_invisible), "{:?} left raw in {:?}", s, e);
            prop_assert_eq!(unescape(&e).unwrap(), s);
        }

        #[test]
        fn escape_round_trips_nasty(s in "[ \\\\\t\n\re{}u0-9a-z\u{0}\u{2028}é]{0,20}") {
            prop_assert_eq!(unescape(&escape(&s)).unwrap(), s);
        }
    }
}
