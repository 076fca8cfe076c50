//! One `logs.txt` line per entry:
//!
//! ```text
//! <index> <term> NO-OP crc=<crc32c>
//! <index> <term> SET session=<client>:<seq> <key> <value> crc=<crc32c>
//! <index> <term> DELETE session=<client>:<seq> <key> crc=<crc32c>
//! ```
//!
//! Fields are separated by one space; keys and values are escaped
//! ([`crate::escape`]); the checksum is CRC-32C of every byte before ` crc=`,
//! as 8 lowercase hex digits. A later `CONFIG ...` kind fits the same shape.

use raftkv_core::{ClientCommand, ClientId, Entry, EntryPayload, LogIndex, Op, Term};

use crate::escape::{escape_into, unescape};

/// ` crc=` plus 8 hex digits.
const CRC_SUFFIX_LEN: usize = 13;

/// Appends the line for `entry`, with its final `\n`, to `out`.
pub fn encode_into(entry: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    push_u64(out, entry.index.0);
    out.push(b' ');
    push_u64(out, entry.term.0);
    out.push(b' ');
    match &entry.payload {
        EntryPayload::Noop => out.extend_from_slice(b"NO-OP"),
        EntryPayload::Command(cmd) => {
            let kind: &[u8] = match cmd.op {
                Op::Set { .. } => b"SET",
                Op::Delete { .. } => b"DELETE",
            };
            out.extend_from_slice(kind);
            out.extend_from_slice(b" session=");
            push_u64(out, cmd.client_id.0);
            out.push(b':');
            push_u64(out, cmd.seq);
            out.push(b' ');
            match &cmd.op {
                Op::Set { key, value } => {
                    escape_into(key, out);
                    out.push(b' ');
                    escape_into(value, out);
                }
                Op::Delete { key } => escape_into(key, out),
            }
        }
    }
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(b" crc=");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend(
        (0..8)
            .rev()
            .map(|nibble| HEX[(crc >> (nibble * 4)) as usize & 0xf]),
    );
    out.push(b'\n');
}

/// Decimal digits of `n`, without going through `fmt` (this is the hot path).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The line for `entry` as a `String` (with its final `\n`).
pub fn encode(entry: &Entry) -> String {
    let mut out = Vec::with_capacity(64);
    encode_into(entry, &mut out);
    String::from_utf8(out).expect("lines are UTF-8")
}

/// Parses one line (without its `\n`). The error says what is wrong.
pub fn decode(line: &[u8]) -> Result<Entry, String> {
    if line.len() < CRC_SUFFIX_LEN || &line[line.len() - CRC_SUFFIX_LEN..line.len() - 8] != b" crc="
    {
        return Err("line does not end with ` crc=<8 hex digits>`".into());
    }
    let (body, crc_hex) = line.split_at(line.len() - 8);
    let body = &body[..body.len() - 5];
    let stored = std::str::from_utf8(crc_hex)
        .ok()
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("checksum is not 8 lowercase hex digits")?;
    let actual = crc32c::crc32c(body);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: line says {stored:08x}, content gives {actual:08x}"
        ));
    }
    let body = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    decode_fields(body)
}

fn decode_fields(body: &str) -> Result<Entry, String> {
    let mut fields = body.split(' ');
    let mut next = |what: &str| fields.next().ok_or_else(|| format!("missing {what}"));
    let index = LogIndex(parse_u64(next("index")?, "index")?);
    let term = Term(parse_u64(next("term")?, "term")?);
    let kind = next("command")?;
    let payload = match kind {
        "NO-OP" => EntryPayload::Noop,
        "SET" | "DELETE" => {
            let (client_id, seq) = parse_session(next("session")?)?;
            let key = unescape(next("key")?).map_err(|e| format!("key: {e}"))?;
            let op = if kind == "SET" {
                let value = unescape(next("value")?).map_err(|e| format!("value: {e}"))?;
                Op::Set { key, value }
            } else {
                Op::Delete { key }
            };
            EntryPayload::Command(ClientCommand { client_id, seq, op })
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected field {extra:?} after the command"));
    }
    Ok(Entry {
        index,
        term,
        payload,
    })
}

fn parse_session(field: &str) -> Result<(ClientId, u64), String> {
    let rest = field
        .strip_prefix("session=")
        .ok_or_else(|| format!("expected session=<client>:<seq>, found {field:?}"))?;
    let (client, seq) = rest
        .split_once(':')
        .ok_or_else(|| format!("bad session {field:?}"))?;
    Ok((
        ClientId(parse_u64(client, "client id")?),
        parse_u64(seq, "sequence number")?,
    ))
}

fn parse_u64(field: &str, what: &str) -> Result<u64, String> {
    // Canonical decimal only, so every entry has exactly one spelling.
    let canonical = !field.is_empty()
        && field.bytes().all(|b| b.is_ascii_digit())
        && (field == "0" || !field.starts_with('0'));
    if !canonical {
        return Err(format!("{what} {field:?} is not a decimal number"));
    }
    field
        .parse()
        .map_err(|_| format!("{what} {field:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(index: u64, term: u64, key: &str, value: &str) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Command(ClientCommand {
                client_id: ClientId(7),
                seq: 3,
                op: Op::Set {
                    key: key.into(),
                    value: value.into(),
                },
            }),
        }
    }

    #[test]
    fn example_lines() {
        let line = encode(&set(42, 5, "user:1", "hello world"));
        assert!(
            line.starts_with("42 5 SET session=7:3 user:1 hello\\sworld crc="),
            "{line}"
        );
        assert!(line.ends_with('\n'));
        let noop = Entry {
            index: LogIndex(1),
            term: Term(1),
            payload: EntryPayload::Noop,
        };
        assert!(encode(&noop).starts_with("1 1 NO-OP crc="));
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let line = encode(&set(42, 5, "k", "v"));
        let bytes = line.trim_end().as_bytes();
        for i in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[i] ^= 0x01;
            assert!(decode(&damaged).is_err(), "flip at {i} undetected");
        }
    }

    #[test]
    fn truncated_lines_are_rejected() {
        let line = encode(&set(42, 5, "key", "value"));
        let bytes = line.trim_end().as_bytes();
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        let op = prop_oneof![
            (any::<String>(), any::<String>()).prop_map(|(key, value)| Op::Set { key, value }),
            any::<String>().prop_map(|key| Op::Delete { key }),
        ];
        let payload = prop_oneof![
            Just(EntryPayload::Noop),
            (any::<u64>(), any::<u64>(), op).prop_map(|(c, seq, op)| EntryPayload::Command(
                ClientCommand {
                    client_id: ClientId(c),
                    seq,
                    op
                }
            )),
        ];
        (any::<u64>(), any::<u64>(), payload).prop_map(|(i, t, payload)| Entry {
            index: LogIndex(i),
            term: Term(t),
            payload,
        })
    }

    proptest! {
        #[test]
        fn line_round_trips(entry in arb_entry()) {
            let line = encode(&entry);
            prop_assert_eq!(line.matches('\n').count(), 1);
            prop_assert!(line.ends_with('\n'));
            prop_assert_eq!(decode(line.trim_end_matches('\n').as_bytes()).unwrap(), entry);
        }
    }
}
