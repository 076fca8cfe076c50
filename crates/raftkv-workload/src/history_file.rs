//! Histories as JSON lines, one operation per line, so a run in one process
//! (or container) can be checked in another.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use raftkv_checker::{Input, Operation, Output};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HistoryFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct Line {
    id: u64,
    client: u64,
    op: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// "ok", "unknown", or "value" (then `read` holds what was read).
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read: Option<Option<String>>,
    call_ns: u64,
    return_ns: u64,
}

fn to_line(op: &Operation) -> Line {
    let (name, key, value) = match &op.input {
        Input::Get { key } => ("get", key.clone(), None),
        Input::Set { key, value } => ("set", key.clone(), Some(value.clone())),
        Input::Delete { key } => ("delete", key.clone(), None),
    };
    let (outcome, read) = match &op.output {
        Output::Ok => ("ok", None),
        Output::Unknown => ("unknown", None),
        Output::Value(v) => ("value", Some(v.clone())),
    };
    Line {
        id: op.id,
        client: op.client,
        op: name.into(),
        key,
        value,
        outcome: outcome.into(),
        read,
        call_ns: op.call_ns,
        return_ns: op.return_ns,
    }
}

fn from_line(l: Line) -> Result<Operation, String> {
    let input = match (l.op.as_str(), l.value) {
        ("get", _) => Input::Get { key: l.key },
        ("set", Some(value)) => Input::Set { key: l.key, value },
        ("delete", _) => Input::Delete { key: l.key },
        (other, _) => return Err(format!("unknown op {other:?}")),
    };
    let output = match (l.outcome.as_str(), l.read) {
        ("ok", _) => Output::Ok,
        ("unknown", _) => Output::Unknown,
        ("value", Some(v)) => Output::Value(v),
        ("value", None) => Output::Value(None),
        (other, _) => return Err(format!("unknown outcome {other:?}")),
    };
    Ok(Operation {
        id: l.id,
        client: l.client,
        input,
        output,
        call_ns: l.call_ns,
        return_ns: l.return_ns,
    })
}

pub fn write_history(path: &Path, history: &[Operation]) -> Result<(), HistoryFileError> {
    let io = |source| HistoryFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut w = BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for op in history {
        let line = serde_json::to_string(&to_line(op)).expect("history lines serialise");
        writeln!(w, "{line}").map_err(io)?;
    }
    w.flush().map_err(io)
}

pub fn read_history(path: &Path) -> Result<Vec<Operation>, HistoryFileError> {
    let io = |source| HistoryFileError::Io {
        path: path.to_owned(),
        source,
    };
    let r = BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let parse = |source| HistoryFileError::Parse {
            path: path.to_owned(),
            line: i + 1,
            source,
        };
        let l: Line = serde_json::from_str(&line).map_err(parse)?;
        let op = from_line(l).map_err(|m| parse(serde::de::Error::custom(m)))?;
        out.push(op);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let ops = vec![
            Operation {
                id: 0,
                client: 1,
                input: Input::Set {
                    key: "a b".into(),
                    value: "x\ny".into(),
                },
                output: Output::Ok,
                call_ns: 1,
                return_ns: 2,
            },
            Operation {
                id: 1,
                client: 2,
                input: Input::Get { key: "a b".into() },
                output: Output::Value(None),
                call_ns: 3,
                return_ns: 4,
            },
            Operation {
                id: 2,
                client: 2,
                input: Input::Delete { key: "z".into() },
                output: Output::Unknown,
                call_ns: 5,
                return_ns: u64::MAX,
            },
        ];
        let dir = std::env::temp_dir().join(format!("raftkv-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        write_history(&path, &ops).unwrap();
        assert_eq!(read_history(&path).unwrap(), ops);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
