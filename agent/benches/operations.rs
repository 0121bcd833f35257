//! A leader's pass with one pool's cloud operation in flight, against the same fleet
//! with none: the pass plans every pool whatever is in flight, and following an
//! operation (reading the last poll, starting the next) must not slow it. The held
//! operation is 10 minutes old less a second (just under `OPERATION_TIMEOUT`), and its
//! cloud answers every poll "running". Goal: the ratio ≤ 1.2.
//!
//! `cargo bench -p capstan --features full --bench operations` (100 pools of recording
//! fake providers, each with a fresh report, passes 15 s apart; the figures in
//! docs/performance.md).

use std::hint::black_box;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

use capstan::cluster::coordinator::{Claim, Coordinator, Standalone};
use capstan::pass::{Mode, PoolRuntime, Turn, fleet_pass};
use capstan_collectors::NodeReport;
use capstan_providers::fake::FakeProvider;
use capstan_providers::{CapacityTarget, NodePoolProvider, PoolDescription};

const POOLS: usize = 100;

fn config() -> capstan_config::ValidatedConfig {
    let mut text = String::new();
    for i in 0..POOLS {
        text += &format!(
            "[[pool]]\nname = \"p{i}\"\nprovider = {{ type = \"dry-run\" }}\nmin = 1\nmax = 50\ntargets = [{{ metric = \"cpu.utilization\", value = 50 }}]\n"
        );
    }
    capstan_config::from_str("bench.toml".as_ref(), &text, std::iter::empty()).unwrap()
}

fn report(pool: usize, at: DateTime<Utc>) -> NodeReport {
    serde_json::from_value(serde_json::json!({
        "version": 1, "node_id": format!("n{pool}"), "pool": format!("p{pool}"),
        "at": at,
        "host": {"cpu_percent": 50.0, "cpu_per_core_percent": [50.0], "cores": 1,
                 "load": {"one": 0.5, "five": 0.5, "fifteen": 0.5},
                 "memory": {"total_bytes": 1, "used_bytes": 0, "available_bytes": 1},
                 "swap": {"total_bytes": 0, "used_bytes": 0}, "disks": [], "network": []}
    }))
    .unwrap()
}

/// The fleet; with `held`, pool 0 has an operation in flight that never ends.
fn fleet(rt: &tokio::runtime::Runtime, held: bool, now: DateTime<Utc>) -> Vec<PoolRuntime> {
    config()
        .pools
        .into_iter()
        .enumerate()
        .map(|(i, cfg)| {
            let fake = Arc::new(FakeProvider::new(PoolDescription {
                steps: Default::default(),
                min: 1,
                max: 50,
                desired: 4,
                instances: vec![],
            }));
            let mut pool = PoolRuntime::new(cfg, fake.clone());
            if held && i == 0 {
                fake.run_next_apply_as_operation(usize::MAX);
                let handle = match rt.block_on(
                    fake.submit(&CapacityTarget::on_demand(4), &capstan_providers::Unfenced),
                ) {
                    Ok(capstan_providers::Applied::Running(h)) => h,
                    other => panic!("{other:?}"),
                };
                pool.memory.operation = Some(capstan::state::memory::Operation {
                    handle: Some(handle),
                    started_at: now - chrono::Duration::seconds(599),
                    target: CapacityTarget::on_demand(4),
                    from: 4,
                    remove: Vec::new(),
                });
            }
            pool
        })
        .collect()
}

fn pass_with_and_without_an_operation_in_flight(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let budget = config().budget;
    let claim: tokio::sync::watch::Receiver<Claim> = Standalone::new("bench", None).claim();
    let mut group = c.benchmark_group(format!("pass over {POOLS} pools"));
    for (name, held) in [("none in flight", false), ("one operation in flight", true)] {
        let mut pools = fleet(&rt, held, now);
        let pass = std::cell::Cell::new(0);
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    // Passes 15 s apart, as the daemon's, so each pool's windows move
                    // on; the reports are made outside the measurement.
                    pass.set(pass.get() + 1);
                    let now = now + chrono::Duration::seconds(15 * pass.get());
                    let reports: Vec<NodeReport> = (0..POOLS).map(|i| report(i, now)).collect();
                    (now, reports)
                },
                |(now, reports)| {
                    if let Some(op) = pools[0].memory.operation.as_mut() {
                        op.started_at = now - chrono::Duration::seconds(599);
                    }
                    let refs: Vec<&NodeReport> = reports.iter().collect();
                    rt.block_on(async {
                        let out = fleet_pass(
                            &mut pools,
                            &mut [],
                            &refs,
                            &budget,
                            Turn::new(&claim, Mode::Act, now, std::time::Duration::from_secs(15)),
                        )
                        .await;
                        // Let the poll started beside the pass answer, as the time
                        // between passes does.
                        tokio::task::yield_now().await;
                        black_box(out)
                    })
                },
                criterion::BatchSize::SmallInput,
            );
        });
        if held {
            let op = pools[0].memory.operation.as_ref().expect("still in flight");
            assert!(op.handle.is_some());
        }
    }
    group.finish();
}

criterion_group!(benches, pass_with_and_without_an_operation_in_flight);
criterion_main!(benches);
