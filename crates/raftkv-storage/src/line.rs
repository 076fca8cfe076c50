//! One `logs.txt` line per entry:
//!
//! ```text
//! <index> <term> NO-OP crc=<crc32c>
//! <index> <term> SET session=<client>:<seq> <key> <value> crc=<crc32c>
//! <index> <term> DELETE session=<client>:<seq> <key> crc=<crc32c>
//! <index> <term> CONFIG voters=<ids> learners=<ids> [addr=<id>:<address> ...] crc=<crc32c>
//! ```
//!
//! Fields are separated by one space; keys, values and addresses are escaped
//! ([`crate::escape`]); the checksum is CRC-32C of every byte before ` crc=`,
//! as 8 lowercase hex digits.
//!
//! A `CONFIG` line holds the whole new configuration: `<ids>` is a
//! comma-separated list of node ids in increasing order, or `none`; one
//! `addr=` field per node that has an address, in increasing id order, e.g.
//! `17 3 CONFIG voters=1,2,3 learners=4 addr=1:10.0.0.1:7001 addr=4:db-4:7001`.
//! The same configuration text is the `config` line of `snapshot.txt`.

use std::collections::{BTreeMap, BTreeSet};

use raftkv_core::{
    ClientCommand, ClientId, Entry, EntryPayload, LogIndex, Membership, NodeId, Op, Placement, Term,
};

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
        EntryPayload::Config(m) => {
            out.extend_from_slice(b"CONFIG ");
            encode_membership_into(m, out);
        }
    }
    push_crc_suffix(out, start);
}

/// Appends ` crc=<8 hex digits>\n`, the CRC-32C of `out[start..]`.
pub(crate) fn push_crc_suffix(out: &mut Vec<u8>, start: usize) {
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

/// Appends `voters=<ids> learners=<ids>` and one ` addr=<id>:<address>` per
/// address (see the module docs).
pub fn encode_membership_into(m: &Membership, out: &mut Vec<u8>) {
    out.extend_from_slice(b"voters=");
    push_ids(out, &m.voters);
    out.extend_from_slice(b" learners=");
    push_ids(out, &m.learners);
    for (id, addr) in &m.addrs {
        out.extend_from_slice(b" addr=");
        push_u64(out, id.0);
        out.push(b':');
        escape_into(addr, out);
    }
    if let Some(p) = &m.placement {
        out.extend_from_slice(b" prefer=[");
        for (i, id) in p.leaders.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_u64(out, id.0);
        }
        out.extend_from_slice(b"] prefer-zones=[");
        // Zone names hold no space, comma or bracket (`check_zone`).
        out.extend_from_slice(p.zones.join(",").as_bytes());
        out.push(b']');
    }
}

fn push_ids(out: &mut Vec<u8>, ids: &BTreeSet<NodeId>) {
    if ids.is_empty() {
        out.extend_from_slice(b"none");
    }
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_u64(out, id.0);
    }
}

/// Parses the fields [`encode_membership_into`] writes. Only the canonical
/// spelling is accepted (ids increasing, `none` for an empty list), so a
/// damaged field is noticed rather than read differently.
pub fn decode_membership<'a>(
    mut fields: impl Iterator<Item = &'a str>,
) -> Result<Membership, String> {
    let voters = parse_ids(fields.next(), "voters")?;
    let learners = parse_ids(fields.next(), "learners")?;
    let mut addrs = BTreeMap::new();
    let mut placement = None;
    for field in fields.by_ref() {
        if let Some(list) = field.strip_prefix("prefer=") {
            placement = Some(decode_placement(list, fields.next())?);
            break;
        }
        let rest = field
            .strip_prefix("addr=")
            .ok_or_else(|| format!("expected addr=<id>:<address>, found {field:?}"))?;
        let (id, addr) = rest
            .split_once(':')
            .ok_or_else(|| format!("expected addr=<id>:<address>, found {field:?}"))?;
        let id = NodeId(parse_u64(id, "address node id")?);
        if addrs.last_key_value().is_some_and(|(last, _)| *last >= id) {
            return Err(format!("addr of node {id} out of order"));
        }
        let addr = unescape(addr).map_err(|e| format!("address of node {id}: {e}"))?;
        addrs.insert(id, addr);
    }
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the placement"));
    }
    Ok(Membership {
        voters,
        learners,
        addrs,
        placement,
    })
}

/// Parses `[1,2]` (the `prefer=` field's value) and `prefer-zones=[a,b]`.
fn decode_placement(leaders: &str, zones: Option<&str>) -> Result<Placement, String> {
    let bracketed = |s: &'_ str, what: &str| -> Result<Vec<String>, String> {
        let inner = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| format!("{what}: expected [..], found {s:?}"))?;
        Ok(if inner.is_empty() {
            Vec::new()
        } else {
            inner.split(',').map(str::to_owned).collect()
        })
    };
    let mut p = Placement::default();
    for id in bracketed(leaders, "prefer")? {
        p.leaders.push(NodeId(parse_u64(&id, "preferred leader")?));
    }
    let zones = zones
        .and_then(|z| z.strip_prefix("prefer-zones="))
        .ok_or_else(|| format!("expected prefer-zones=[..] after prefer=, found {zones:?}"))?;
    p.zones = bracketed(zones, "prefer-zones")?;
    p.validate()?;
    Ok(p)
}

fn parse_ids(field: Option<&str>, name: &str) -> Result<BTreeSet<NodeId>, String> {
    let field = field.ok_or_else(|| format!("missing {name}="))?;
    let list = field
        .strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .ok_or_else(|| format!("expected {name}=<ids>, found {field:?}"))?;
    let mut ids = BTreeSet::new();
    if list == "none" {
        return Ok(ids);
    }
    for part in list.split(',') {
        let id = NodeId(parse_u64(part, name)?);
        if ids.last().is_some_and(|last| *last >= id) {
            return Err(format!("{name}: ids must be increasing, found {list:?}"));
        }
        ids.insert(id);
    }
    Ok(ids)
}

/// Decimal digits of `n`, without going through `fmt` (this is the hot path).
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
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
    decode_fields(check_crc(line)?)
}

/// A checksum written as 8 lowercase hex digits (the only spelling the
/// files use, so a flipped case bit is caught too).
pub(crate) fn parse_crc_hex(h: &str) -> Option<u32> {
    (h.len() == 8
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| u32::from_str_radix(h, 16).ok())
    .flatten()
}

/// Whether `line` (without its `\n`) ends in ` crc=` and 8 lowercase hex
/// digits, matching or not: a line cut short by a crash does not.
pub(crate) fn has_crc_suffix(line: &[u8]) -> bool {
    line.len() >= CRC_SUFFIX_LEN
        && &line[line.len() - CRC_SUFFIX_LEN..line.len() - 8] == b" crc="
        && line[line.len() - 8..]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Checks the ` crc=<8 hex digits>` suffix of `line` (without its `\n`) and
/// returns the text before it.
pub(crate) fn check_crc(line: &[u8]) -> Result<&str, String> {
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
    std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))
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
        "CONFIG" => {
            // The configuration takes every remaining field.
            return Ok(Entry {
                index,
                term,
                payload: EntryPayload::Config(decode_membership(fields)?),
            });
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

pub(crate) fn parse_u64(field: &str, what: &str) -> Result<u64, String> {
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
        let mut m = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
        m.learners.insert(NodeId(4));
        m.addrs.insert(NodeId(1), "10.0.0.1:7001".into());
        m.addrs.insert(NodeId(4), "db 4:7001".into());
        let config = Entry {
            index: LogIndex(17),
            term: Term(3),
            payload: EntryPayload::Config(m),
        };
        let line = encode(&config);
        assert!(
            line.starts_with(
                "17 3 CONFIG voters=1,2,3 learners=4 addr=1:10.0.0.1:7001 addr=4:db\\s4:7001 crc="
            ),
            "{line}"
        );
        assert_eq!(decode(line.trim_end().as_bytes()).unwrap(), config);
        let empty = Entry {
            payload: EntryPayload::Config(Membership::default()),
            ..config
        };
        let line = encode(&empty);
        assert!(
            line.starts_with("17 3 CONFIG voters=none learners=none crc="),
            "{line}"
        );
        assert_eq!(decode(line.trim_end().as_bytes()).unwrap(), empty);
    }

    #[test]
    fn non_canonical_configs_are_rejected() {
        for body in [
            "1 1 CONFIG voters=2,1 learners=none",
            "1 1 CONFIG voters=1,1 learners=none",
            "1 1 CONFIG voters= learners=none",
            "1 1 CONFIG voters=01 learners=none",
            "1 1 CONFIG learners=none voters=1",
            "1 1 CONFIG voters=1",
            "1 1 CONFIG voters=1 learners=none addr=2:b addr=1:a",
            "1 1 CONFIG voters=1 learners=none addr=1:a addr=1:a",
            "1 1 CONFIG voters=1 learners=none addr=1",
            "1 1 CONFIG voters=1 learners=none addr=1:",
            "1 1 CONFIG voters=1 learners=none x",
        ] {
            let mut line = body.as_bytes().to_vec();
            push_crc_suffix(&mut line, 0);
            line.pop();
            assert!(decode(&line).is_err(), "{body:?} accepted");
        }
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
        let ids = || proptest::collection::btree_set((0u64..20).prop_map(NodeId), 0..5);
        let membership = (
            ids(),
            ids(),
            proptest::collection::btree_map((0u64..20).prop_map(NodeId), any::<String>(), 0..4),
        )
            .prop_map(|(voters, learners, addrs)| Membership {
                voters,
                learners,
                addrs,
                placement: None,
            });
        let placement = proptest::option::of(
            (
                proptest::collection::btree_set((1u64..20).prop_map(NodeId), 0..4),
                proptest::collection::btree_set("[a-z0-9][a-z0-9._:/-]{0,10}", 0..3),
            )
                .prop_map(|(leaders, zones)| Placement {
                    leaders: leaders.into_iter().rev().collect(),
                    zones: zones.into_iter().collect(),
                }),
        );
        let membership = (membership, placement).prop_map(|(mut m, p)| {
            m.placement = p;
            m
        });
        let payload = prop_oneof![
            Just(EntryPayload::Noop),
            membership.prop_map(EntryPayload::Config),
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
