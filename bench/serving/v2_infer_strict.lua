-- wrk script: POST a V2 (Open Inference Protocol) JSON infer request, strictly.
-- Same request and RESULT line as the shared kit's v2_infer.lua, plus:
--   * every response whose status is not 2xx is counted (wrk itself only counts >= 400),
--     and the first one is kept (status + start of the body) for the report;
--   * a run with any non-2xx response or socket error (connect/read/write/timeout) prints
--     "INVALID RUN" on stderr and makes wrk exit with status 3.
-- Body file path from env BODY (default ./request_1row.json).
-- Env AUTH, if set and not empty, is sent as the Authorization header's whole value
-- (e.g. "Bearer keel_..."); keep it out of logs.
local path = os.getenv("BODY") or "request_1row.json"
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  first_bad = ""
end

function response(status, headers, resp_body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(resp_body or "", 1, 160)
    end
  end
end

done = function(summary, latency, requests)
  local s = summary
  local sock = s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout
  local n, first = 0, ""
  for _, t in ipairs(threads) do
    n = n + (t:get("non2xx") or 0)
    local fb = t:get("first_bad") or ""
    if first == "" and fb ~= "" then first = fb end
  end
  io.write(string.format(
    "RESULT requests=%d duration_s=%.2f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f mean_ms=%.3f errors=%d non2xx=%d socket_errors=%d status_ge400=%d\n",
    s.requests, s.duration / 1e6, s.requests / (s.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
    sock + n, n, sock, s.errors.status))
  io.stdout:flush()
  if n > 0 or sock > 0 then
    io.stderr:write(string.format(
      "INVALID RUN: %d non-2xx responses, %d socket errors (connect %d read %d write %d timeout %d); first non-2xx: %s\n",
      n, sock, s.errors.connect, s.errors.read, s.errors.write, s.errors.timeout, first))
    io.stderr:flush()
    os.exit(3)
  end
end
