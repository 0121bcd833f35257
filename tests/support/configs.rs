//! Configs more than one test binary runs.

/// A target this host always exceeds: memory in use is far above 0.01 %.
pub const HOT_POOL: &str = r#"
[agent]
pool = "hot"

[[pool]]
name = "hot"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 6
behavior = "aggressive"
targets = [{ metric = "memory.utilization", value = 0.01 }]
"#;

/// Three dry-run pools in one group; this node reports for `web-a`. The group's
/// target is always exceeded, and its scale-up is limited to 3 nodes a second (a pass
/// at the tests' 1 s interval).
pub const GROUP_FLEET: &str = r#"
[agent]
pool = "web-a"

[[pool]]
name = "web-a"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 3
price = { on_demand = 0.1 }

[[pool]]
name = "web-b"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 4
price = { on_demand = 0.2 }

[[pool]]
name = "web-c"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 10
price = { on_demand = 0.3 }

[[group]]
name = "web"
strategy = "cheapest"
members = ["web-c", "web-b", "web-a"]
behavior = { scale_up = { policies = [{ type = "nodes", value = 3, period = "1s" }] } }
targets = [{ metric = "memory.utilization", value = 0.01 }]
"#;
