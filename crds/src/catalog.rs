//! The EC2 instance catalog (C, M and R families, generations 6-9, large and up) and the pure
//! choice of instance types for an execution environment's shape.
//!
//! The table is `crds/data/ec2-instance-types.tsv`, embedded at build time so the operator never
//! reads files at run time.

use std::cmp::Ordering;
use std::sync::OnceLock;

use thiserror::Error;

use crate::capacity_provider::InstanceRequirements;
use crate::common::Architecture;
use crate::rules::{Category, EeShape};

const TABLE: &str = include_str!("../data/ec2-instance-types.tsv");

/// CPU (millicores) and memory (MiB) that every EE pod adds for its sidecar, beside the function.
pub const SIDECAR_CPU_MILLIS: u32 = 50;
pub const SIDECAR_MEMORY_MIB: u32 = 64;

/// One instance type.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceType {
    pub name: String,
    pub family: String,
    pub category: Category,
    pub generation: u32,
    pub arch: Architecture,
    pub vcpu: u32,
    pub memory_mib: u64,
    /// us-east-1 Linux on-demand price, USD per hour.
    pub price_per_hour: f64,
}

impl InstanceType {
    /// The size part of the name (`large`, `2xlarge`, ...).
    pub fn size(&self) -> &str {
        self.name.split_once('.').map_or("", |(_, size)| size)
    }

    /// CPU (millicores) and memory (MiB) left for pods once the node's own needs are reserved.
    pub fn allocatable(&self) -> (u32, u64) {
        let overhead = NodeOverhead::of(self.vcpu, self.memory_mib);
        (
            (self.vcpu * 1000).saturating_sub(overhead.cpu_millis),
            self.memory_mib.saturating_sub(overhead.memory_mib),
        )
    }

    /// How many EEs of `shape` fit on one instance of this type.
    pub fn ees_per_instance(&self, shape: &EeShape) -> u32 {
        let (cpu, memory) = self.allocatable();
        let (ee_cpu, ee_memory) = ee_pod_resources(shape);
        let by_cpu = cpu / ee_cpu.max(1);
        let by_memory = memory / ee_memory.max(1);
        // by_memory <= memory_mib, which fits in u32 for every type in the catalog.
        by_cpu.min(u32::try_from(by_memory).unwrap_or(u32::MAX))
    }
}

/// CPU (millicores) and memory (MiB) one EE pod requests: the function plus its sidecar.
pub fn ee_pod_resources(shape: &EeShape) -> (u32, u64) {
    (
        shape.vcpus * 1000 + SIDECAR_CPU_MILLIS,
        u64::from(shape.memory_mib) + u64::from(SIDECAR_MEMORY_MIB),
    )
}

/// What a node keeps for itself: kube-reserved and system-reserved as EKS AMIs set them, the
/// kubelet's eviction threshold, and the hypervisor's share of memory (Karpenter's default 7.5%).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOverhead {
    pub cpu_millis: u32,
    pub memory_mib: u64,
}

impl NodeOverhead {
    /// Pods per node assumed for the memory reservation (EKS: 11 MiB per pod + 255 MiB).
    const MAX_PODS: u64 = 110;
    const EVICTION_MIB: u64 = 100;

    pub fn of(vcpu: u32, memory_mib: u64) -> Self {
        // EKS CPU reservation: 6% of the first core, 1% of the second, 0.5% of the next two,
        // 0.25% of every core above four.
        let mut cpu_millis = 0;
        for core in 1..=vcpu {
            cpu_millis += match core {
                1 => 60,
                2 => 10,
                3 | 4 => 5,
                _ => 0,
            };
        }
        cpu_millis += vcpu.saturating_sub(4) * 5 / 2;
        let vm_overhead = memory_mib * 75 / 1000;
        let kube_reserved = 255 + 11 * Self::MAX_PODS;
        Self {
            cpu_millis,
            memory_mib: vm_overhead + kube_reserved + Self::EVICTION_MIB,
        }
    }
}

/// Why no instance type can be chosen.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CatalogError {
    #[error(
        "no {arch} instance type of category {category} fits an EE of {vcpus} vCPU and {memory_mib} MiB{filter}"
    )]
    NothingFits {
        arch: &'static str,
        category: &'static str,
        vcpus: u32,
        memory_mib: u32,
        filter: String,
    },
    #[error("instance table line {line}: {reason}")]
    BadTable { line: usize, reason: String },
}

/// A candidate instance type for a shape, with the numbers it was ranked by.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    pub instance_type: &'a InstanceType,
    pub ees_per_instance: u32,
    /// On-demand price per hour divided by the EEs one instance holds.
    pub price_per_ee_hour: f64,
}

/// The instance catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: Vec<InstanceType>,
}

impl Catalog {
    /// The catalog built into the binary.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        // The table is part of the source and parsed by a unit test, so a parse failure here is
        // a build defect, not a run-time condition.
        #[allow(clippy::expect_used)]
        BUILTIN.get_or_init(|| Catalog::parse(TABLE).expect("embedded instance table parses"))
    }

    /// Parses the TSV table (comment lines start with `#`; a header line names the columns).
    pub fn parse(table: &str) -> Result<Catalog, CatalogError> {
        let mut types = Vec::new();
        for (index, line) in table.lines().enumerate() {
            let line_no = index + 1;
            if line.starts_with('#') || line.starts_with("instance_type") || line.trim().is_empty()
            {
                continue;
            }
            let bad = |reason: &str| CatalogError::BadTable {
                line: line_no,
                reason: reason.to_string(),
            };
            let cols: Vec<&str> = line.split('\t').collect();
            let [
                name,
                family,
                category,
                generation,
                arch,
                vcpu,
                memory,
                price,
            ] = cols[..]
            else {
                return Err(bad("expected 8 tab-separated columns"));
            };
            types.push(InstanceType {
                name: name.to_string(),
                family: family.to_string(),
                category: Category::from_letter(category)
                    .ok_or_else(|| bad("category is not c, m or r"))?,
                generation: generation
                    .parse()
                    .map_err(|_| bad("generation is not a number"))?,
                arch: Architecture::parse(arch)
                    .ok_or_else(|| bad("arch is not x86_64 or arm64"))?,
                vcpu: vcpu.parse().map_err(|_| bad("vcpu is not a number"))?,
                memory_mib: memory
                    .parse()
                    .map_err(|_| bad("memory_mib is not a number"))?,
                price_per_hour: price.parse().map_err(|_| bad("price is not a number"))?,
            });
        }
        Ok(Catalog { types })
    }

    pub fn types(&self) -> &[InstanceType] {
        &self.types
    }

    pub fn get(&self, name: &str) -> Option<&InstanceType> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The instance types a capacity provider may launch for EEs of `shape`, best first:
    /// the shape's category and the provider's architecture, allowed or not excluded (with `*`
    /// wildcards), large and up, holding at least one EE after the node's overhead; ranked by
    /// price per EE when packed, then by newer generation, then by smaller size (less waste when
    /// few EEs are needed), then by name for a stable order.
    pub fn select(
        &self,
        requirements: &InstanceRequirements,
        shape: &EeShape,
    ) -> Result<Vec<Candidate<'_>>, CatalogError> {
        let arch = requirements.architecture();
        let mut candidates: Vec<Candidate<'_>> = self
            .types
            .iter()
            .filter(|t| t.category == shape.category && t.arch == arch)
            .filter(|t| permitted(&t.name, requirements))
            .filter_map(|t| {
                let ees = t.ees_per_instance(shape);
                (ees > 0).then(|| Candidate {
                    instance_type: t,
                    ees_per_instance: ees,
                    price_per_ee_hour: t.price_per_hour / f64::from(ees),
                })
            })
            .collect();
        if candidates.is_empty() {
            let filter = if !requirements.allowed_instance_types.is_empty() {
                format!(
                    " among allowedInstanceTypes {:?}",
                    requirements.allowed_instance_types
                )
            } else if !requirements.excluded_instance_types.is_empty() {
                format!(
                    " once excludedInstanceTypes {:?} are left out",
                    requirements.excluded_instance_types
                )
            } else {
                String::new()
            };
            return Err(CatalogError::NothingFits {
                arch: arch.as_str(),
                category: shape.category.letter(),
                vcpus: shape.vcpus,
                memory_mib: shape.memory_mib,
                filter,
            });
        }
        candidates.sort_by(|a, b| {
            a.price_per_ee_hour
                .partial_cmp(&b.price_per_ee_hour)
                .unwrap_or(Ordering::Equal)
                .then(b.instance_type.generation.cmp(&a.instance_type.generation))
                .then(a.instance_type.vcpu.cmp(&b.instance_type.vcpu))
                .then(a.instance_type.name.cmp(&b.instance_type.name))
        });
        Ok(candidates)
    }
}

/// Whether the requirements' allowed or excluded lists let `name` through.
fn permitted(name: &str, requirements: &InstanceRequirements) -> bool {
    if !requirements.allowed_instance_types.is_empty() {
        return requirements
            .allowed_instance_types
            .iter()
            .any(|p| wildcard_match(p, name));
    }
    !requirements
        .excluded_instance_types
        .iter()
        .any(|p| wildcard_match(p, name))
}

/// Matches `name` against a pattern where `*` stands for any run of characters (as in EC2's
/// instance type filters, e.g. `c7g.*` or `*.large`).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == name;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(vcpus: u32, ratio: u32) -> EeShape {
        let category = match ratio {
            2 => Category::Compute,
            4 => Category::General,
            _ => Category::Memory,
        };
        EeShape {
            vcpus,
            memory_mib: vcpus * ratio * 1024,
            category,
            max_concurrency: 8,
        }
    }

    fn requirements(
        arch: Architecture,
        allowed: &[&str],
        excluded: &[&str],
    ) -> InstanceRequirements {
        InstanceRequirements {
            architectures: vec![arch],
            allowed_instance_types: allowed.iter().map(|s| s.to_string()).collect(),
            excluded_instance_types: excluded.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn builtin_table_parses_with_every_category_and_arch() {
        let catalog = Catalog::builtin();
        assert!(catalog.types().len() > 600);
        for category in [Category::Compute, Category::General, Category::Memory] {
            for arch in [Architecture::X86_64, Architecture::Arm64] {
                assert!(
                    catalog
                        .types()
                        .iter()
                        .any(|t| t.category == category && t.arch == arch)
                );
            }
        }
        let t = catalog
            .get("m7g.xlarge")
            .expect("m7g.xlarge is in the table");
        assert_eq!(
            (t.vcpu, t.memory_mib, t.arch, t.size()),
            (4, 16384, Architecture::Arm64, "xlarge")
        );
        assert!(
            catalog
                .types()
                .iter()
                .all(|t| t.size() != "medium" && !t.size().contains("metal"))
        );
    }

    #[test]
    fn bad_table_lines_are_named() {
        let err = Catalog::parse("c7g.large\tc7g\tx\t7\tarm64\t2\t4096\t0.07").unwrap_err();
        assert_eq!(
            err,
            CatalogError::BadTable {
                line: 1,
                reason: "category is not c, m or r".into()
            }
        );
    }

    #[test]
    fn overhead_leaves_room_for_one_small_ee_on_a_large_instance() {
        let large = Catalog::builtin().get("c7g.large").expect("in table");
        let (cpu, memory) = large.allocatable();
        assert_eq!(cpu, 2000 - 70);
        assert!(
            memory > 2048 + 64 && memory < 4096,
            "allocatable memory {memory}"
        );
        assert_eq!(large.ees_per_instance(&shape(1, 2)), 1);
        let big = Catalog::builtin().get("c7g.16xlarge").expect("in table");
        // 64 vCPUs and 128 GiB at 2 GiB per EE: memory decides, since the hypervisor's 7.5% and
        // kube-reserved come off first (CPU alone would allow 60).
        assert_eq!(big.ees_per_instance(&shape(1, 2)), 56);
    }

    #[test]
    fn selection_follows_category_and_architecture() {
        let catalog = Catalog::builtin();
        let picks = catalog
            .select(&requirements(Architecture::Arm64, &[], &[]), &shape(2, 4))
            .expect("fits");
        assert!(
            picks
                .iter()
                .all(|c| c.instance_type.category == Category::General)
        );
        assert!(
            picks
                .iter()
                .all(|c| c.instance_type.arch == Architecture::Arm64)
        );
        // Ranked by price per EE.
        assert!(
            picks
                .windows(2)
                .all(|w| w[0].price_per_ee_hour <= w[1].price_per_ee_hour)
        );
        let picks = catalog
            .select(&requirements(Architecture::X86_64, &[], &[]), &shape(1, 8))
            .expect("fits");
        assert!(picks.iter().all(|c| c.instance_type.name.starts_with('r')));
        assert!(
            picks
                .iter()
                .all(|c| c.instance_type.arch == Architecture::X86_64)
        );
    }

    #[test]
    fn allowed_types_with_wildcards_limit_the_choice() {
        let catalog = Catalog::builtin();
        let picks = catalog
            .select(
                &requirements(Architecture::Arm64, &["c7g.*", "c8g.2xlarge"], &[]),
                &shape(1, 2),
            )
            .expect("fits");
        assert!(!picks.is_empty());
        assert!(
            picks
                .iter()
                .all(|c| c.instance_type.family == "c7g" || c.instance_type.name == "c8g.2xlarge")
        );
        assert!(picks.iter().any(|c| c.instance_type.name == "c8g.2xlarge"));
    }

    #[test]
    fn excluded_types_are_left_out() {
        let catalog = Catalog::builtin();
        let all = catalog
            .select(&requirements(Architecture::X86_64, &[], &[]), &shape(1, 2))
            .expect("fits");
        let best = all[0].instance_type.family.clone();
        let pattern = format!("{best}.*");
        let rest = catalog
            .select(
                &requirements(Architecture::X86_64, &[], &[&pattern, "*.large"]),
                &shape(1, 2),
            )
            .expect("fits");
        assert!(
            rest.iter()
                .all(|c| c.instance_type.family != best && c.instance_type.size() != "large")
        );
        assert!(rest.len() < all.len());
    }

    #[test]
    fn a_shape_that_fits_nothing_is_a_clear_error() {
        let catalog = Catalog::builtin();
        let err = catalog
            .select(
                &requirements(Architecture::Arm64, &["c7g.large"], &[]),
                &shape(4, 2),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no arm64 instance type of category c fits an EE of 4 vCPU and 8192 MiB among allowedInstanceTypes [\"c7g.large\"]"
        );
        // Only x86 types allowed but the provider is arm64: nothing fits either.
        assert!(
            catalog
                .select(
                    &requirements(Architecture::Arm64, &["c7i.*"], &[]),
                    &shape(1, 2)
                )
                .is_err()
        );
    }

    #[test]
    fn wildcards_match_like_ec2_filters() {
        assert!(wildcard_match("c7g.*", "c7g.large"));
        assert!(wildcard_match("*.large", "m7i.large"));
        assert!(wildcard_match("c*g.*large", "c7g.2xlarge"));
        assert!(wildcard_match("*", "r8g.large"));
        assert!(wildcard_match("m7i.large", "m7i.large"));
        assert!(!wildcard_match("m7i.large", "m7i.xlarge"));
        assert!(!wildcard_match("c7g.*", "c7gd.large"));
        assert!(!wildcard_match("*.large", "m7i.xlarge"));
        assert!(!wildcard_match("c*g", "c7gd"));
    }
}
