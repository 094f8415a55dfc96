-- sessions.lua: wrk script for bench/compare.sh; sends session cookies the
-- way browsers would.
--
-- usage: wrk -tT -cC -dDs -s sessions.lua URL -- PATH MODE T COOKIE...
--   PATH    /incr or /read
--   MODE    none  no cookie at all (the bare baseline)
--           fixed server-side sessions: the COOKIEs are split evenly between
--                 the T threads and each thread sends its sessions in turn,
--                 one request each, so with as many sessions as connections
--                 a session rarely has two requests in flight (one visitor,
--                 one tab). The cookie holds only an id and does not change;
--                 Set-Cookie headers are counted but not followed.
--           jar   client-side sessions: one cookie jar per thread, started
--                 from that thread's COOKIE, and every Set-Cookie in a
--                 response replaces the jar's value, so the newest
--                 re-issued cookie is always the one sent.
--   COOKIE  "name=value; name2=value2" as a browser's Cookie header
--
-- done() prints one line "RESULT key=value ..." (latencies in microseconds).

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

local reqs = {}       -- prepared requests of this thread
local next_req = 1
local path, mode = "/", "none"
set_cookies = 0       -- global: read by done() through thread:get

local function build(cookie)
  if cookie == nil or cookie == "" then
    return wrk.format("GET", path)
  end
  return wrk.format("GET", path, { ["Cookie"] = cookie })
end

function init(args)
  path = args[1] or "/"
  mode = args[2] or "none"
  local nthreads = tonumber(args[3] or "1")
  local cookies = {}
  for i = 4, #args do cookies[#cookies + 1] = args[i] end
  local me = tid or 1
  if mode == "fixed" then
    for i, c in ipairs(cookies) do
      if (i - 1) % nthreads == me - 1 then reqs[#reqs + 1] = build(c) end
    end
  elseif mode == "jar" then
    reqs[1] = build(cookies[((me - 1) % #cookies) + 1])
  end
  if #reqs == 0 then reqs[1] = build(nil) end
end

function request()
  local r = reqs[next_req]
  next_req = next_req + 1
  if next_req > #reqs then next_req = 1 end
  return r
end

function response(status, headers, body)
  for k, v in pairs(headers) do
    if #k == 10 and k:lower() == "set-cookie" then
      set_cookies = set_cookies + 1
      if mode == "jar" then
        local name, value = v:match("^%s*([^=;%s]+)=([^;]*)")
        if name and value ~= "" then reqs[1] = build(name .. "=" .. value) end
      end
    end
  end
end

function done(summary, latency, requests)
  local sc = 0
  for _, t in ipairs(threads) do sc = sc + (t:get("set_cookies") or 0) end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d " ..
    "errors=%d status_errors=%d set_cookies=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status, sc))
end
