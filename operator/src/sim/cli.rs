//! The command line of `lmi-sim`: flags to a scenario (pure), and the run that writes its files.

use std::path::{Path, PathBuf};

use super::engine;
use super::profile::{self, Profile};
use super::report;
use super::scenario::{
    Params, Scenario, SimFunction, default_function, default_provider, function_from_yaml,
    provider_from_yaml,
};
use super::svg;
use crate::error::{Error, Result};

pub const HELP: &str = "lmi-sim: simulate the LMI autoscaler on a capacity provider, in virtual time

usage: lmi-sim [flags]

  --profile NAME|FILE.csv   steady, ramp, spike, diurnal, noisy-neighbour, many-at-once, all [all]; or a CSV of
                            seconds,rate[,rate...] lines (one rate column per function)
  --function FILE.yaml      a Function manifest (repeat for several functions) [python, 1 vCPU, min 3]
  --capacity-provider FILE  a CapacityProvider manifest (Karpenter mode) [arm64 c7g/c8g, 3 zones, 400 vCPU]
  --rate RPS                base rate of the built-in profiles, invocations/s [100]
  --cpu-ms MS               CPU time of one invocation [50]
  --duration-ms MS          wall-clock duration of one invocation [100]
  --startup-s S             EE start-up delay [10]
  --launch-s S              instance launch delay [60]
  --interval-s S            sampling and decision interval [10]
  --cpu-threshold PCT       the sidecar refuses work above this CPU [90]
  --cooldown-s S            how long an empty instance is kept [300]
  --max-vcpu N              override the capacity provider's maxVCpuCount
  --lifetime-s S            override the capacity provider's maxInstanceLifetime [336h]
  --stabilization-s S       scale-down stabilization window [30]
  --step-down FRACTION      most of the EEs one scale-down removes [0.25]
  --lead-s S                how far ahead scale-up forecasts the load; 0: purely reactive
                            [interval + launch + start-up]
  --seed N                  random seed [1]
  --name NAME               output file stem [the profile's name]
  --out DIR                 where NAME.csv and NAME.svg go [lmi-sim-out]
  --no-csv                  write only the plot and the summary
";

/// Parsed flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub profile: String,
    pub functions: Vec<PathBuf>,
    pub capacity_provider: Option<PathBuf>,
    pub rate: f64,
    pub cpu_ms: f64,
    pub duration_ms: f64,
    pub params: Params,
    pub max_vcpu: Option<u32>,
    /// Overrides the provider's maximum instance lifetime (seconds).
    pub lifetime_seconds: Option<i64>,
    pub name: Option<String>,
    pub out: PathBuf,
    pub csv: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            profile: "all".to_string(),
            functions: Vec::new(),
            capacity_provider: None,
            rate: 100.0,
            cpu_ms: 50.0,
            duration_ms: 100.0,
            params: Params::default(),
            max_vcpu: None,
            lifetime_seconds: None,
            name: None,
            out: PathBuf::from("lmi-sim-out"),
            csv: true,
        }
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::Config(format!("{flag}: {value:?} is not a valid number\n\n{HELP}")))
}

/// Parses the arguments (without the program name). `--help` comes back as `Error::Config(HELP)`.
pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        match flag.as_str() {
            "-h" | "--help" => return Err(Error::Config(HELP.to_string())),
            "--no-csv" => {
                o.csv = false;
                continue;
            }
            _ => {}
        }
        let value = iter
            .next()
            .ok_or_else(|| Error::Config(format!("{flag} needs a value\n\n{HELP}")))?;
        match flag.as_str() {
            "--profile" => o.profile = value.clone(),
            "--function" => o.functions.push(PathBuf::from(value)),
            "--capacity-provider" => o.capacity_provider = Some(PathBuf::from(value)),
            "--rate" => o.rate = number(flag, value)?,
            "--cpu-ms" => o.cpu_ms = number(flag, value)?,
            "--duration-ms" => o.duration_ms = number(flag, value)?,
            "--startup-s" => o.params.ee_startup_seconds = number(flag, value)?,
            "--launch-s" => o.params.instance_launch_seconds = number(flag, value)?,
            "--interval-s" => o.params.sample_interval_seconds = number(flag, value)?,
            "--cpu-threshold" => o.params.cpu_refusal_percent = number(flag, value)?,
            "--cooldown-s" => o.params.empty_claim_cooldown_seconds = number(flag, value)?,
            "--max-vcpu" => o.max_vcpu = Some(number(flag, value)?),
            "--lifetime-s" => o.lifetime_seconds = Some(number(flag, value)?),
            "--seed" => o.params.seed = number(flag, value)?,
            "--stabilization-s" => o.params.policy.stabilization_seconds = number(flag, value)?,
            "--step-down" => o.params.policy.max_step_down = number(flag, value)?,
            "--lead-s" => o.params.lead_seconds = Some(number(flag, value)?),
            "--name" => o.name = Some(value.clone()),
            "--out" => o.out = PathBuf::from(value),
            other => {
                return Err(Error::Config(format!("unknown flag {other}\n\n{HELP}")));
            }
        }
    }
    if o.rate <= 0.0 || o.cpu_ms <= 0.0 || o.duration_ms <= 0.0 {
        return Err(Error::Config(
            "--rate, --cpu-ms and --duration-ms must be above 0".to_string(),
        ));
    }
    Ok(o)
}

/// The functions a profile needs: the given ones (or the default), the last repeated under a
/// new name when the profile has more load curves than functions were given.
fn functions_for(given: &[SimFunction], curves: usize) -> Vec<SimFunction> {
    let given = if given.is_empty() {
        vec![default_function()]
    } else {
        given.to_vec()
    };
    let mut out = given.clone();
    let mut k = 2;
    while out.len() < curves {
        let mut extra = given[given.len() - 1].clone();
        extra.name = format!("{}-{k}", extra.name);
        out.push(extra);
        k += 1;
    }
    out
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

/// Runs what the options ask for, writes the files, and returns the summary table (Markdown).
pub fn execute(o: &Options) -> Result<String> {
    let (cpu_seconds, duration_seconds) = (o.cpu_ms / 1000.0, o.duration_ms / 1000.0);
    let functions = o
        .functions
        .iter()
        .map(|p| function_from_yaml(&read(p)?, cpu_seconds, duration_seconds))
        .collect::<Result<Vec<_>>>()?;
    let functions: Vec<SimFunction> = if functions.is_empty() {
        vec![SimFunction {
            cpu_seconds,
            duration_seconds,
            ..default_function()
        }]
    } else {
        functions
    };
    let mut provider = match &o.capacity_provider {
        Some(p) => provider_from_yaml(&read(p)?)?,
        None => default_provider(),
    };
    if let Some(lifetime) = o.lifetime_seconds {
        provider.max_lifetime_seconds = Some(lifetime);
    }
    if let Some(max) = o.max_vcpu {
        provider.max_vcpu = max;
        provider.scaling.max_v_cpu_count = i32::try_from(max).unwrap_or(i32::MAX);
    }
    let profiles: Vec<Profile> = if o.profile == "all" {
        profile::BUILTIN
            .iter()
            .filter_map(|n| profile::builtin(n, o.rate))
            .collect()
    } else if let Some(p) = profile::builtin(&o.profile, o.rate) {
        vec![p]
    } else if Path::new(&o.profile).is_file() {
        let stem = Path::new(&o.profile)
            .file_stem()
            .map_or("profile".to_string(), |s| s.to_string_lossy().into_owned());
        vec![profile::parse_csv(&stem, &read(Path::new(&o.profile))?)?]
    } else {
        return Err(Error::Config(format!(
            "--profile {:?} is neither a built-in profile ({}, all) nor a file\n\n{HELP}",
            o.profile,
            profile::BUILTIN.join(", ")
        )));
    };
    std::fs::create_dir_all(&o.out)?;
    let mut table = report::table_header();
    for p in profiles {
        let scenario = Scenario {
            provider: provider.clone(),
            functions: functions_for(&functions, p.functions.len()),
            profile: p,
            params: o.params.clone(),
        };
        let run = engine::run(&scenario);
        let stem = match &o.name {
            Some(name) if o.profile != "all" => name.clone(),
            Some(name) => format!("{name}-{}", scenario.profile.name),
            None => scenario.profile.name.clone(),
        };
        if o.csv {
            std::fs::write(
                o.out.join(format!("{stem}.csv")),
                report::csv(&scenario, &run),
            )?;
        }
        std::fs::write(
            o.out.join(format!("{stem}.svg")),
            svg::plot(&scenario, &run),
        )?;
        table.push_str(&report::table_rows(&report::summarize(&scenario, &run)));
    }
    std::fs::write(o.out.join("summary.md"), &table)?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_parse() {
        let o = parse(&args(
            "--profile ramp --launch-s 30 --seed 9 --function f.yaml --no-csv --cpu-ms 20",
        ))
        .expect("parses");
        assert_eq!(o.profile, "ramp");
        assert_eq!(o.params.instance_launch_seconds, 30);
        assert_eq!(o.params.seed, 9);
        assert_eq!(o.functions, vec![PathBuf::from("f.yaml")]);
        assert!(!o.csv);
        assert_eq!(o.cpu_ms, 20.0);
        assert_eq!(parse(&[]).expect("defaults"), Options::default());
    }

    #[test]
    fn bad_flags_are_named() {
        let e = parse(&args("--launch-s soon")).unwrap_err().to_string();
        assert!(e.contains("--launch-s"), "{e}");
        assert!(
            parse(&args("--bogus 1"))
                .unwrap_err()
                .to_string()
                .contains("--bogus")
        );
        assert!(
            parse(&args("--seed"))
                .unwrap_err()
                .to_string()
                .contains("needs a value")
        );
        assert!(parse(&args("--rate 0")).is_err());
    }

    #[test]
    fn a_second_function_is_derived_when_the_profile_needs_one() {
        let f = functions_for(&[], 2);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].name, "hello-2");
    }
}
