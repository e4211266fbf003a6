-- Load where every request is timed in Lua: constant arrival rate, scenarios
-- with weighted steps, and linear ramp-up.
--
-- The controller runs wrk with exactly one connection per thread. Each thread
-- has its own Lua state, so request() and response() in a thread always belong
-- to the same connection and the same request: that pairing is what lets the
-- script time each request itself, attribute it to a scenario step, and
-- measure from the moment the schedule meant it to start.

local spec = nself_spec
local timeout_us = spec.timeout * 1e6
local interval = spec.sample_interval
local hist_k = spec.hist_k

local prepared = {}
local unique = {}
local cursor = {}
local cumulative = {}
local start_at
local period
local next_intended
local conn_free_at

-- Globals, so that done() can read them through thread:get(). wrk's copy of
-- a table between Lua states breaks on nested tables, so every one of these is
-- flat, numbers keyed by numbers:
--   stats[(step - 1) * NFIELDS + field]       counters per step
--   hist[step * HIST_SPAN + bucket]           latency histogram per step
--   samples[(slot * MAX_STEPS + step) * 4 + k] per interval: n, errors,
--                                              latency sum, timed count
--   lag_hist[bucket]                          generator lag histogram
thread_index = 0
stats = {}
hist = {}
samples = {}
lag_hist = {}
lag_n, lag_sum, lag_max = 0, 0, 0
backlogged = 0
issued = 0
pending_step = 0
pending_start = 0

-- wrk calls request() once on its first thread right after init() to check
-- the request it returns, and never sends it. Every real first request comes
-- after a call to delay(), so a request() before any delay() is that check.
local delay_called = false

local FIELDS = {"n", "s2", "s3", "s4", "s5", "other", "errors", "failed",
                "timeouts", "hung", "lat_sum"}
local NFIELDS = #FIELDS
local F = {}
for i, name in ipairs(FIELDS) do
  F[name] = i
end
local HIST_SPAN = 100000
local MAX_STEPS = 64

local function bucket(us)
  if us < 1 then
    us = 1
  end
  return math.floor(math.log(us) * hist_k)
end

local function bump(step, name, by)
  local key = (step - 1) * NFIELDS + F[name]
  stats[key] = stats[key] + (by or 1)
end

local function record_sample(now, step, us, is_error)
  local slot = math.floor((now - spec.origin) / interval)
  local base = (slot * MAX_STEPS + step) * 4
  samples[base] = (samples[base] or 0) + 1
  if is_error then
    samples[base + 1] = (samples[base + 1] or 0) + 1
  end
  if us then
    samples[base + 2] = (samples[base + 2] or 0) + us
    samples[base + 3] = (samples[base + 3] or 0) + 1
  end
end

-- The schedule of a connection starts when it is first ready to send, so
-- that the time wrk takes to start its threads is not counted as latency.
local function start_schedule(now)
  local n = spec.connections
  -- Connection i of n starts i/n of the way through the ramp: the number of
  -- active connections grows linearly from one to n over ramp_up seconds.
  start_at = now + spec.ramp_up * thread_index / n
  conn_free_at = start_at
  if spec.rate > 0 then
    -- Each connection carries rate/n requests per second; the phases are
    -- spread so the n schedules interleave instead of firing together.
    period = n / spec.rate
    next_intended = start_at + period * thread_index / n
  end
end

-- A unique step's variants are shared out: connection i of n keeps variants
-- i+1, i+1+n, i+1+2n, ... and sends them in turn, so no variant is sent twice
-- before a connection has used up its share. With more connections than
-- variants, each keeps one.
local function share(step)
  local n = spec.connections
  local mine = {}
  for j, r in ipairs(step.requests) do
    if (j - 1) % n == thread_index then
      mine[#mine + 1] = r
    end
  end
  if #mine == 0 then
    mine[1] = step.requests[thread_index % #step.requests + 1]
  end
  return mine
end

function init(args)
  local total = 0
  for i, step in ipairs(spec.steps) do
    prepared[i] = {}
    unique[i] = step.unique
    cursor[i] = 0
    local requests = step.unique and share(step) or step.requests
    for j, r in ipairs(requests) do
      prepared[i][j] = wrk.format(r.method, r.path, r.headers, r.body)
    end
    -- Only the prepared strings are needed from here on.
    step.requests = nil
    for f = 1, NFIELDS do
      stats[(i - 1) * NFIELDS + f] = 0
    end
    total = total + step.weight
  end
  local running = 0
  for i, step in ipairs(spec.steps) do
    running = running + step.weight / total
    cumulative[i] = running
  end
  cumulative[#cumulative] = 1
  collectgarbage()

  math.randomseed(spec.seed + thread_index * 7919)
  nself_ready(thread_index)
end

function delay()
  local now = nself_now()
  if not delay_called then
    delay_called = true
    start_schedule(now)
  end
  local target
  if period then
    target = next_intended
  elseif issued == 0 then
    target = start_at
  else
    return 0
  end
  if target <= now then
    return 0
  end
  -- wrk takes whole milliseconds. Rounding down lets a request leave up to a
  -- millisecond before its intended start (it is then timed from its actual
  -- send, see response()); rounding up would add up to a millisecond of our
  -- own to every request's latency.
  return math.floor((target - now) * 1000)
end

function request()
  if not delay_called then
    return prepared[1][1]
  end
  local now = nself_now()
  if pending_step > 0 then
    -- A new request while the last one is unanswered: wrk reconnected after a
    -- connect, read or write failure, and that request is lost.
    bump(pending_step, "failed")
    record_sample(now, pending_step, nil, true)
  end

  local r = math.random()
  local step = #cumulative
  for i = 1, #cumulative do
    if r < cumulative[i] then
      step = i
      break
    end
  end

  -- Where this request's latency is counted from. In a closed loop that is
  -- the send. At a fixed rate it is the intended start: time spent waiting
  -- for a connection the server kept busy is latency, as a user would see
  -- it. Time we ourselves were late after the connection was free and the
  -- start was due is not the server's: it is left out of latency and shown
  -- as the generator's schedule lag instead (saturated when it grows).
  local start = now
  if period then
    local intended = next_intended
    next_intended = next_intended + period
    local ready = intended
    if conn_free_at > intended then
      backlogged = backlogged + 1
      ready = conn_free_at
    end
    local late = now - ready
    if late < 0 then
      -- Sent up to a millisecond early by the timer, or at once after a
      -- reconnect: timed from the actual send.
      late = 0
    end
    if now >= intended then
      start = intended + late
    end
    local late_us = late * 1e6
    lag_n = lag_n + 1
    lag_sum = lag_sum + late_us
    if late_us > lag_max then
      lag_max = late_us
    end
    local key = bucket(late_us)
    lag_hist[key] = (lag_hist[key] or 0) + 1
  end

  pending_step = step
  pending_start = start
  issued = issued + 1
  local variants = prepared[step]
  if unique[step] then
    cursor[step] = cursor[step] % #variants + 1
    return variants[cursor[step]]
  end
  return variants[math.random(#variants)]
end

function response(status, headers, body)
  local now = nself_now()
  local step = pending_step
  if step == 0 then
    return
  end
  pending_step = 0
  conn_free_at = now

  local us = (now - pending_start) * 1e6
  bump(step, "n")
  if status >= 200 and status < 300 then
    bump(step, "s2")
  elseif status >= 300 and status < 400 then
    bump(step, "s3")
  elseif status >= 400 and status < 500 then
    bump(step, "s4")
  elseif status >= 500 and status < 600 then
    bump(step, "s5")
  else
    bump(step, "other")
  end
  local is_error = status >= 400 or status < 200
  if us >= timeout_us then
    bump(step, "timeouts")
    is_error = true
  end
  if is_error then
    bump(step, "errors")
  end
  bump(step, "lat_sum", us)
  local key = step * HIST_SPAN + bucket(us)
  hist[key] = (hist[key] or 0) + 1
  record_sample(now, step, us, is_error)
end

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local now = nself_now()
  local nsteps = #spec.steps
  local steps = {}
  for i = 1, nsteps do
    steps[i] = {name = spec.steps[i].name, in_flight = 0, hist = {}}
    for _, name in ipairs(FIELDS) do
      steps[i][name] = 0
    end
  end
  local cells = {}
  local lag = {n = 0, sum = 0, max = 0, hist = {}}
  local total_backlogged, total_issued = 0, 0

  for _, thread in ipairs(threads) do
    local st = thread:get("stats")
    for i = 1, nsteps do
      for f, name in ipairs(FIELDS) do
        steps[i][name] = steps[i][name] + (st[(i - 1) * NFIELDS + f] or 0)
      end
    end
    for key, count in pairs(thread:get("hist")) do
      local step = math.floor(key / HIST_SPAN)
      local b = tostring(key - step * HIST_SPAN)
      local h = steps[step].hist
      h[b] = (h[b] or 0) + count
    end

    -- An unanswered request at the end either timed out or was in flight.
    local ps = thread:get("pending_step")
    if ps > 0 then
      if (now - thread:get("pending_start")) * 1e6 >= timeout_us then
        steps[ps].timeouts = steps[ps].timeouts + 1
        steps[ps].hung = steps[ps].hung + 1
      else
        steps[ps].in_flight = steps[ps].in_flight + 1
      end
    end

    for key, value in pairs(thread:get("samples")) do
      local base = math.floor(key / 4)
      local k = key - base * 4
      local cell = cells[base]
      if not cell then
        local slot = math.floor(base / MAX_STEPS)
        cell = {slot = slot, step = base - slot * MAX_STEPS,
                n = 0, errors = 0, lat_sum = 0, lat_n = 0}
        cells[base] = cell
      end
      local name = ({"n", "errors", "lat_sum", "lat_n"})[k + 1]
      cell[name] = cell[name] + value
    end

    lag.n = lag.n + thread:get("lag_n")
    lag.sum = lag.sum + thread:get("lag_sum")
    local m = thread:get("lag_max")
    if m > lag.max then
      lag.max = m
    end
    for key, count in pairs(thread:get("lag_hist")) do
      local b = tostring(key)
      lag.hist[b] = (lag.hist[b] or 0) + count
    end
    total_backlogged = total_backlogged + thread:get("backlogged")
    total_issued = total_issued + thread:get("issued")
  end

  local sample_list = {}
  for _, cell in pairs(cells) do
    sample_list[#sample_list + 1] = cell
  end

  nself_write(os.getenv("NSELF_BENCH_OUT"), {
    mode = "timed",
    duration_us = summary.duration,
    requests = summary.requests,
    errors = summary.errors,
    steps = steps,
    samples = sample_list,
    lag = lag,
    backlogged = total_backlogged,
    issued = total_issued,
  })
end
