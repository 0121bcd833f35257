//! How a pool scales: behaviors and rules, prices, spot, targets, predictive
//! scaling, schedules, emergencies, the circuit breaker and flap detection.

use super::*;

/// A named behavior preset or an explicit behavior.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BehaviorConfig {
    /// `"aggressive"`, `"balanced"` or `"conservative"`.
    Preset(String),
    /// A table with `scale_up` and `scale_down` rules.
    Explicit(ExplicitBehaviorConfig),
}

impl Default for BehaviorConfig {
    fn default() -> Self {
        Self::Preset("balanced".to_owned())
    }
}

impl<'de> Deserialize<'de> for BehaviorConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BehaviorVisitor;
        impl<'de> Visitor<'de> for BehaviorVisitor {
            type Value = BehaviorConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a preset name (\"aggressive\", \"balanced\", \"conservative\") or a table with scale_up/scale_down")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BehaviorConfig::Preset(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ExplicitBehaviorConfig::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(BehaviorConfig::Explicit)
            }
        }
        deserializer.deserialize_any(BehaviorVisitor)
    }
}

/// An explicit behavior, optionally starting from a preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplicitBehaviorConfig {
    /// The preset whose rules apply where this table is silent (default `balanced`).
    #[serde(default)]
    pub preset: Option<String>,
    /// Rules for adding nodes.
    #[serde(default)]
    pub scale_up: Option<RulesConfig>,
    /// Rules for removing nodes.
    #[serde(default)]
    pub scale_down: Option<RulesConfig>,
}

/// Scaling rules for one direction (HPA's `HPAScalingRules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Look-back window over which recommendations are smoothed, at most 1h.
    #[serde(default)]
    pub stabilization_window: Option<String>,
    /// `max` (the policy allowing the biggest change), `min`, or `disabled`.
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    /// Rate limits; replace the preset's when given.
    #[serde(default)]
    pub policies: Option<Vec<PolicyConfig>>,
}

/// Which rate policy applies when several do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelectPolicy {
    /// The policy that allows the largest change.
    #[serde(alias = "Max")]
    Max,
    /// The policy that allows the smallest change.
    #[serde(alias = "Min")]
    Min,
    /// No change in this direction at all.
    #[serde(alias = "Disabled")]
    Disabled,
}

/// The unit of a rate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// A number of nodes per period.
    #[serde(alias = "Nodes", alias = "Pods")]
    Nodes,
    /// A percentage of the nodes at the start of the period.
    #[serde(alias = "Percent")]
    Percent,
}

/// One rate policy: at most `value` nodes or percent per `period`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// `nodes` or `percent`.
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    /// Nodes or percent; above zero.
    pub value: u32,
    /// Period, between 1s and 30m.
    pub period: String,
}

/// `price`: money per node-hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// On-demand price per node-hour.
    pub on_demand: f64,
    /// Spot price per node-hour, where the cloud does not give live prices.
    #[serde(default)]
    pub spot: Option<f64>,
    /// Prices by instance type, for pools that mix types.
    #[serde(default)]
    pub by_type: BTreeMap<String, TypePriceConfig>,
}

/// Prices of one instance type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypePriceConfig {
    /// On-demand price per node-hour.
    pub on_demand: f64,
    /// Spot price per node-hour.
    #[serde(default)]
    pub spot: Option<f64>,
    /// The type's family, for `capstan rightsizing` (sizes of one family are compared);
    /// default: the name up to its first `.` (AWS's `m5` of `m5.xlarge`).
    #[serde(default)]
    pub family: Option<String>,
    /// Virtual CPUs, for `capstan rightsizing` where the cloud has no catalogue.
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// Memory in GiB, for `capstan rightsizing`.
    #[serde(default)]
    pub memory_gib: Option<f64>,
    /// GPUs, for `capstan rightsizing`.
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Memory of all its GPUs together in GiB, for `capstan rightsizing`.
    #[serde(default)]
    pub gpu_memory_gib: Option<f64>,
}

/// `spot`: the on-demand/spot split, as the clouds define it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpotConfig {
    /// Nodes that are always on-demand.
    #[serde(default)]
    pub on_demand_base: u32,
    /// Percentage of nodes above the base that are on-demand (0–100); the rest are spot.
    #[serde(default = "defaults::on_demand_percent")]
    pub on_demand_percent_above_base: u32,
    /// Instance types the pool may use.
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Spot nodes not arriving within this time are planned as on-demand.
    #[serde(default = "defaults::spot_fallback_after")]
    pub fallback_after: String,
    /// After a fallback, spot is tried again after this long.
    #[serde(default = "defaults::spot_retry_after")]
    pub retry_after: String,
}

/// One scaling target: a metric and the per-node value to hold it at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A node metric, e.g. `cpu.utilization`, `gpu.utilization`, `workload.requests_per_second`.
    #[serde(default)]
    pub metric: Option<String>,
    /// A PromQL query against `prometheus_url`, instead of `metric`.
    #[serde(default)]
    pub promql: Option<String>,
    /// Prometheus server for `promql`.
    #[serde(default)]
    pub prometheus_url: Option<String>,
    /// Timeout of the PromQL query.
    #[serde(default)]
    pub timeout: Option<String>,
    /// The value per node to hold the metric at.
    pub value: f64,
}

/// Forecast mode.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PredictiveMode {
    /// No forecast.
    Off,
    /// Forecast, journal and export, but do not act (the default).
    #[default]
    ForecastOnly,
    /// desired = max(reactive, predictive).
    ForecastAndScale,
    /// Forecast, and scale on it (as forecast-and-scale) only while a backtest of the
    /// pool's recent demand, every few hours, shows it beats reactive-only at the
    /// same SLO.
    Auto,
}

impl PredictiveMode {
    /// The name as written in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::ForecastOnly => "forecast-only",
            Self::ForecastAndScale => "forecast-and-scale",
            Self::Auto => "auto",
        }
    }
}

/// `predictive`: forecast-based scaling and anomaly detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictiveConfig {
    /// `off`, `forecast-only` (default) or `forecast-and-scale`.
    #[serde(default)]
    pub mode: PredictiveMode,
    /// How far ahead to forecast, between 1m and 24h.
    #[serde(default = "defaults::horizon")]
    pub horizon: String,
    /// History kept for learning, at most 14d.
    #[serde(default = "defaults::history")]
    pub history: String,
    /// Time a new node needs to be ready; predictive capacity is planned this far ahead.
    #[serde(default = "defaults::lead_time")]
    pub lead_time: String,
    /// Robust z-score above which a residual is an anomaly.
    #[serde(default = "defaults::anomaly_threshold")]
    pub anomaly_threshold: f64,
    /// Whether a surge anomaly may trigger emergency capacity.
    #[serde(default)]
    pub anomaly_triggers_emergency: bool,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        Self {
            mode: PredictiveMode::default(),
            horizon: defaults::horizon(),
            history: defaults::history(),
            lead_time: defaults::lead_time(),
            anomaly_threshold: defaults::anomaly_threshold(),
            anomaly_triggers_emergency: false,
        }
    }
}

/// A cron window that raises or lowers `min`/`max` while active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A label for journal lines, e.g. `"business-hours"`.
    #[serde(default)]
    pub name: Option<String>,
    /// Start of the window, a 5-field cron expression (`minute hour day month weekday`).
    pub cron: String,
    /// IANA time zone the cron expression is read in, e.g. `"Europe/Stockholm"`.
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
    /// How long the window lasts from each start.
    pub duration: String,
    /// `min` while the window is active.
    #[serde(default)]
    pub min: Option<u32>,
    /// `max` while the window is active.
    #[serde(default)]
    pub max: Option<u32>,
}

/// `emergency`: when saturation may exceed `max`, up to `emergency_max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmergencyConfig {
    /// Ratio of metric to target (above 1) that counts as saturation.
    #[serde(default = "defaults::emergency_threshold")]
    pub threshold: f64,
    /// Consecutive saturated intervals before the emergency starts.
    #[serde(default = "defaults::emergency_intervals")]
    pub intervals: u32,
}

/// `circuit`: the actuator's circuit breaker for the pool's cloud calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Failed provider calls in a row that open the circuit. Before that, each failure
    /// waits a backoff (one interval, doubling) before the next try.
    #[serde(default = "defaults::circuit_failures")]
    pub failures: u32,
    /// The longest wait between tries, open or not (the backoff doubles up to it).
    #[serde(default = "defaults::circuit_max_backoff")]
    pub max_backoff: String,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failures: defaults::circuit_failures(),
            max_backoff: defaults::circuit_max_backoff(),
        }
    }
}

/// `scale_in`: how a pool whose nodes report under their instance ids shrinks: which
/// nodes leave, how long each may drain first, and how many drain at once. (A pool whose
/// reports match none of its instances lowers its desired capacity and lets the cloud
/// choose, as before.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleInConfig {
    /// Which healthy nodes leave first: `least-busy` (default: the lowest reading of the
    /// pool's first target, from each node's own report), `newest` or `oldest` (by
    /// each node's reported boot time). Nodes the cloud marks unhealthy, under an
    /// interruption notice or not reporting go before any of them, then the market
    /// over its planned on-demand/spot share; ties go to the zone with the most nodes.
    #[serde(default)]
    pub select: ScaleInSelect,
    /// How long a chosen node may drain before `on_timeout` applies, 10s to 24h.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: String,
    /// Past `drain_timeout`, or when its drain failed: `remove` the node anyway
    /// (default), or `keep` it (it is returned to service and another may be chosen).
    #[serde(default)]
    pub on_timeout: OnDrainTimeout,
    /// At most this many of the pool's nodes drain at once: a percentage of its nodes
    /// (`"10%"`, the default, rounded up) or a count (`3`).
    #[serde(default = "defaults::max_draining")]
    pub max_draining: Share,
    /// No node is chosen while more than this share of the pool's in-service nodes are
    /// unready or not reporting (default `"45%"`).
    #[serde(default = "defaults::halt_when_unready")]
    pub halt_when_unready: String,
}

impl Default for ScaleInConfig {
    fn default() -> Self {
        Self {
            select: ScaleInSelect::default(),
            drain_timeout: defaults::drain_timeout(),
            on_timeout: OnDrainTimeout::default(),
            max_draining: defaults::max_draining(),
            halt_when_unready: defaults::halt_when_unready(),
        }
    }
}

/// `scale_in.select`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleInSelect {
    /// The lowest reading of the pool's first target (the default).
    #[default]
    LeastBusy,
    /// The most recently booted.
    Newest,
    /// The longest running.
    Oldest,
}

impl ScaleInSelect {
    /// The name as written in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LeastBusy => "least-busy",
            Self::Newest => "newest",
            Self::Oldest => "oldest",
        }
    }
}

/// `scale_in.on_timeout`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OnDrainTimeout {
    /// Remove the node anyway (the default).
    #[default]
    Remove,
    /// Return it to service.
    Keep,
}

impl OnDrainTimeout {
    /// The name as written in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Remove => "remove",
            Self::Keep => "keep",
        }
    }
}

/// A number of nodes, or a percentage of a pool's nodes (`"10%"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Share {
    /// A count.
    Count(u32),
    /// A percentage, written `"N%"`.
    Percent(String),
}

/// `flap`: freezes a pool whose scaling keeps changing direction. On by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlapConfig {
    /// More direction reversals than this within `window` freeze the pool. 0 turns
    /// flap protection off.
    #[serde(default = "defaults::flap_max_reversals")]
    pub max_reversals: u32,
    /// The window reversals are counted in.
    #[serde(default = "defaults::flap_window")]
    pub window: String,
    /// How long a flapping pool stays frozen.
    #[serde(default = "defaults::flap_cool_off")]
    pub cool_off: String,
}

impl Default for FlapConfig {
    fn default() -> Self {
        Self {
            max_reversals: defaults::flap_max_reversals(),
            window: defaults::flap_window(),
            cool_off: defaults::flap_cool_off(),
        }
    }
}
