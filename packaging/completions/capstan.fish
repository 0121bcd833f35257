# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_capstan_global_optspecs
    string join \n log-format= h/help V/version
end

function __fish_capstan_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_capstan_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_capstan_using_subcommand
    set -l cmd (__fish_capstan_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c capstan -n "__fish_capstan_needs_command" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_needs_command" -s V -l version -d 'Print version'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "run" -d 'Run the agent: collect, lead (standalone), plan and act every interval'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "validate" -d 'Check a configuration file without starting anything. Exit 1 listing every problem'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "plan" -d 'One pass of collect, describe and plan, printed per pool with reasons. Never acts'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "forecast" -d 'Replay a `timestamp,value` CSV through the forecaster. Prints `timestamp,value,forecast` for every row, where `forecast` is the value predicted for that timestamp from the data up to `horizon` before it (empty during warm-up)'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "detect" -d 'Score a `timestamp,value` CSV for anomalies. Prints `timestamp,value,anomaly_score,label` for every row. The score, in [0, 1], ranks how surprising the row is: the forecast residual\'s tail probability, or a value beyond the range of the last 5,000 points, on a scale where 0.5 is as rare as a `--threshold`-σ normal event; the label is 1 where the score is at least 0.5. (The agent itself journals and acts on residual onsets only: the robust z-score reaches the threshold and beats the last 500 points.)'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "simulate" -d 'Replay a `timestamp,value` demand trace through a pool\'s policy (the daemon\'s own planner) against a simulated pool with a provisioning delay. Prints node-hours, cost, minutes and demand under-provisioned, scaling actions and forecast MASE'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "tune" -d 'Backtest a grid of policies for a pool (target values, behavior presets, predictive mode and horizon) and print the cheapest within the SLO, beside the current policy, as a TOML snippet'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "rightsizing" -d 'Per pool, from the usage the leader recorded: p50, p95 and max of CPU, memory, GPU and GPU memory utilization, and the size of the same instance family that would serve it for the least money, with the monthly saving and the evidence'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout (packaging/completions/ holds them)'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "man" -d 'Print the man page (roff) to stdout, or write every page (capstan(1) and one capstan-COMMAND(1) per subcommand) into a directory (packaging/man/ holds them)'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "config-schema" -d 'Print the configuration\'s JSON Schema (packaging/schema/capstan.schema.json)'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "collect" -d 'Print this node\'s report, as the agent sends it: host, GPUs and workload metrics'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "status" -d 'Show a running agent\'s status as a table'
complete -c capstan -n "__fish_capstan_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c capstan -n "__fish_capstan_using_subcommand run" -s c -l config -d 'Configuration file; the embedded default (examples/standalone.toml) when absent' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand run" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand validate" -s c -l config -d 'Configuration file' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand validate" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand plan" -s c -l config -d 'Configuration file' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand plan" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand plan" -l json -d 'Print JSON: {"pools": [{"name", "tier", "current", "desired", "on_demand", "spot", "hourly_cost", "reasons", ...}], "fleet_hourly_cost", "budget_ceiling"}'
complete -c capstan -n "__fish_capstan_using_subcommand plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand forecast" -l csv -d 'The CSV file (NAB\'s format: a `timestamp,value` header)' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand forecast" -l horizon -d 'How far ahead, e.g. 30m' -r
complete -c capstan -n "__fish_capstan_using_subcommand forecast" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand forecast" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand detect" -l csv -d 'The CSV file (NAB\'s format: a `timestamp,value` header)' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand detect" -l threshold -d 'Robust z-score threshold' -r
complete -c capstan -n "__fish_capstan_using_subcommand detect" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand detect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -s c -l config -d 'Configuration file' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l pool -d 'The pool whose policy to replay' -r
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l trace -d 'The demand trace (`timestamp,value`)' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l demand-per-node -d 'Demand one node serves at the pool\'s first target. Default: the trace\'s peak needs 80 % of the pool\'s max' -r
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l provisioning-delay -d 'How long a new node takes to serve' -r
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l drain-time -d 'How long a node chosen to leave drains before it goes (targeted scale-in): billed, serving nothing new; a scale-up takes back draining nodes first' -r
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l warm-up -d 'Minutes replayed before scoring starts: every policy learns and scales, none is billed or counted. The daemon warms its forecaster from its stored demand history, so a forecast\'s first days happen once per pool, not every week. Default: 3 days on a trace of at least 9 days, else none (`0s`)' -r
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l svg -d 'Write an SVG plot here: demand, the policy\'s ready capacity and forecast, its under-provisioned minutes shaded, and with --compare the best reactive-only policy\'s capacity at the same SLO, over --window' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l window -d 'How much of the run the plot shows (`7d`, `36h`, or `all`): the stretch with the most under-provisioned minutes of the policy (else the one around the peak)' -r
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l compare -d 'Also run reactive-only (predictive scaling off) beside the configured policy: at the same target, and the cheapest reactive-only policy of `capstan tune`\'s grid with no more saturated minutes than the policy (the same SLO, on the same saturation line)'
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -l json -d 'Print JSON: {"policy": M, "warm_up_minutes": N, "reactive": M, "same_slo": S} (the last two with --compare), where each M has node_hours, cost, underprovisioned_minutes, underprovisioned_demand, actions and mase, and S is {saturation, slo_minutes, policy, best_reactive} (each a candidate and its metrics on the saturation line, best_reactive null when none stays within the SLO)'
complete -c capstan -n "__fish_capstan_using_subcommand simulate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand tune" -s c -l config -d 'Configuration file' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l pool -d 'The pool to tune' -r
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l trace -d 'The demand trace (`timestamp,value`)' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l slo-minutes -d 'Under-provisioned minutes allowed over the trace. Default: as many as the current policy has (no worse than today)' -r
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l demand-per-node -d 'Demand one node serves at the pool\'s current first target. Default: with --history, the target\'s value (the history holds the target\'s readings summed over the pool); with --trace, the peak needs 80 % of the pool\'s max' -r
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l saturation -d 'The metric\'s value per node at which a node is saturated: a minute above it is under-provisioned. Default: 100 for a percentage, else the current target plus its tolerance' -r
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l provisioning-delay -d 'How long a new node takes to serve' -r
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l drain-time -d 'How long a node chosen to leave drains before it goes (targeted scale-in): billed, serving nothing new; a scale-up takes back draining nodes first' -r
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l warm-up -d 'Minutes replayed before scoring starts: every policy learns and scales, none is billed or counted. The daemon warms its forecaster from its stored demand history, so a forecast\'s first days happen once per pool, not every week. Default: 3 days on a trace of at least 9 days, else none (`0s`)' -r
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l svg -d 'Write an SVG of the frontier here: node-hours against saturated minutes, one point per candidate, reactive-only and forecast-and-scale in two colours, the chosen and the current policy marked' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l history -d 'Take the trace from the pool\'s stored demand history (`<state_dir>/history/<pool>.csv`, its first target) instead'
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l auto -d 'Also try `predictive.mode = "auto"` at every target value and behavior, each at the horizon of that pair\'s best forecast-and-scale candidate: auto backtests its recent demand every 6 hours as the leader does, so this takes minutes on a long trace (about a second per candidate for two weeks)'
complete -c capstan -n "__fish_capstan_using_subcommand tune" -l json -d 'Print JSON: pool, minutes, warm_up_minutes, slo_minutes, saturation, current, best (null when no candidate meets the SLO), snippet, candidates (best first); each with policy {target_value, behavior, predictive_mode, horizon_minutes, lead_minutes}, metrics (as `simulate --json`) and meets_slo'
complete -c capstan -n "__fish_capstan_using_subcommand tune" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand rightsizing" -s c -l config -d 'Configuration file (its `agent.state_dir` holds the usage history)' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand rightsizing" -l days -d 'Days to look back (1 to 35)' -r
complete -c capstan -n "__fish_capstan_using_subcommand rightsizing" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand rightsizing" -l json -d 'Print JSON: one object per pool with pool, days, minutes, nodes ({mean, max}), cpu, memory, gpu, gpu_memory ({p50, p95, max} or null), instance_type, recommendation (current_type, instance_type, change, current_nodes, nodes, hourly_cost_now, hourly_cost_then, monthly_saving, options) and evidence'
complete -c capstan -n "__fish_capstan_using_subcommand rightsizing" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand completions" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand man" -l dir -d 'Write capstan.1 and every capstan-COMMAND.1 into this directory' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand man" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand config-schema" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand config-schema" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand collect" -s c -l config -d 'Configuration file (the node\'s name and pool, `[[scrape]]` endpoints); the embedded default without it' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand collect" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand collect" -l once -d 'Print one report and exit; without it, one every `agent.interval` until Ctrl-C'
complete -c capstan -n "__fish_capstan_using_subcommand collect" -l json -d 'Print the report\'s JSON (one line each), exactly as sent to the leader'
complete -c capstan -n "__fish_capstan_using_subcommand collect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand status" -l url -d 'The agent\'s base URL, e.g. http://127.0.0.1:9464' -r
complete -c capstan -n "__fish_capstan_using_subcommand status" -l token-file -d 'File holding the agent\'s `cluster.status_token_file` token: needed when it is set; without one set, the status comes with cloud accounts redacted' -r -F
complete -c capstan -n "__fish_capstan_using_subcommand status" -l log-format -d 'Log lines as human-readable text (default) or one JSON object per line for log shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`)' -r -f -a "text\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c capstan -n "__fish_capstan_using_subcommand status" -l json -d 'Print the raw JSON of /v1/status'
complete -c capstan -n "__fish_capstan_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "run" -d 'Run the agent: collect, lead (standalone), plan and act every interval'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "validate" -d 'Check a configuration file without starting anything. Exit 1 listing every problem'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "plan" -d 'One pass of collect, describe and plan, printed per pool with reasons. Never acts'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "forecast" -d 'Replay a `timestamp,value` CSV through the forecaster. Prints `timestamp,value,forecast` for every row, where `forecast` is the value predicted for that timestamp from the data up to `horizon` before it (empty during warm-up)'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "detect" -d 'Score a `timestamp,value` CSV for anomalies. Prints `timestamp,value,anomaly_score,label` for every row. The score, in [0, 1], ranks how surprising the row is: the forecast residual\'s tail probability, or a value beyond the range of the last 5,000 points, on a scale where 0.5 is as rare as a `--threshold`-σ normal event; the label is 1 where the score is at least 0.5. (The agent itself journals and acts on residual onsets only: the robust z-score reaches the threshold and beats the last 500 points.)'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "simulate" -d 'Replay a `timestamp,value` demand trace through a pool\'s policy (the daemon\'s own planner) against a simulated pool with a provisioning delay. Prints node-hours, cost, minutes and demand under-provisioned, scaling actions and forecast MASE'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "tune" -d 'Backtest a grid of policies for a pool (target values, behavior presets, predictive mode and horizon) and print the cheapest within the SLO, beside the current policy, as a TOML snippet'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "rightsizing" -d 'Per pool, from the usage the leader recorded: p50, p95 and max of CPU, memory, GPU and GPU memory utilization, and the size of the same instance family that would serve it for the least money, with the monthly saving and the evidence'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "completions" -d 'Print a shell completion script to stdout (packaging/completions/ holds them)'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "man" -d 'Print the man page (roff) to stdout, or write every page (capstan(1) and one capstan-COMMAND(1) per subcommand) into a directory (packaging/man/ holds them)'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "config-schema" -d 'Print the configuration\'s JSON Schema (packaging/schema/capstan.schema.json)'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "collect" -d 'Print this node\'s report, as the agent sends it: host, GPUs and workload metrics'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "status" -d 'Show a running agent\'s status as a table'
complete -c capstan -n "__fish_capstan_using_subcommand help; and not __fish_seen_subcommand_from run validate plan forecast detect simulate tune rightsizing completions man config-schema collect status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
