//! Load profiles: invocations per second of each simulated function over virtual time.

use crate::error::{Error, Result};

/// A load profile: one rate curve per function, and how long to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub duration_seconds: u32,
    pub functions: Vec<Curve>,
}

/// Invocations per second of one function.
#[derive(Debug, Clone, PartialEq)]
pub enum Curve {
    Constant(f64),
    /// Piecewise linear through (seconds, rate) points; flat before the first and after the last.
    Points(Vec<(f64, f64)>),
    /// `mean + amplitude * sin`, starting at the trough, with this period (a compressed day).
    Diurnal {
        low: f64,
        high: f64,
        period_seconds: f64,
    },
}

impl Curve {
    pub fn rate(&self, t: f64) -> f64 {
        match self {
            Curve::Constant(r) => *r,
            Curve::Points(points) => interpolate(points, t),
            Curve::Diurnal {
                low,
                high,
                period_seconds,
            } => {
                let phase = std::f64::consts::TAU * t / period_seconds;
                low + (high - low) * (1.0 - phase.cos()) / 2.0
            }
        }
    }
}

fn interpolate(points: &[(f64, f64)], t: f64) -> f64 {
    let Some(first) = points.first() else {
        return 0.0;
    };
    if t <= first.0 {
        return first.1;
    }
    for w in points.windows(2) {
        let ((t0, r0), (t1, r1)) = (w[0], w[1]);
        if t <= t1 {
            if t1 <= t0 {
                return r1;
            }
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0);
        }
    }
    points.last().map_or(0.0, |p| p.1)
}

/// Names of the built-in profiles.
pub const BUILTIN: [&str; 6] = [
    "steady",
    "ramp",
    "spike",
    "diurnal",
    "noisy-neighbour",
    "many-at-once",
];

/// Functions of the `many-at-once` profile.
const MANY: usize = 8;

/// A built-in profile scaled to `base` invocations per second.
///
/// - `steady`: `4 x base` for 30 minutes.
/// - `ramp`: from `base` to `10 x base` over 40 minutes (the low end doubles in about 4 minutes,
///   the rate the Auto target is built for), then 20 minutes flat.
/// - `spike`: `base` for 10 minutes, `10 x base` within 10 s, held 10 minutes, back to `base` for
///   10 minutes.
/// - `diurnal`: two compressed days of 2 hours each between `base` and `10 x base`.
/// - `noisy-neighbour`: function A steady at `4 x base`; function B on the same capacity provider
///   steady at `base`, then ten-fold within 10 s for 10 minutes, twice.
/// - `many-at-once`: eight functions created together on one capacity provider (a GitOps sync),
///   each steady at `base / 8` for 30 minutes: they stay at their minimum EEs, so the cost is
///   how well the first launches pack them.
pub fn builtin(name: &str, base: f64) -> Option<Profile> {
    let minutes = |m: f64| m * 60.0;
    let (duration, functions) = match name {
        "steady" => (minutes(30.0), vec![Curve::Constant(4.0 * base)]),
        "ramp" => (
            minutes(60.0),
            vec![Curve::Points(vec![
                (0.0, base),
                (minutes(40.0), 10.0 * base),
            ])],
        ),
        "spike" => (minutes(30.0), vec![spike(base, 10.0, 20.0)]),
        "diurnal" => (
            minutes(240.0),
            vec![Curve::Diurnal {
                low: base,
                high: 10.0 * base,
                period_seconds: minutes(120.0),
            }],
        ),
        "noisy-neighbour" => (
            minutes(60.0),
            vec![
                Curve::Constant(4.0 * base),
                Curve::Points(
                    [
                        spike_points(base, 10.0, 20.0),
                        spike_points(base, 40.0, 50.0),
                    ]
                    .concat(),
                ),
            ],
        ),
        "many-at-once" => (
            minutes(30.0),
            vec![Curve::Constant(base / MANY as f64); MANY],
        ),
        _ => return None,
    };
    // Durations are whole minutes.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let duration_seconds = duration as u32;
    Some(Profile {
        name: name.to_string(),
        duration_seconds,
        functions,
    })
}

fn spike_points(base: f64, from_minute: f64, to_minute: f64) -> Vec<(f64, f64)> {
    let (a, b) = (from_minute * 60.0, to_minute * 60.0);
    vec![
        (a, base),
        (a + 10.0, 10.0 * base),
        (b, 10.0 * base),
        (b + 10.0, base),
    ]
}

fn spike(base: f64, from_minute: f64, to_minute: f64) -> Curve {
    Curve::Points(spike_points(base, from_minute, to_minute))
}

/// A profile from a CSV file: `seconds,rate[,rate...]` per line (one rate column per function,
/// linear in between); `#` comments and a header line are skipped. Runs to the last time.
pub fn parse_csv(name: &str, text: &str) -> Result<Profile> {
    let mut columns: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut last_t: f64 = 0.0;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let Ok(t) = fields[0].parse::<f64>() else {
            if index == 0 || columns.is_empty() {
                continue; // the header
            }
            return Err(Error::Config(format!(
                "{name} line {}: {:?} is not a time in seconds",
                index + 1,
                fields[0]
            )));
        };
        let rates = fields[1..]
            .iter()
            .map(|f| f.parse::<f64>())
            .collect::<std::result::Result<Vec<f64>, _>>()
            .map_err(|e| Error::Config(format!("{name} line {}: {e}", index + 1)))?;
        if rates.is_empty() || rates.iter().any(|r| *r < 0.0 || !r.is_finite()) {
            return Err(Error::Config(format!(
                "{name} line {}: expected seconds,rate[,rate...] with rates >= 0",
                index + 1
            )));
        }
        if columns.is_empty() {
            columns = vec![Vec::new(); rates.len()];
        }
        if rates.len() != columns.len() || t < last_t {
            return Err(Error::Config(format!(
                "{name} line {}: every line needs {} rate(s), in increasing time",
                index + 1,
                columns.len()
            )));
        }
        last_t = t;
        for (col, rate) in columns.iter_mut().zip(rates) {
            col.push((t, rate));
        }
    }
    if columns.is_empty() || last_t < 1.0 {
        return Err(Error::Config(format!(
            "{name}: no load points (expected lines of seconds,rate)"
        )));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let duration_seconds = last_t.ceil() as u32;
    Ok(Profile {
        name: name.to_string(),
        duration_seconds,
        functions: columns.into_iter().map(Curve::Points).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_exist_and_have_the_documented_shape() {
        for name in BUILTIN {
            assert!(builtin(name, 100.0).is_some(), "{name}");
        }
        assert!(builtin("nope", 1.0).is_none());
        let spike = builtin("spike", 100.0).expect("builtin");
        let f = &spike.functions[0];
        assert_eq!(f.rate(599.0), 100.0);
        assert_eq!(f.rate(610.0), 1000.0);
        assert_eq!(f.rate(1300.0), 100.0);
        let diurnal = builtin("diurnal", 100.0).expect("builtin");
        let d = &diurnal.functions[0];
        assert!((d.rate(0.0) - 100.0).abs() < 1e-9);
        assert!((d.rate(3600.0) - 1000.0).abs() < 1e-9);
        assert_eq!(
            builtin("noisy-neighbour", 1.0).expect("b").functions.len(),
            2
        );
        assert_eq!(builtin("many-at-once", 1.0).expect("b").functions.len(), 8);
    }

    #[test]
    fn csv_profiles_interpolate() {
        let p =
            parse_csv("p", "seconds,a,b\n0,10,1\n100,20,1\n# done\n200,20,5\n").expect("parses");
        assert_eq!(p.duration_seconds, 200);
        assert_eq!(p.functions.len(), 2);
        assert_eq!(p.functions[0].rate(50.0), 15.0);
        assert_eq!(p.functions[1].rate(150.0), 3.0);
        assert_eq!(p.functions[1].rate(500.0), 5.0);
        assert!(parse_csv("p", "0,1\n10,1,2\n").is_err());
        assert!(parse_csv("p", "0,1\nx,2\n").is_err());
        assert!(parse_csv("p", "").is_err());
    }
}
