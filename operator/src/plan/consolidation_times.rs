//! When consolidation may act. The times are part of the planner's input (the snapshot), so they
//! live apart from the consolidation logic: the snapshot, the operator's settings and the
//! simulator name them without depending on how consolidation works.

/// An instance younger than this is not consolidated: it was launched for a scale-up whose EEs
/// (and the room left for the next one) are still coming.
pub const MIN_INSTANCE_AGE_SECONDS: i64 = 600;

/// A version that started an EE within this is still scaling (or moving): its EEs stay put. Longer
/// than the autoscaler's reaction time (about 80 s) and its stabilization window (30 s).
pub const SETTLE_SECONDS: i64 = 120;

/// A consolidation whose EEs are still there after this is called off (a replacement that never
/// becomes Ready must not keep the instance, and every later consolidation, waiting).
pub const MOVE_TIMEOUT_SECONDS: i64 = 600;

/// When consolidation may act, in seconds. The operator takes them from its settings (so an
/// end-to-end test need not wait ten minutes); the defaults are the constants above, which the
/// simulator and the unit tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsolidationTimes {
    /// See [`MIN_INSTANCE_AGE_SECONDS`].
    pub min_instance_age_seconds: i64,
    /// See [`SETTLE_SECONDS`].
    pub settle_seconds: i64,
    /// See [`MOVE_TIMEOUT_SECONDS`].
    pub move_timeout_seconds: i64,
}

impl Default for ConsolidationTimes {
    fn default() -> Self {
        Self {
            min_instance_age_seconds: MIN_INSTANCE_AGE_SECONDS,
            settle_seconds: SETTLE_SECONDS,
            move_timeout_seconds: MOVE_TIMEOUT_SECONDS,
        }
    }
}
