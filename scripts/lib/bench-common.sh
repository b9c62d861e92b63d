# Shared by the bench-*.sh scripts (source it): CPU choice, CPU-time counters from /proc,
# and the readiness wait. Not a benchmark by itself.
server_cpu=${SERVER_CPU:-1}
load_cpu=${LOAD_CPU:-0}
hz=$(getconf CLK_TCK)

# CPU ticks (user+system) of process $1.
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# CPU ticks of the whole machine, all CPUs (user, nice, system, iowait, irq, softirq).
machine_ticks() { awk '/^cpu / {print $2+$3+$4+$6+$7+$8}' /proc/stat; }

# CPU ticks spent on CPU $1 (everything that ran there, the kernel's softirqs included).
cpu_ticks() { awk -v c="cpu$1" '$1==c {print $2+$3+$4+$6+$7+$8}' /proc/stat; }

# Microseconds of CPU per item: us_per TICKS_BEFORE TICKS_AFTER ITEMS
us_per() { awk -v a="$1" -v b="$2" -v hz="$hz" -v n="$3" 'BEGIN {print (b-a)/hz*1e6/n}'; }

# Waits (10 s at most) for px-appliance's readiness line in log file $1; exits if absent.
wait_ready() {
  for _ in $(seq 100); do grep -q listening "$1" 2>/dev/null && { scripts/testbed.sh pin; return; }; sleep 0.1; done
  echo "server did not start; its log:" >&2
  cat "$1" >&2
  exit 1
}

# Waits (10 s at most) until the server $server_pid answers URL $1 with 200 from the
# px-client namespace; on failure prints log file $2 and exits. Contender $3 names it.
wait_http_ready() {
  local url=$1 logf=$2 name=$3 code
  for _ in $(seq 100); do
    code=$(ip netns exec px-client curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    # A contender that attached an XDP program may have made veth re-create its NAPI
    # thread, unpinned: put the fair link's NAPI threads back on their CPUs.
    [ "$code" = 200 ] && { scripts/testbed.sh pin; return 0; }
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$name did not become ready; its log:" >&2
  cat "$logf" >&2
  exit 1
}

# Stops the server $server_pid: SIGTERM, 10 s to exit, then SIGKILL.
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
