//! Per-input tests of the core as transcripts: each file in `testdata/` is a
//! script of inputs (ticks, campaigns, proposals, reads, transfers,
//! membership changes, partitions) with the exact `Ready` every node
//! produces. The format is `raftkv_core::testkit::script`; the commands are
//! in `docs/testing.md`. Rewrite the files after an intended change with
//! `RAFTKV_REWRITE=1 cargo test -p raftkv-core --test transcripts` and read
//! the diff.

mod transcripts {
    pub mod harness;
    pub mod print;
}

use std::path::{Path, PathBuf};

use raftkv_core::testkit::script;

use transcripts::harness::Harness;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata")
}

fn run(name: &str) {
    let mut h = Harness::default();
    script::run_file(&testdata().join(name), |cmd| h.run(cmd));
}

macro_rules! transcripts {
    ($($test:ident => $file:literal),* $(,)?) => {
        $(#[test]
        fn $test() {
            run($file);
        })*

        /// Every file in `testdata/` has its test above.
        #[test]
        fn every_transcript_runs() {
            let listed = [$($file),*];
            for entry in std::fs::read_dir(testdata()).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(listed.contains(&name.as_str()), "testdata/{name} has no test");
            }
        }
    };
}

transcripts! {
    election => "election.txt",
    lease => "lease.txt",
    read_index => "read_index.txt",
    transfer => "transfer.txt",
    membership => "membership.txt",
}
