# Shared by the bench scripts: loopback ports, an nginx upstream, wrk rows.
# Source it after setting $work (a temp dir) and the pids array.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_upstream PORT: nginx (2 workers) answering a small JSON body from memory.
start_upstream() {
  mkdir -p "$work/up"
  cat > "$work/up/nginx.conf" <<CONF
worker_processes 2;
pid $work/up/nginx.pid;
error_log $work/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$1;
    location / { default_type application/json; return 200 '{"id":42,"sku":"SKU-42","title":"Kettle","price_cents":2599}'; }
  }
}
CONF
  nginx -c "$work/up/nginx.conf" -g 'daemon off;' & pids+=($!)
}

wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# wrk_row NAME URL [WRK ARGS...]: warm up, measure, print a Markdown row.
wrk_row() {
  local name=$1 url=$2
  shift 2
  wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null
  wrk -t1 -c"$conns" -d"${duration}s" --latency "$@" "$url" > "$work/wrk.txt"
  python3 - "$name" "$work/wrk.txt" <<'PY'
import re, sys
name, path = sys.argv[1], sys.argv[2]
t = open(path).read()
def ms(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.search(r"[a-z]+", v).group()
    return n * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
lat = {p: ms(re.search(rf"\s{p}%\s+(\S+)", t).group(1)) for p in ("50", "90", "99")}
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: (.*)", t)
print(f"| {name} | {rps:,.0f} | {lat['50']:.2f} | {lat['90']:.2f} | {lat['99']:.2f} | {errs.group(1) if errs else 0}{' ('+sock.group(1)+')' if sock else ''} |")
PY
}
