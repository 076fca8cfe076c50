//! The transcript file format: a script of commands, each followed by the
//! exact output it must produce, in the manner of etcd-io/raft's `testdata`
//! (cockroachdb/datadriven). A file reads:
//!
//! ```text
//! # A comment.
//! campaign 1
//! ----
//! node 1 timed out at 0.734000s
//!
//! stabilize
//! ----
//! > 1 handling Ready
//!   ...
//! ```
//!
//! A command is one line of words; `----` ends it; its output runs to the
//! next blank line (or the end of the file), so an output never holds a
//! blank line. Lines starting with `#`, and blank lines, are kept as they
//! are. [`run_file`] runs every command through a callback and compares the
//! output; with the environment variable [`REWRITE_VAR`] set (to anything
//! but `0` or the empty string) it writes the actual outputs back into the
//! file instead, so a reviewer reads the change in the diff.

use std::fmt::Write as _;
use std::path::Path;

/// Set it to rewrite transcripts with what the code now produces:
/// `RAFTKV_REWRITE=1 cargo test -p raftkv-core --test transcripts`.
pub const REWRITE_VAR: &str = "RAFTKV_REWRITE";

/// The separator between a command and its expected output.
const SEPARATOR: &str = "----";

/// One command of a transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The command's first word.
    pub name: String,
    /// The words after it.
    pub args: Vec<String>,
    /// 1-based line of the command in its file, for messages.
    pub line: usize,
}

impl Command {
    /// The command line as written (words joined by one space).
    pub fn text(&self) -> String {
        std::iter::once(self.name.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Stanza {
    /// A comment or a blank line, kept verbatim.
    Verbatim(String),
    Case {
        command: Command,
        raw: String,
        expected: Vec<String>,
    },
}

/// Why a transcript could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    pub line: usize,
    pub what: &'static str,
}

fn parse(text: &str) -> Result<Vec<Stanza>, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut stanzas = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            stanzas.push(Stanza::Verbatim(line.to_string()));
            i += 1;
            continue;
        }
        if line == SEPARATOR {
            return Err(ParseError {
                line: i + 1,
                what: "a separator with no command",
            });
        }
        let mut words = line.split_whitespace().map(str::to_string);
        let name = words.next().expect("a non-blank line has a word");
        let command = Command {
            name,
            args: words.collect(),
            line: i + 1,
        };
        if lines.get(i + 1) != Some(&SEPARATOR) {
            return Err(ParseError {
                line: i + 1,
                what: "a command must be followed by ----",
            });
        }
        i += 2;
        let mut expected = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            expected.push(lines[i].to_string());
            i += 1;
        }
        stanzas.push(Stanza::Case {
            command,
            raw: line.to_string(),
            expected,
        });
    }
    Ok(stanzas)
}

fn rewrite_requested() -> bool {
    std::env::var(REWRITE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Runs the transcript at `path`: calls `exec` on each command in order and
/// compares what it returns with the recorded output. Panics at the first
/// difference with the file, the line, the command and a line diff (the
/// state after a wrong step rarely makes the later outputs worth reading).
/// With [`REWRITE_VAR`] set, writes the actual outputs into the file
/// instead.
///
/// `exec` must not return blank lines (they would end the output); trailing
/// whitespace is trimmed and an empty output is recorded as `ok`.
pub fn run_file(path: &Path, exec: impl FnMut(&Command) -> String) {
    run(path, rewrite_requested(), exec)
}

fn run(path: &Path, rewrite: bool, mut exec: impl FnMut(&Command) -> String) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let stanzas = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::new();
    for stanza in &stanzas {
        match stanza {
            Stanza::Verbatim(line) => {
                out.push_str(line);
                out.push('\n');
            }
            Stanza::Case {
                command,
                raw,
                expected,
            } => {
                let actual = normalise(&exec(command), path, command);
                if !rewrite && actual != *expected {
                    panic!(
                        "{}:{}: `{}` gave other output (- expected, + actual; \
                         {REWRITE_VAR}=1 rewrites the file):\n{}",
                        path.display(),
                        command.line,
                        command.text(),
                        diff(expected, &actual)
                    );
                }
                let _ = writeln!(out, "{raw}\n{SEPARATOR}");
                for line in &actual {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
    }
    if rewrite && out != text {
        std::fs::write(path, out)
            .unwrap_or_else(|e| panic!("cannot rewrite {}: {e}", path.display()));
    }
}

fn normalise(output: &str, path: &Path, command: &Command) -> Vec<String> {
    let lines: Vec<String> = output.lines().map(|l| l.trim_end().to_string()).collect();
    if lines.is_empty() {
        return vec!["ok".to_string()];
    }
    if lines.iter().any(|l| l.is_empty()) {
        panic!(
            "{}:{}: the output of `{}` has a blank line, which would end it",
            path.display(),
            command.line,
            command.text()
        );
    }
    lines
}

/// A line diff (longest common subsequence): `  ` same, `- ` expected only,
/// `+ ` actual only.
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // common[i][j]: the longest common subsequence of expected[i..], actual[j..].
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if expected[i] == actual[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(out, "  {}", expected[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || common[i][j + 1] > common[i + 1][j]) {
            let _ = writeln!(out, "+ {}", actual[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", expected[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_outputs_and_comments() {
        let text = "# c\nadd-nodes 3\n----\nok\n\nstatus 1\n----\na\nb\n";
        let s = parse(text).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[0], Stanza::Verbatim("# c".into()));
        match &s[3] {
            Stanza::Case {
                command, expected, ..
            } => {
                assert_eq!(command.name, "status");
                assert_eq!(command.args, vec!["1".to_string()]);
                assert_eq!(command.line, 6);
                assert_eq!(expected, &vec!["a".to_string(), "b".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_command_without_separator_is_refused() {
        assert_eq!(parse("tick\nok\n").unwrap_err().line, 1);
        assert_eq!(parse("----\n").unwrap_err().line, 1);
    }

    #[test]
    fn diff_marks_changed_lines() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let d = diff(&v(&["a", "b", "c"]), &v(&["a", "x", "c"]));
        assert_eq!(d, "  a\n- b\n+ x\n  c\n");
    }

    #[test]
    fn a_mismatch_fails_and_names_the_line() {
        let dir = std::env::temp_dir().join(format!("raftkv-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.txt");
        std::fs::write(&path, "echo hi\n----\nhi\n\necho there\n----\nthere\n").unwrap();
        run(&path, false, |c| c.args.join(" "));
        std::fs::write(&path, "echo hi\n----\nhello\n").unwrap();
        let r = std::panic::catch_unwind(|| run(&path, false, |c| c.args.join(" ")));
        let msg = *r.unwrap_err().downcast::<String>().unwrap();
        assert!(
            msg.contains("t.txt:1: `echo hi`") && msg.contains("- hello\n+ hi"),
            "{msg}"
        );
        run(&path, true, |c| c.args.join(" "));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "echo hi\n----\nhi\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
