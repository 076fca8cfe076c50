//! A latency-by-percentile plot as a self-contained SVG (no font or
//! graphics library needed): x is the percentile on a "nines" scale
//! (50 %, 90 %, 99 %, 99.9 %, 99.99 %), y the latency in milliseconds.

use std::fmt::Write;

use hdrhistogram::Histogram;

const W: f64 = 760.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Up to 99.99 %.
const NINES_MAX: f64 = 4.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

fn quantile_at(nines: f64) -> f64 {
    1.0 - 10f64.powf(-nines)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Points of a curve.
pub const CURVE_POINTS: usize = 201;

/// The latency (ms) at CURVE_POINTS percentiles evenly spaced in nines,
/// from 0 % to 99.99 %; empty for an empty histogram (of nanoseconds).
pub fn curve_ms(h: &Histogram<u64>) -> Vec<f64> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..CURVE_POINTS)
        .map(|k| {
            let n = NINES_MAX * k as f64 / (CURVE_POINTS - 1) as f64;
            h.value_at_quantile(quantile_at(n)) as f64 / 1e6
        })
        .collect()
}

/// One line per (name, curve from [`curve_ms`]).
pub fn percentile_svg(series: &[(String, Vec<f64>)]) -> String {
    let y_max = series
        .iter()
        .filter_map(|(_, c)| c.last().copied())
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.05;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |n: f64| LEFT + pw * n / NINES_MAX;
    let y = |v: f64| TOP + ph * (1.0 - v / y_max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">Latency by percentile</text>"#,
        LEFT + pw / 2.0
    );
    for (n, label) in [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
    ] {
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{TOP}" x2="{0}" y2="{1}" stroke="#ddd"/><text x="{0}" y="{2}" text-anchor="middle">{label}</text>"##,
            x(n),
            TOP + ph,
            TOP + ph + 18.0
        );
    }
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{v:.2}</text>"##,
            y(v),
            LEFT + pw,
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">latency (ms)</text>"#,
        LEFT + pw / 2.0,
        H - 10.0,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    for (i, (name, curve)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        if !curve.is_empty() {
            let last = (curve.len() - 1).max(1) as f64;
            let points: Vec<String> = curve
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{:.1},{:.1}", x(NINES_MAX * k as f64 / last), y(*v)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
        }
        let ly = TOP + 16.0 * i as f64 + 8.0;
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="14" height="4" fill="{colour}"/><text x="{}" y="{}">{}</text>"#,
            W - RIGHT + 12.0,
            ly - 4.0,
            W - RIGHT + 30.0,
            ly + 1.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_line_per_series() {
        let mut a = crate::report::new_histogram();
        let mut b = crate::report::new_histogram();
        for v in 1..1000u64 {
            a.record(v * 1000).unwrap();
            b.record(v * 3000).unwrap();
        }
        let (ca, cb) = (curve_ms(&a), curve_ms(&b));
        assert_eq!(ca.len(), CURVE_POINTS);
        assert!(ca.windows(2).all(|w| w[0] <= w[1]), "a curve never falls");
        let svg = percentile_svg(&[("a <1>".into(), ca), ("b".into(), cb)]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;1&gt;"));
    }
}
