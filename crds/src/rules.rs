//! The Lambda Managed Instances rules as pure functions: EE shape from memory and ratio, instance
//! category, default concurrency by runtime, and the effective scaling config of a version.

use thiserror::Error;

use crate::common::ScalingConfig;

/// Default `maxVCpuCount` of a capacity provider.
pub const DEFAULT_MAX_VCPU_COUNT: i32 = 400;
/// Default function memory (MiB).
pub const DEFAULT_MEMORY_MIB: i32 = 2048;
/// Default memory per vCPU (GiB).
pub const DEFAULT_MEMORY_GIB_PER_VCPU: i32 = 2;
/// Default function timeout (s), as in Lambda.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 3;
/// Default minimum of EEs: three, so a version survives the loss of a zone.
pub const DEFAULT_MIN_EXECUTION_ENVIRONMENTS: i32 = 3;
/// Limits of the contract (DESIGN.md section 2).
pub const MIN_MEMORY_MIB: i32 = 2048;
pub const MAX_MEMORY_MIB: i32 = 32768;
pub const MAX_CONCURRENCY_PER_EE: u32 = 1600;
pub const MAX_CONCURRENCY_PER_VCPU: u32 = 64;
/// Init timeout floor (s): an EE has max(130 s, function timeout) to ask for work.
pub const INIT_TIMEOUT_FLOOR_SECONDS: u32 = 130;
/// Synchronous and asynchronous payload limits (bytes).
pub const SYNC_PAYLOAD_LIMIT_BYTES: usize = 6 * 1024 * 1024;
pub const ASYNC_PAYLOAD_LIMIT_BYTES: usize = 1024 * 1024;
/// The qualifier an unqualified invoke runs.
pub const LATEST_PUBLISHED: &str = "$LATEST.PUBLISHED";

/// A configuration that breaks a rule. Each message says what to change.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RuleError {
    #[error("memorySize {0} MiB is outside 2048-32768")]
    MemoryOutOfRange(i32),
    #[error("executionEnvironmentMemoryGiBPerVCpu {0} is not one of 2, 4, 8")]
    InvalidRatio(i32),
    #[error(
        "memorySize {memory} MiB is not a whole number of vCPUs at {ratio} GiB per vCPU (use a multiple of {step} MiB)"
    )]
    FractionalVcpu { memory: i32, ratio: i32, step: i32 },
    #[error(
        "perExecutionEnvironmentMaxConcurrency {requested} is outside 1-{limit} (1600 at most, 64 per vCPU)"
    )]
    ConcurrencyOutOfRange { requested: i32, limit: u32 },
    #[error("qualifier {0:?} is neither a version number nor $LATEST.PUBLISHED")]
    InvalidQualifier(String),
    #[error("the function has no published version yet")]
    NothingPublished,
    /// Lambda's `lambda:PassCapacityProvider`, denied: see [`crate::namespace_selector`].
    #[error(
        "{}",
        crate::namespace_selector::not_allowed_message(capacity_provider, namespace)
    )]
    NamespaceNotAllowed {
        capacity_provider: String,
        namespace: String,
    },
}

impl RuleError {
    /// The reason code a version's state gives for this error.
    pub fn reason_code(&self) -> &'static str {
        match self {
            RuleError::NamespaceNotAllowed { .. } => NAMESPACE_NOT_ALLOWED,
            _ => "InvalidConfiguration",
        }
    }
}

/// Reason (condition and version state) of a function whose namespace its capacity provider does
/// not allow.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";

/// Instance category implied by the memory-per-vCPU ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// 2 GiB per vCPU: compute optimized (c).
    Compute,
    /// 4 GiB per vCPU: general purpose (m).
    General,
    /// 8 GiB per vCPU: memory optimized (r).
    Memory,
}

impl Category {
    /// The EC2 family letter (`c`, `m`, `r`).
    pub fn letter(self) -> &'static str {
        match self {
            Category::Compute => "c",
            Category::General => "m",
            Category::Memory => "r",
        }
    }

    pub fn from_letter(s: &str) -> Option<Self> {
        match s {
            "c" => Some(Category::Compute),
            "m" => Some(Category::General),
            "r" => Some(Category::Memory),
            _ => None,
        }
    }

    /// The category for a ratio of 2, 4 or 8 GiB per vCPU.
    pub fn from_ratio(gib_per_vcpu: i32) -> Result<Self, RuleError> {
        match gib_per_vcpu {
            2 => Ok(Category::Compute),
            4 => Ok(Category::General),
            8 => Ok(Category::Memory),
            other => Err(RuleError::InvalidRatio(other)),
        }
    }

    /// GiB of memory per vCPU of this category.
    pub fn gib_per_vcpu(self) -> u32 {
        match self {
            Category::Compute => 2,
            Category::General => 4,
            Category::Memory => 8,
        }
    }
}

/// Whole vCPUs of one EE for `memory_mib` at `gib_per_vcpu`.
pub fn vcpus_for(memory_mib: i32, gib_per_vcpu: i32) -> Result<u32, RuleError> {
    Category::from_ratio(gib_per_vcpu)?;
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&memory_mib) {
        return Err(RuleError::MemoryOutOfRange(memory_mib));
    }
    let step = gib_per_vcpu * 1024;
    if memory_mib % step != 0 {
        return Err(RuleError::FractionalVcpu {
            memory: memory_mib,
            ratio: gib_per_vcpu,
            step,
        });
    }
    // Both positive and checked above, so the quotient fits.
    Ok((memory_mib / step).unsigned_abs())
}

/// The runtime families whose clients differ in how much concurrency one vCPU sustains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFamily {
    Java,
    DotNet,
    Python,
    NodeJs,
    /// OS-only runtimes (`provided.*`), Rust, Go and anything unknown.
    Custom,
}

impl RuntimeFamily {
    /// The family of a Lambda runtime identifier (`python3.13`, `nodejs22.x`, `java21`, ...).
    pub fn of(runtime: Option<&str>) -> Self {
        match runtime {
            Some(r) if r.starts_with("java") => RuntimeFamily::Java,
            Some(r) if r.starts_with("dotnet") => RuntimeFamily::DotNet,
            Some(r) if r.starts_with("python") => RuntimeFamily::Python,
            Some(r) if r.starts_with("nodejs") => RuntimeFamily::NodeJs,
            _ => RuntimeFamily::Custom,
        }
    }

    /// Lambda's default concurrency per vCPU for this family.
    pub fn default_concurrency_per_vcpu(self) -> u32 {
        match self {
            RuntimeFamily::Java | RuntimeFamily::DotNet => 32,
            RuntimeFamily::Python => 16,
            RuntimeFamily::NodeJs => 64,
            RuntimeFamily::Custom => 8,
        }
    }
}

/// The shape of one execution environment, derived from a function's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EeShape {
    pub vcpus: u32,
    pub memory_mib: u32,
    pub category: Category,
    /// Invocations the EE serves at once (`AWS_LAMBDA_MAX_CONCURRENCY`).
    pub max_concurrency: u32,
}

/// Maximum concurrency of one EE: the configured value, or the runtime's default per vCPU,
/// checked against 1-1600 and 64 per vCPU.
pub fn max_concurrency(
    configured: Option<i32>,
    runtime: Option<&str>,
    vcpus: u32,
) -> Result<u32, RuleError> {
    let limit = (MAX_CONCURRENCY_PER_VCPU * vcpus).min(MAX_CONCURRENCY_PER_EE);
    match configured {
        Some(c) if c >= 1 && c.unsigned_abs() <= limit => Ok(c.unsigned_abs()),
        Some(c) => Err(RuleError::ConcurrencyOutOfRange {
            requested: c,
            limit,
        }),
        None => Ok(
            (RuntimeFamily::of(runtime).default_concurrency_per_vcpu() * vcpus)
                .min(MAX_CONCURRENCY_PER_EE),
        ),
    }
}

/// The EE shape of a function configuration, with every rule checked.
pub fn ee_shape(config: &crate::FunctionConfiguration) -> Result<EeShape, RuleError> {
    let ratio = config
        .capacity_provider_config
        .execution_environment_memory_gib_per_vcpu;
    let vcpus = vcpus_for(config.memory_size, ratio)?;
    let category = Category::from_ratio(ratio)?;
    let max_concurrency = max_concurrency(
        config
            .capacity_provider_config
            .per_execution_environment_max_concurrency,
        config.runtime.as_deref(),
        vcpus,
    )?;
    Ok(EeShape {
        vcpus,
        memory_mib: config.memory_size.unsigned_abs(),
        category,
        max_concurrency,
    })
}

/// Lambda's limit of function versions on one capacity provider. A publication past it waits
/// (reason [`VERSION_LIMIT_EXCEEDED`]) until versions are deleted; it is never dropped.
pub const MAX_VERSIONS_PER_CAPACITY_PROVIDER: usize = 100;
/// The reason a publication waits for room under [`MAX_VERSIONS_PER_CAPACITY_PROVIDER`].
pub const VERSION_LIMIT_EXCEEDED: &str = "VersionLimitExceeded";

/// Why a new version of a function on `capacity_provider` cannot be published now, when the
/// provider holds `versions` already.
pub fn version_limit(capacity_provider: &str, versions: usize) -> Option<String> {
    (versions >= MAX_VERSIONS_PER_CAPACITY_PROVIDER).then(|| {
        format!(
            "capacity provider {capacity_provider} holds Lambda's limit of {MAX_VERSIONS_PER_CAPACITY_PROVIDER} function versions: the new configuration is published once versions on it are deleted"
        )
    })
}

/// The version that unqualified invocations and `$LATEST.PUBLISHED` run, of `versions` given as
/// (number, Active): the newest Active one, so that a version still deploying takes no traffic
/// before its EEs are up; with none Active, the newest (whose state the caller then hears). One
/// rule for the router's resolution and the Function's `status.currentVersion`.
pub fn current_version(versions: impl IntoIterator<Item = (u32, bool)>) -> Option<u32> {
    let mut newest = None;
    let mut newest_active = None;
    for (number, active) in versions {
        newest = newest.max(Some(number));
        if active {
            newest_active = newest_active.max(Some(number));
        }
    }
    newest_active.or(newest)
}

/// Init timeout of an EE: max(130 s, function timeout).
pub fn init_timeout_seconds(function_timeout_seconds: i32) -> u32 {
    function_timeout_seconds
        .unsigned_abs()
        .max(INIT_TIMEOUT_FLOOR_SECONDS)
}

/// Seconds in a duration written as hours, minutes and seconds, each optional but in that order
/// (`336h`, `90m`, `1h30m`, `45s`): the form `instanceLifecycle.maxInstanceLifetime` takes, a
/// subset of Go's (and CEL's) durations. `None` for anything else.
pub fn duration_seconds(text: &str) -> Option<i64> {
    let mut rest = text;
    let mut total: i64 = 0;
    let mut any = false;
    for (unit, seconds) in [('h', 3600), ('m', 60), ('s', 1)] {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with(unit) {
            let value: i64 = rest[..digits].parse().ok()?;
            total = total.checked_add(value.checked_mul(seconds)?)?;
            rest = &rest[digits + 1..];
            any = true;
        }
    }
    (any && rest.is_empty()).then_some(total)
}

/// Effective scaling bounds of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingBounds {
    pub min: u32,
    /// `None`: no upper bound but the capacity provider's vCPU ceiling.
    pub max: Option<u32>,
}

impl ScalingBounds {
    /// 0/0 deactivates the version.
    pub fn is_deactivated(&self) -> bool {
        self.min == 0 && self.max == Some(0)
    }

    /// Clamps a wish (e.g. the autoscaler's) into the bounds.
    pub fn clamp(&self, wanted: u32) -> u32 {
        let at_least_min = wanted.max(self.min);
        self.max.map_or(at_least_min, |max| at_least_min.min(max))
    }
}

/// The bounds a scaling config gives (defaults: min 3, no max).
pub fn scaling_bounds(config: Option<&ScalingConfig>) -> ScalingBounds {
    let min = config.and_then(|c| c.min_execution_environments).map_or(
        DEFAULT_MIN_EXECUTION_ENVIRONMENTS.unsigned_abs(),
        i32::unsigned_abs,
    );
    let max = config
        .and_then(|c| c.max_execution_environments)
        .map(i32::unsigned_abs);
    ScalingBounds { min, max }
}

/// The scaling config a newly published version starts with: the `$LATEST.PUBLISHED` config of
/// its function carries over; a numbered version's own config does not.
pub fn scaling_for_new_version(function_scaling: Option<&ScalingConfig>) -> Option<ScalingConfig> {
    function_scaling.cloned()
}

/// The scaling config a version runs with. The latest published version follows the function's
/// `$LATEST.PUBLISHED` config when the function sets one, so that changing it on the Function
/// applies to what unqualified invokes run; any other version keeps its own.
pub fn effective_scaling_config<'a>(
    version_scaling: Option<&'a ScalingConfig>,
    function_scaling: Option<&'a ScalingConfig>,
    is_latest_published: bool,
) -> ScalingBounds {
    let chosen = if is_latest_published {
        function_scaling.or(version_scaling)
    } else {
        version_scaling
    };
    scaling_bounds(chosen)
}

/// What an invoke qualifier names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    LatestPublished,
    Version(i32),
}

impl Qualifier {
    /// Parses a qualifier; none means `$LATEST.PUBLISHED`.
    pub fn parse(q: Option<&str>) -> Result<Self, RuleError> {
        match q {
            None | Some("") | Some(LATEST_PUBLISHED) => Ok(Qualifier::LatestPublished),
            Some(v) => match v.parse::<i32>() {
                Ok(n) if n >= 1 && !v.starts_with('+') && !v.starts_with('0') => {
                    Ok(Qualifier::Version(n))
                }
                _ => Err(RuleError::InvalidQualifier(v.to_string())),
            },
        }
    }

    /// The version number this qualifier resolves to, given the latest published one.
    pub fn resolve(self, latest_published: Option<i32>) -> Result<i32, RuleError> {
        match self {
            Qualifier::Version(n) => Ok(n),
            Qualifier::LatestPublished => latest_published.ok_or(RuleError::NothingPublished),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_hours_minutes_and_seconds_in_that_order() {
        assert_eq!(duration_seconds("336h"), Some(336 * 3600));
        assert_eq!(duration_seconds("90m"), Some(5400));
        assert_eq!(duration_seconds("1h30m15s"), Some(5415));
        assert_eq!(duration_seconds("45s"), Some(45));
        for bad in [
            "",
            "h",
            "30m1h",
            "1d",
            "1.5h",
            "-1h",
            "1h ",
            "99999999999999999999h",
        ] {
            assert_eq!(duration_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn vcpus_follow_memory_and_ratio() {
        assert_eq!(vcpus_for(2048, 2), Ok(1));
        assert_eq!(vcpus_for(8192, 4), Ok(2));
        assert_eq!(vcpus_for(32768, 8), Ok(4));
        assert_eq!(vcpus_for(32768, 2), Ok(16));
    }

    #[test]
    fn fractional_vcpus_and_bad_ratios_are_refused() {
        assert_eq!(
            vcpus_for(3072, 2),
            Err(RuleError::FractionalVcpu {
                memory: 3072,
                ratio: 2,
                step: 2048
            })
        );
        assert!(
            vcpus_for(2048, 8)
                .unwrap_err()
                .to_string()
                .contains("multiple of 8192 MiB")
        );
        assert_eq!(vcpus_for(4096, 3), Err(RuleError::InvalidRatio(3)));
        assert_eq!(vcpus_for(1024, 2), Err(RuleError::MemoryOutOfRange(1024)));
        assert_eq!(vcpus_for(34816, 2), Err(RuleError::MemoryOutOfRange(34816)));
    }

    #[test]
    fn categories_follow_the_ratio() {
        assert_eq!(Category::from_ratio(2), Ok(Category::Compute));
        assert_eq!(Category::from_ratio(4), Ok(Category::General));
        assert_eq!(Category::from_ratio(8), Ok(Category::Memory));
        assert_eq!(Category::from_ratio(16), Err(RuleError::InvalidRatio(16)));
        assert_eq!(Category::Memory.letter(), "r");
    }

    #[test]
    fn default_concurrency_depends_on_runtime_and_vcpus() {
        assert_eq!(max_concurrency(None, Some("java21"), 2), Ok(64));
        assert_eq!(max_concurrency(None, Some("dotnet8"), 1), Ok(32));
        assert_eq!(max_concurrency(None, Some("python3.13"), 1), Ok(16));
        assert_eq!(max_concurrency(None, Some("nodejs22.x"), 4), Ok(256));
        assert_eq!(max_concurrency(None, Some("provided.al2023"), 1), Ok(8));
        assert_eq!(max_concurrency(None, None, 2), Ok(16));
        // 64 per vCPU x 32 vCPUs would be 2048: capped at 1600.
        assert_eq!(max_concurrency(None, Some("nodejs22.x"), 32), Ok(1600));
    }

    #[test]
    fn configured_concurrency_is_bounded_per_vcpu() {
        assert_eq!(max_concurrency(Some(64), None, 1), Ok(64));
        assert_eq!(
            max_concurrency(Some(65), None, 1),
            Err(RuleError::ConcurrencyOutOfRange {
                requested: 65,
                limit: 64
            })
        );
        assert!(max_concurrency(Some(0), None, 1).is_err());
        assert!(max_concurrency(Some(1601), None, 32).is_err());
        assert_eq!(max_concurrency(Some(1600), None, 32), Ok(1600));
    }

    #[test]
    fn init_timeout_is_at_least_130_seconds() {
        assert_eq!(init_timeout_seconds(3), 130);
        assert_eq!(init_timeout_seconds(900), 900);
    }

    fn scaling(min: Option<i32>, max: Option<i32>) -> ScalingConfig {
        ScalingConfig {
            min_execution_environments: min,
            max_execution_environments: max,
        }
    }

    #[test]
    fn scaling_defaults_to_three_and_unbounded() {
        let b = scaling_bounds(None);
        assert_eq!(b, ScalingBounds { min: 3, max: None });
        assert_eq!(b.clamp(1), 3);
        assert_eq!(b.clamp(1000), 1000);
        let b = scaling_bounds(Some(&scaling(Some(2), Some(5))));
        assert_eq!((b.clamp(0), b.clamp(4), b.clamp(9)), (2, 4, 5));
        assert!(scaling_bounds(Some(&scaling(Some(0), Some(0)))).is_deactivated());
        assert!(!scaling_bounds(Some(&scaling(Some(1), Some(0)))).is_deactivated());
    }

    #[test]
    fn latest_published_scaling_carries_over_numbered_does_not() {
        let function = scaling(Some(5), Some(10));
        let own = scaling(Some(1), Some(2));
        // A new version starts with the function's ($LATEST.PUBLISHED) config.
        assert_eq!(
            scaling_for_new_version(Some(&function)),
            Some(function.clone())
        );
        assert_eq!(scaling_for_new_version(None), None);
        // The latest version follows the function's config.
        assert_eq!(
            effective_scaling_config(Some(&own), Some(&function), true).min,
            5
        );
        // An older numbered version keeps its own, and never takes the function's.
        assert_eq!(
            effective_scaling_config(Some(&own), Some(&function), false).min,
            1
        );
        assert_eq!(
            effective_scaling_config(None, Some(&function), false).min,
            3
        );
    }

    #[test]
    fn qualifiers_parse_and_resolve() {
        assert_eq!(Qualifier::parse(None), Ok(Qualifier::LatestPublished));
        assert_eq!(
            Qualifier::parse(Some("$LATEST.PUBLISHED")),
            Ok(Qualifier::LatestPublished)
        );
        assert_eq!(Qualifier::parse(Some("7")), Ok(Qualifier::Version(7)));
        for bad in ["0", "-1", "+3", "07", "$LATEST", "prod"] {
            assert!(
                Qualifier::parse(Some(bad)).is_err(),
                "{bad} should be refused"
            );
        }
        assert_eq!(Qualifier::LatestPublished.resolve(Some(4)), Ok(4));
        assert_eq!(
            Qualifier::LatestPublished.resolve(None),
            Err(RuleError::NothingPublished)
        );
        assert_eq!(Qualifier::Version(2).resolve(Some(4)), Ok(2));
    }

    #[test]
    fn the_current_version_is_the_newest_active_else_the_newest() {
        assert_eq!(current_version([(1, true), (2, true), (3, false)]), Some(2));
        assert_eq!(current_version([(3, false), (1, true)]), Some(1));
        assert_eq!(current_version([(1, false), (2, false)]), Some(2));
        assert_eq!(current_version([]), None);
    }

    #[test]
    fn a_publication_waits_at_the_version_limit() {
        assert_eq!(version_limit("cp", 99), None);
        let message = version_limit("cp", 100).unwrap_or_default();
        assert!(
            message.contains("capacity provider cp holds Lambda's limit of 100"),
            "{message}"
        );
    }
}
