#!/usr/bin/env bash
# Proves cluster.yaml for real on one machine: `ray up` over ssh to a head on 127.0.0.2 and a
# worker on 127.0.0.3 (a private sshd bound to those two addresses), a smoke sweep through the
# cluster whose trials must land on both nodes, then `ray down`.
#
#   scripts/ray_up_loopback.sh            (as root, or with openssh-server and rsync installed)
#   KEEP_WORK=1 scripts/ray_up_loopback.sh   keeps the work folder (logs, cluster file)
#
# Nothing here touches other people's processes: the ssh sessions get a private HOME (via
# sshd's SetEnv) whose PATH puts a `ray` wrapper first, and that wrapper turns the bare
# `ray stop` of `ray down` into a stop of this cluster's processes only (by its --temp-dir).
# One file goes outside the work folder: ssh resolves the head's `-i ~/ray_bootstrap_key.pem`
# with the passwd home, not $HOME, so a symlink to the private copy sits there while it runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
HEAD=127.0.0.2
WORKER=127.0.0.3
WORK=${WORK:-$(mktemp -d /tmp/hrup.XXXXXX)}   # the test passes its own (with KEEP_WORK=1)
RAYTMP=/tmp/hru$$                      # short: Ray's socket paths must fit in 107 bytes
NAME=hetero-loopback-$$
UP=0
KEY_LINK="$(getent passwd "$(id -un)" | cut -d: -f6)/ray_bootstrap_key.pem"
LINKED=0

log() { printf '\n== %s\n' "$*"; }

stop_group() {  # SIGTERM a process group, SIGKILL what is left after 20 s
  kill -TERM -- "-$1" 2>/dev/null || return 0
  for _ in $(seq 40); do kill -0 -- "-$1" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL -- "-$1" 2>/dev/null
}

cleanup() {
  local rc=$?
  set +e
  if [ "$UP" = 1 ]; then
    log "ray down"
    (cd "$ROOT" && RAY_UP_enable_autoscaler_v2=0 "$VENV/bin/ray" down -y "$WORK/cluster.yaml") \
      > "$WORK/ray_down.log" 2>&1
    tail -n 3 "$WORK/ray_down.log"
  fi
  [ -f "$WORK/home/mlflow/server.pid" ] && stop_group "$(cat "$WORK/home/mlflow/server.pid")"
  "$PY" "$ROOT/scripts/ray_scoped_stop.py" "$RAYTMP" --grace 3
  if [ -f "$WORK/sshd.pid" ]; then  # the listener and its open sessions (by parent id)
    pkill -TERM -P "$(cat "$WORK/sshd.pid")" 2>/dev/null
    kill "$(cat "$WORK/sshd.pid")" 2>/dev/null
  fi
  echo "stopped: ray (scoped), mlflow server, sshd"
  [ "$LINKED" = 1 ] && rm -f "$KEY_LINK"
  rm -f "/tmp/cluster-$NAME.state" "/tmp/cluster-$NAME.lock"
  rm -rf "$RAYTMP"
  if [ "$rc" != 0 ] || [ "${KEEP_WORK:-0}" = 1 ]; then
    echo "work folder kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT

ensure_packages() {
  if [ -x /usr/sbin/sshd ] && command -v rsync > /dev/null; then return; fi
  [ "$(id -u)" = 0 ] || { echo "install openssh-server and rsync (needs root)" >&2; exit 2; }
  log "installing openssh-server and rsync (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server rsync
}

free_port() { "$PY" -c "from sweeps.server import free_port; print(free_port('$1'))"; }

link_bootstrap_key() {
  if [ -e "$KEY_LINK" ] || [ -L "$KEY_LINK" ]; then
    echo "$KEY_LINK exists (another ray up on this machine?); not replacing it" >&2
    exit 2
  fi
  ln -s "$WORK/home/ray_bootstrap_key.pem" "$KEY_LINK"
  LINKED=1
}

write_private_home() {
  mkdir -p "$WORK/home/.ray" "$WORK/bin"
  # ray must be on PATH in the remote login shell: ray up runs `bash --login -i`, sources ~/.bashrc.
  cat > "$WORK/home/.bashrc" <<EOF
export PATH="$WORK/bin:$VENV/bin:\$PATH"
EOF
  : > "$WORK/home/.profile"
  cat > "$WORK/bin/ray" <<EOF
#!/usr/bin/env bash
# A bare \`ray stop\` stops every Ray of this user on the machine: stop this cluster's only.
if [ "\${1:-}" = stop ]; then exec "$PY" "$ROOT/scripts/ray_scoped_stop.py" "$RAYTMP"; fi
exec "$VENV/bin/ray" "\$@"
EOF
  chmod +x "$WORK/bin/ray"
}

start_sshd() {
  ssh-keygen -q -t ed25519 -N "" -f "$WORK/client_key"
  ssh-keygen -q -t ed25519 -N "" -f "$WORK/host_key"
  cp "$WORK/client_key.pub" "$WORK/authorized_keys"
  cat > "$WORK/sshd_config" <<EOF
ListenAddress $HEAD:22
ListenAddress $WORKER:22
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
SetEnv HOME=$WORK/home
EOF
  mkdir -p /run/sshd
  /usr/sbin/sshd -f "$WORK/sshd_config" -E "$WORK/sshd.log"
  for ip in $HEAD $WORKER; do
    ssh -i "$WORK/client_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o LogLevel=ERROR "$(id -un)@$ip" 'bash --login -c -i "source ~/.bashrc; command -v ray"' \
      2>/dev/null | tail -n 1
  done
}

write_cluster_file() {
  # The loopback variant of cluster.yaml: same structure and commands, with loopback
  # addresses, this machine's venv instead of a fresh one, and no `ray stop` (one machine).
  "$PY" - "$ROOT/cluster.yaml" "$WORK/cluster.yaml" <<EOF
import sys, yaml
spec = yaml.safe_load(open(sys.argv[1]))

def swap(text, old, new):
    assert old in text, f"cluster.yaml changed: {old!r} not found in {text!r}"
    return text.replace(old, new)

spec["cluster_name"] = "$NAME"
spec["provider"] = {"type": "local", "head_ip": "$HEAD", "worker_ips": ["$WORKER"]}
spec["auth"] = {"ssh_user": "$(id -un)", "ssh_private_key": "$WORK/client_key"}
spec["min_workers"] = spec["max_workers"] = 1
spec["file_mounts"] = {k: v for k, v in spec["file_mounts"].items() if "auth_token" in k}
spec["setup_commands"] = ["python -c 'import hetero, sweeps, ray; print(ray.__version__)'"]
mlflow = spec["head_setup_commands"][1]
for old, new in (("~/hetero-venv/bin/mlflow", "$VENV/bin/mlflow"),
                 ("--host 192.168.1.10", "--host $HEAD"), ("--port 5000", "--port $MLFLOW_PORT"),
                 ("http://192.168.1.10:5000/health", "http://$HEAD:$MLFLOW_PORT/health")):
    mlflow = swap(mlflow, old, new)
spec["head_setup_commands"][1] = mlflow
loopback = "--num-cpus=1 --temp-dir=$RAYTMP --disable-usage-stats"
head = [c for c in spec["head_start_ray_commands"] if c.strip() != "ray stop"]
head = [swap(swap(c, "--port=6379", "--port=$RAY_PORT"), " --object-manager-port=8076", "")
        + f" --node-ip-address=$HEAD --include-dashboard=false {loopback}" for c in head]
worker = [c for c in spec["worker_start_ray_commands"] if c.strip() != "ray stop"]
worker = [swap(swap(c, ":6379", ":$RAY_PORT"), " --object-manager-port=8076", "")
          + f" --node-ip-address=$WORKER {loopback}" for c in worker]
spec["head_start_ray_commands"], spec["worker_start_ray_commands"] = head, worker
yaml.safe_dump(spec, open(sys.argv[2], "w"), sort_keys=False)
EOF
}

wait_for_nodes() {
  RAY_AUTH_MODE=token "$PY" - "$HEAD:$RAY_PORT" <<'EOF'
import sys, time
import ray
deadline = time.monotonic() + 240
while True:
    ray.init(address=sys.argv[1], logging_level="ERROR")
    alive = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])
    ray.shutdown()
    print("nodes up:", alive, flush=True)
    if len(alive) >= 2:
        break
    if time.monotonic() > deadline:
        sys.exit("the worker node did not join within 240 s (see the autoscaler log on the head)")
    time.sleep(5)
EOF
}

print_trial_nodes() {
  "$PY" - "http://$HEAD:$MLFLOW_PORT" <<'EOF'
import sys
from mlflow import MlflowClient
from sweeps import keys
client = MlflowClient(sys.argv[1])
experiment = client.get_experiment_by_name("quickstart")
parent = client.search_runs([experiment.experiment_id], max_results=1,
                            filter_string=f"tags.{keys.TAG_SWEEP} = 'loopback-smoke' and "
                                          f"tags.{keys.TAG_KIND} = '{keys.KIND_SWEEP}'")[0]
runs = client.search_runs([experiment.experiment_id],
                          filter_string=f"tags.`{keys.TAG_PARENT_RUN_ID}` = '{parent.info.run_id}'")
nodes = set()
for run in sorted(runs, key=lambda r: r.info.run_name):
    ip = run.data.tags.get(keys.TAG_NODE_IP)
    nodes.add(ip)
    print(f"  {run.info.run_name:<36} {run.info.status:<9} node {ip}")
if nodes != {"127.0.0.2", "127.0.0.3"}:
    sys.exit(f"trials ran on {sorted(nodes)}, expected both 127.0.0.2 and 127.0.0.3")
print("trials ran on both nodes")
EOF
}

ensure_packages
[ -f "$HOME/.ray/auth_token" ] || "$VENV/bin/ray" get-auth-token --generate > /dev/null
chmod 600 "$HOME/.ray/auth_token"   # ray writes it world-readable
RAY_PORT=$(free_port $HEAD)
MLFLOW_PORT=$(free_port $HEAD)
log "private sshd on $HEAD and $WORKER (ray on the remote PATH:)"
write_private_home
link_bootstrap_key
start_sshd
write_cluster_file
log "RAY_UP_enable_autoscaler_v2=0 ray up -y $WORK/cluster.yaml"
UP=1
(cd "$ROOT" && RAY_UP_enable_autoscaler_v2=0 "$VENV/bin/ray" up -y --no-config-cache \
  "$WORK/cluster.yaml") > "$WORK/ray_up.log" 2>&1 || { tail -n 40 "$WORK/ray_up.log"; exit 1; }
tail -n 4 "$WORK/ray_up.log"
wait_for_nodes
log "smoke sweep through the cluster (--address $HEAD:$RAY_PORT)"
(cd "$WORK" && "$PY" -m sweeps.cli "$ROOT/sweeps/configs/quickstart.yaml" --smoke-test \
  --address "$HEAD:$RAY_PORT" --tracking-uri "http://$HEAD:$MLFLOW_PORT" --name loopback-smoke) \
  > "$WORK/sweep.log" 2>&1 || { tail -n 40 "$WORK/sweep.log"; exit 1; }
grep -A 20 "^Sweep loopback-smoke" "$WORK/sweep.log"
log "node of each trial (MLflow tag node_ip)"
print_trial_nodes
