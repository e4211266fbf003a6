-- Closed-loop load at full speed: one request string built once, written again
-- as soon as the previous answer on the same connection is in.
--
-- No response() is defined on purpose: with one, wrk hands every header and
-- body to Lua and throughput drops by a tenth or more. request() only returns
-- the prepared string and counts sends per sample interval, which costs nothing
-- measurable and gives throughput over time (in a closed loop a connection
-- sends its next request right after an answer, so sends per interval track
-- answers per interval). Latency comes from wrk's own microsecond histogram.

local spec = nself_spec
wrk.method = spec.method
wrk.path = spec.path
wrk.headers = spec.headers
wrk.body = spec.body

local prepared
local interval
local cutoff

-- Globals, so that done() can read them through thread:get().
thread_index = 0
sends = {}
sent = 0
sent_early = 0

function init(args)
  prepared = wrk.format()
  interval = spec.sample_interval
  -- Requests sent before this moment and still unanswered at the end have
  -- waited longer than the timeout: wrk itself never counts those.
  cutoff = nself_now() + spec.duration - spec.timeout
  nself_ready(thread_index)
end

-- wrk calls request() once on its first thread right after init() to check
-- the request it returns; that one is never sent, so it is not counted.
local checked = false

function request()
  if not checked then
    checked = true
    if thread_index == 0 then
      return prepared
    end
  end
  local now = nself_now()
  local slot = math.floor((now - spec.origin) / interval)
  sends[slot] = (sends[slot] or 0) + 1
  sent = sent + 1
  if now < cutoff then
    sent_early = sent_early + 1
  end
  return prepared
end

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

local function percentile_grid()
  local grid = {}
  for p = 1, 99 do
    grid[#grid + 1] = p
  end
  for p = 99.1, 99.95, 0.1 do
    grid[#grid + 1] = p
  end
  grid[#grid + 1] = 99.99
  return grid
end

function done(summary, latency, requests)
  local merged = {}
  local total_sent, total_early = 0, 0
  for _, thread in ipairs(threads) do
    for slot, count in pairs(thread:get("sends")) do
      local key = tostring(slot)
      merged[key] = (merged[key] or 0) + count
    end
    total_sent = total_sent + thread:get("sent")
    total_early = total_early + thread:get("sent_early")
  end

  local quantiles = {}
  if summary.requests > 0 then
    for _, p in ipairs(percentile_grid()) do
      quantiles[#quantiles + 1] = {p, latency:percentile(p)}
    end
    quantiles[#quantiles + 1] = {100, latency.max}
  end

  nself_write(os.getenv("NSELF_BENCH_OUT"), {
    mode = "fast",
    duration_us = summary.duration,
    requests = summary.requests,
    bytes = summary.bytes,
    errors = summary.errors,
    sent = total_sent,
    sent_early = total_early,
    latency = {
      min = latency.min,
      max = latency.max,
      mean = latency.mean,
      stdev = latency.stdev,
      quantiles = quantiles,
    },
    sends = merged,
  })
end
