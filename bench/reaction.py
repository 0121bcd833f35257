"""Reaction time of `capstan run` against an Auto Scaling Group on moto.

Run through bench/reaction.sh, which builds the agent and passes its path. The script
starts moto_server on 127.0.0.1, makes a launch template and an ASG (2 nodes) with
boto3, serves a workload metric whose total this script controls (spread over the
group's desired nodes, as a load balancer would), and starts the agent with one aws pool
(target 30 per node, interval 5 s). Each step multiplies the total by 3 and measures
the time until moto reports the new desired capacity (SetDesiredCapacity applied),
polled every 25 ms. Between steps the total returns to its base, the group returns to
2 nodes, and a random pause (0 to one interval) varies the phase of the step against
the agent's tick. Goal: median at most one interval plus 1 s.
"""

import http.server
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import boto3

AGENT, STEPS, INTERVAL = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
BASE, TARGET = 60.0, 30.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


work = tempfile.mkdtemp()
procs = []


def stop():
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


moto_port = free_port()
moto_url = f"http://127.0.0.1:{moto_port}"
procs.append(
    subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=open(os.path.join(work, "moto.log"), "w"),
        stderr=subprocess.STDOUT,
    )
)
kw = dict(
    endpoint_url=moto_url,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
try:
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", moto_port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    ec2 = boto3.client("ec2", **kw)
    asg = boto3.client("autoscaling", **kw)
    ec2.create_launch_template(
        LaunchTemplateName="web",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "m5.large"},
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName="web",
        MinSize=1,
        MaxSize=20,
        DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateName": "web", "Version": "$Latest"},
    )

    def desired():
        g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["web"])
        n = g["AutoScalingGroups"][0]["DesiredCapacity"]
        seen["desired"] = n
        return n

    total = {"value": BASE}
    # The endpoint spreads the total over the desired nodes the poller saw last, so
    # it never waits on moto itself.
    seen = {"desired": 2}

    class Demand(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            per_node = total["value"] / max(seen["desired"], 1)
            body = f"# TYPE test_demand gauge\ntest_demand {per_node}\n".encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    demand = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Demand)
    threading.Thread(target=demand.serve_forever, daemon=True).start()

    config = os.path.join(work, "capstan.toml")
    with open(config, "w") as f:
        f.write(
            f"""
[agent]
listen = "127.0.0.1:0"
interval = "{INTERVAL}s"
state_dir = "{work}/state"

[[scrape]]
url = "http://127.0.0.1:{demand.server_address[1]}/metrics"
series = "test_demand"
name = "demand"

[[pool]]
name = "web"
provider = {{ type = "aws", region = "us-east-1", asg = "web", endpoint_url = "{moto_url}" }}
min = 1
max = 20
targets = [{{ metric = "workload.demand", value = {TARGET} }}]
behavior = {{ preset = "balanced", scale_down = {{ stabilization_window = "0s", select_policy = "max", policies = [{{ type = "percent", value = 100, period = "5s" }}] }} }}
# The bench reverses direction on purpose, step after step: no flap freeze.
flap = {{ max_reversals = 0 }}
"""
        )
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_EC2_METADATA_DISABLED="true",
        CAPSTAN_LOG="warn",
    )
    procs.append(
        subprocess.Popen(
            [AGENT, "run", "--config", config],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, "capstan.log"), "w"),
        )
    )

    def wait_for(n, limit):
        start = time.monotonic()
        while time.monotonic() - start < limit:
            if desired() == n:
                return time.monotonic()
            time.sleep(0.025)
        log = open(os.path.join(work, "capstan.log")).read()[-3000:]
        raise SystemExit(f"desired never reached {n} within {limit} s; agent log:\n{log}")

    # Let the agent's first passes settle on 2 nodes.
    time.sleep(2 * INTERVAL)
    wait_for(2, 60)
    times = []
    rng = random.Random(1)
    for step in range(STEPS):
        time.sleep(rng.uniform(0, INTERVAL))
        total["value"] = BASE * 3
        t0 = time.monotonic()
        t1 = wait_for(6, 10 * INTERVAL)
        times.append(t1 - t0)
        print(f"step {step + 1}: 2 -> 6 nodes in {t1 - t0:.2f} s", flush=True)
        total["value"] = BASE
        wait_for(2, 20 * INTERVAL)
    med = statistics.median(times)
    goal = INTERVAL + 1.0
    print(
        json.dumps(
            {
                "interval_s": INTERVAL,
                "steps": STEPS,
                "median_s": round(med, 2),
                "min_s": round(min(times), 2),
                "max_s": round(max(times), 2),
                "goal_s": goal,
                "met": med <= goal,
            }
        )
    )
finally:
    stop()
