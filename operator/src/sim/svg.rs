//! The plot of a run, as hand-written SVG: per function, CPU against the band, EEs and instances,
//! and load with throttles, over virtual time.

use std::fmt::Write as _;

use super::outcome::{Run, Second};
use super::scenario::Scenario;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 150.0;
const PANEL: f64 = 130.0;
const GAP: f64 = 34.0;
const TOP: f64 = 40.0;
/// At most this many points per line: one per pixel or so.
const BUCKETS: usize = 800;

struct Panel {
    top: f64,
    y_max: f64,
    t_max: f64,
}

impl Panel {
    fn x(&self, t: f64) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * t / self.t_max.max(1.0)
    }
    fn y(&self, v: f64) -> f64 {
        self.top + PANEL - PANEL * (v / self.y_max.max(1e-9)).clamp(0.0, 1.0)
    }
}

/// Averages (or maxima) of a per-second series over equal time buckets.
fn buckets(rows: &[&Second], value: impl Fn(&Second) -> f64, max: bool) -> Vec<(f64, f64)> {
    if rows.is_empty() {
        return Vec::new();
    }
    let size = rows.len().div_ceil(BUCKETS).max(1);
    rows.chunks(size)
        .map(|chunk| {
            #[allow(clippy::cast_precision_loss)]
            let t = chunk[0].t as f64;
            let v = if max {
                chunk.iter().map(|r| value(r)).fold(0.0, f64::max)
            } else {
                #[allow(clippy::cast_precision_loss)]
                let len = chunk.len() as f64;
                chunk.iter().map(|r| value(r)).sum::<f64>() / len
            };
            (t, v)
        })
        .collect()
}

fn polyline(out: &mut String, p: &Panel, points: &[(f64, f64)], color: &str, extra: &str) {
    let mut d = String::new();
    for (t, v) in points {
        let _ = write!(d, "{:.1},{:.1} ", p.x(*t), p.y(*v));
    }
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.4" {extra} points="{}"/>"#,
        d.trim_end()
    );
}

fn axes(out: &mut String, p: &Panel, label: &str, ticks: &[f64]) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{}" width="{}" height="{PANEL}" fill="none" stroke="#999"/>"##,
        p.top,
        x1 - x0
    );
    for v in ticks {
        let y = p.y(*v);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" x2="{x1}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 4.0,
            y + 4.0,
            fmt_tick(*v)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{x0}" y="{}" font-weight="bold">{label}</text>"#,
        p.top - 6.0
    );
}

fn fmt_tick(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn legend(out: &mut String, p: &Panel, items: &[(&str, &str)]) {
    for (k, (color, name)) in items.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = p.top + 14.0 + 16.0 * k as f64;
        let x = WIDTH - RIGHT + 10.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" x2="{}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"#,
            x + 16.0,
            x + 20.0,
            y + 4.0
        );
    }
}

/// Round `v` up to 1, 2 or 5 times a power of ten, and four ticks up to it.
fn scale(v: f64) -> (f64, Vec<f64>) {
    let v = v.max(1.0);
    let magnitude = 10f64.powf(v.log10().floor());
    let top = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * magnitude);
    (top, (0..=4).map(|k| top * f64::from(k) / 4.0).collect())
}

/// The plot of a run.
pub fn plot(scenario: &Scenario, run: &Run) -> String {
    let n = scenario.functions.len();
    #[allow(clippy::cast_precision_loss)]
    let height = TOP + (PANEL + GAP) * 3.0 * n as f64 + 20.0;
    #[allow(clippy::cast_precision_loss)]
    let t_max = f64::from(scenario.profile.duration_seconds);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="14" font-weight="bold">lmi-sim: profile {} (target {:.0}% +/- {:.0}, instance launch {} s, EE start-up {} s, time in minutes)</text>"#,
        scenario.profile.name,
        run.target,
        run.band,
        scenario.params.instance_launch_seconds,
        scenario.params.ee_startup_seconds
    );
    for (i, f) in scenario.functions.iter().enumerate() {
        let rows: Vec<&Second> = run.seconds.iter().filter(|s| s.function == i).collect();
        #[allow(clippy::cast_precision_loss)]
        let base = TOP + (PANEL + GAP) * 3.0 * i as f64 + 10.0;

        // CPU against the band.
        let cpu = Panel {
            top: base,
            y_max: 100.0,
            t_max,
        };
        axes(
            &mut out,
            &cpu,
            &format!("{}: CPU utilization of ready EEs (%), as sampled", f.name),
            &[0.0, 25.0, 50.0, 75.0, 100.0],
        );
        let (lo, hi) = (run.target - run.band, run.target + run.band);
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{:.1}" width="{}" height="{:.1}" fill="#2ca02c" fill-opacity="0.15"/>"##,
            cpu.y(hi),
            WIDTH - LEFT - RIGHT,
            cpu.y(lo) - cpu.y(hi)
        );
        polyline(
            &mut out,
            &cpu,
            &[(0.0, run.target), (t_max, run.target)],
            "#2ca02c",
            r#"stroke-dasharray="4 3""#,
        );
        polyline(
            &mut out,
            &cpu,
            &buckets(&rows, |r| r.sampled_percent, false),
            "#1f77b4",
            "",
        );
        legend(
            &mut out,
            &cpu,
            &[("#1f77b4", "CPU"), ("#2ca02c", "target +/- band")],
        );

        // EEs and instances.
        let peak = rows
            .iter()
            .map(|r| f64::from(r.live.max(r.desired).max(r.instances).max(r.oracle_ees)))
            .fold(1.0, f64::max);
        let (top, ticks) = scale(peak);
        let ees = Panel {
            top: base + PANEL + GAP,
            y_max: top,
            t_max,
        };
        axes(&mut out, &ees, "EEs and instances", &ticks);
        polyline(
            &mut out,
            &ees,
            &buckets(&rows, |r| f64::from(r.oracle_ees), false),
            "#aaaaaa",
            r#"stroke-dasharray="2 2""#,
        );
        polyline(
            &mut out,
            &ees,
            &buckets(&rows, |r| f64::from(r.desired), false),
            "#ff7f0e",
            r#"stroke-dasharray="5 3""#,
        );
        polyline(
            &mut out,
            &ees,
            &buckets(&rows, |r| f64::from(r.ready), false),
            "#1f77b4",
            "",
        );
        polyline(
            &mut out,
            &ees,
            &buckets(&rows, |r| f64::from(r.instances), false),
            "#9467bd",
            "",
        );
        legend(
            &mut out,
            &ees,
            &[
                ("#1f77b4", "ready EEs"),
                ("#ff7f0e", "desired EEs"),
                ("#aaaaaa", "oracle EEs"),
                ("#9467bd", "instances (provider)"),
            ],
        );

        // Load and throttles.
        let peak = rows.iter().map(|r| r.rate).fold(1.0, f64::max);
        let (top, ticks) = scale(peak * 1.1);
        let load = Panel {
            top: base + 2.0 * (PANEL + GAP),
            y_max: top,
            t_max,
        };
        axes(&mut out, &load, "invocations per second", &ticks);
        polyline(
            &mut out,
            &load,
            &buckets(&rows, |r| r.rate, false),
            "#555555",
            "",
        );
        #[allow(clippy::cast_precision_loss)]
        let throttles = buckets(&rows, |r| r.throttled as f64, true);
        for (t, v) in throttles.iter().filter(|(_, v)| *v > 0.0) {
            let x = load.x(*t);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#d62728" stroke-width="1.5"/>"##,
                load.y(0.0),
                load.y(*v).min(load.y(0.0) - 2.0)
            );
        }
        legend(
            &mut out,
            &load,
            &[
                ("#555555", "offered load"),
                ("#d62728", "throttled (429/s)"),
            ],
        );
        // Time axis in minutes.
        let step = if t_max > 7200.0 { 1800.0 } else { 600.0 };
        let mut tick = 0.0;
        while tick <= t_max {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0}</text>"#,
                load.x(tick),
                load.top + PANEL + 14.0,
                tick / 60.0
            );
            tick += step;
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_up_to_1_2_5() {
        assert_eq!(scale(37.0).0, 50.0);
        assert_eq!(scale(120.0).0, 200.0);
        assert_eq!(scale(0.2).0, 1.0);
        assert_eq!(scale(1000.0).1.len(), 5);
    }
}
