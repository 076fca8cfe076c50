//! The raftkv-vs-etcd table of `bench/compare_etcd.sh`: reads the JSON runs
//! named `CASE__SYSTEM__rROUND.json`, takes the median of each figure over
//! the rounds, and prints one row per (case, comparison, metric) with the
//! ratio raftkv / etcd, then the targets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::plot;

#[derive(Args, Debug)]
pub struct TableArgs {
    /// Folder with the runs' JSON files.
    #[arg(long)]
    pub dir: PathBuf,
    /// Write the table as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a latency plot of one case (all its systems, round 1) here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The case to plot.
    #[arg(long, default_value = "get-64")]
    pub plot_case: String,
}

/// The medians of one (case, system) over the rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Medians {
    pub rounds: usize,
    pub throughput_ops_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_us_per_op: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub case: String,
    pub raftkv: String,
    pub etcd: String,
    pub metric: &'static str,
    pub raftkv_value: f64,
    pub etcd_value: f64,
    /// raftkv / etcd.
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub what: &'static str,
    pub ratio: Option<f64>,
    pub goal: &'static str,
    pub met: Option<bool>,
}

pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// (case, system) -> (round, the run's JSON) of each round.
type Runs = BTreeMap<(String, String), Vec<(String, Value)>>;

fn load_runs(dir: &PathBuf) -> anyhow::Result<Runs> {
    let mut runs = Runs::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let parts: Vec<&str> = stem.split("__").collect();
        let [case, system, round] = parts[..] else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {name}"))?;
        runs.entry((case.to_string(), system.to_string()))
            .or_default()
            .push((round.to_string(), v));
    }
    Ok(runs)
}

fn medians(runs: &[(String, Value)]) -> Medians {
    let field = |f: &dyn Fn(&Value) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = runs.iter().filter_map(|(_, r)| f(r)).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    Medians {
        rounds: runs.len(),
        throughput_ops_s: field(&|r| r["throughput_ops_s"].as_f64()).unwrap_or(0.0),
        p50_us: field(&|r| r["latency"]["p50_us"].as_f64()).unwrap_or(0.0),
        p99_us: field(&|r| r["latency"]["p99_us"].as_f64()).unwrap_or(0.0),
        cpu_us_per_op: field(&|r| r["cpu_us_per_op"].as_f64()),
    }
}

/// The comparisons of each case: (raftkv system, etcd system).
const COMPARISONS: &[(&str, &str, &str)] = &[
    ("put-1", "raftkv", "etcd"),
    ("put-64", "raftkv", "etcd"),
    ("put-256", "raftkv", "etcd"),
    ("get-1", "raftkv-lease", "etcd-lin"),
    ("get-1", "raftkv-lease", "etcd-ser"),
    ("get-64", "raftkv-lease", "etcd-lin"),
    ("get-64", "raftkv-lease", "etcd-ser"),
    ("mixed-64", "raftkv", "etcd"),
];

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

pub fn rows(m: &BTreeMap<(String, String), Medians>) -> Vec<Row> {
    let mut out = Vec::new();
    for &(case, rk, et) in COMPARISONS {
        let (Some(a), Some(b)) = (
            m.get(&(case.into(), rk.into())),
            m.get(&(case.into(), et.into())),
        ) else {
            continue;
        };
        let mut push = |metric, x: f64, y: f64| {
            out.push(Row {
                case: case.into(),
                raftkv: rk.into(),
                etcd: et.into(),
                metric,
                raftkv_value: x,
                etcd_value: y,
                ratio: ratio(x, y),
            })
        };
        push("throughput ops/s", a.throughput_ops_s, b.throughput_ops_s);
        push("p50 us", a.p50_us, b.p50_us);
        push("p99 us", a.p99_us, b.p99_us);
        if let (Some(x), Some(y)) = (a.cpu_us_per_op, b.cpu_us_per_op) {
            push("cluster CPU us/op", x, y);
        }
    }
    out
}

pub fn targets(rows: &[Row]) -> Vec<Target> {
    let find = |case: &str, etcd: &str, metric: &str| {
        rows.iter()
            .find(|r| r.case == case && r.etcd == etcd && r.metric == metric)
            .map(|r| r.ratio)
    };
    let at_least = |what, ratio: Option<f64>, goal: f64, text| Target {
        what,
        ratio,
        goal: text,
        met: ratio.map(|r| r >= goal),
    };
    let at_most = |what, ratio: Option<f64>, goal: f64, text| Target {
        what,
        ratio,
        goal: text,
        met: ratio.map(|r| r <= goal),
    };
    vec![
        at_least(
            "64-client put throughput vs etcd",
            find("put-64", "etcd", "throughput ops/s"),
            2.0,
            ">= 2.0",
        ),
        at_most(
            "1-client put p50 vs etcd",
            find("put-1", "etcd", "p50 us"),
            0.6,
            "<= 0.6",
        ),
        at_least(
            "64-client lease-read throughput vs etcd linearizable",
            find("get-64", "etcd-lin", "throughput ops/s"),
            3.0,
            ">= 3.0",
        ),
        at_least(
            "64-client lease-read throughput vs etcd serializable",
            find("get-64", "etcd-ser", "throughput ops/s"),
            1.5,
            ">= 1.5",
        ),
        at_most(
            "1-client lease-read p50 vs etcd serializable",
            find("get-1", "etcd-ser", "p50 us"),
            0.6,
            "<= 0.6",
        ),
    ]
}

fn fmt_value(metric: &str, v: f64) -> String {
    if metric.starts_with("throughput") {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

pub fn run(a: TableArgs) -> anyhow::Result<ExitCode> {
    let runs = load_runs(&a.dir)?;
    if runs.is_empty() {
        bail!("no CASE__SYSTEM__rN.json files in {}", a.dir.display());
    }
    let m: BTreeMap<(String, String), Medians> =
        runs.iter().map(|(k, v)| (k.clone(), medians(v))).collect();
    let rows = rows(&m);
    let targets = targets(&rows);
    let rounds = m.values().map(|x| x.rounds).min().unwrap_or(0);
    println!("Medians over {rounds} rounds; ratio = raftkv / etcd.\n");
    println!("| workload | raftkv | etcd | metric | raftkv | etcd | ratio |");
    println!("|---|---|---|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} |",
            r.case,
            r.raftkv,
            r.etcd,
            r.metric,
            fmt_value(r.metric, r.raftkv_value),
            fmt_value(r.metric, r.etcd_value),
            r.ratio
        );
    }
    println!("\n| target | goal | measured ratio | met |");
    println!("|---|---|---:|---|");
    for t in &targets {
        let ratio = t.ratio.map(|r| format!("{r:.2}")).unwrap_or("-".into());
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not run",
        };
        println!("| {} | {} | {ratio} | {met} |", t.what, t.goal);
    }
    if let Some(path) = &a.json {
        let medians: Vec<Value> = m
            .iter()
            .map(|((case, system), x)| serde_json::json!({"case": case, "system": system, "medians": x}))
            .collect();
        let out = serde_json::json!({"rounds": rounds, "rows": rows, "targets": targets, "medians": medians});
        std::fs::write(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    if let Some(path) = &a.plot {
        write_plot(&runs, &a.plot_case, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The first round of every system of `case`, as one SVG.
fn write_plot(runs: &Runs, case: &str, path: &PathBuf) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for ((c, system), list) in runs {
        if c != case {
            continue;
        }
        let Some((_, first)) = list.iter().min_by(|a, b| a.0.cmp(&b.0)) else {
            continue;
        };
        let curve: Vec<f64> = first["curve_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        series.push((format!("{case} {system}"), curve));
    }
    if series.is_empty() {
        bail!("no runs of case {case} to plot");
    }
    std::fs::write(path, plot::percentile_svg(&series))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn table_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, tput: f64, p50: f64| {
            let v = serde_json::json!({
                "throughput_ops_s": tput,
                "latency": {"p50_us": p50, "p99_us": p50 * 3.0},
                "cpu_us_per_op": 10.0,
                "curve_ms": [0.1, 0.2, 0.3],
            });
            std::fs::write(dir.path().join(name), v.to_string()).unwrap();
        };
        write("put-64__raftkv__r1.json", 3000.0, 100.0);
        write("put-64__raftkv__r2.json", 1000.0, 300.0);
        write("put-64__raftkv__r3.json", 2000.0, 200.0);
        write("put-64__etcd__r1.json", 1000.0, 400.0);
        let runs = load_runs(&dir.path().to_path_buf()).unwrap();
        let m: BTreeMap<_, _> = runs.iter().map(|(k, v)| (k.clone(), medians(v))).collect();
        let rows = rows(&m);
        let tput = rows
            .iter()
            .find(|r| r.metric == "throughput ops/s")
            .unwrap();
        assert_eq!((tput.raftkv_value, tput.ratio), (2000.0, 2.0));
        let t = targets(&rows);
        assert_eq!(t[0].met, Some(true));
        assert_eq!(t[1].met, None, "put-1 was not run");
        let svg = dir.path().join("p.svg");
        write_plot(&runs, "put-64", &svg).unwrap();
        assert_eq!(
            std::fs::read_to_string(svg)
                .unwrap()
                .matches("<polyline")
                .count(),
            2
        );
    }
}
