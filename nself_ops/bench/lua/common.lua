-- Shared by both load scripts: a monotonic clock and a small JSON writer.
--
-- wrk gives a script no clock of its own, and os.clock() is CPU time, so the
-- scripts read CLOCK_MONOTONIC through LuaJIT's FFI. The call goes through the
-- vDSO and costs tens of nanoseconds, which keeps it off the critical path.

local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } nself_timespec;
int clock_gettime(int clock_id, nself_timespec *tp);
]]

local CLOCK_MONOTONIC = 1
local ts = ffi.new("nself_timespec")

function nself_now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- Tables with a non-empty array part are written as arrays, all others as
-- objects whose keys become strings (JSON allows no other kind of key).
function nself_json(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    if #value > 0 then
      for _, item in ipairs(value) do
        parts[#parts + 1] = nself_json(item)
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for key, item in pairs(value) do
      parts[#parts + 1] = encode_string(tostring(key)) .. ":" .. nself_json(item)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "string" then
    return encode_string(value)
  elseif kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then
      return "null"
    end
    if value == math.floor(value) and math.abs(value) < 2^53 then
      return string.format("%d", value)
    end
    return string.format("%.9g", value)
  elseif kind == "boolean" then
    return tostring(value)
  end
  return "null"
end

function nself_write(path, value)
  local fh = assert(io.open(path, "w"))
  fh:write(nself_json(value))
  fh:close()
end

-- wrk drops every address it cannot connect to before the run and exits when
-- none is left, so a refused port would end the run without a count. Keeping
-- the addresses lets the threads try and count each refused attempt.
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup(host, service)
end

nself_spec = dofile(os.getenv("NSELF_BENCH_SPEC"))

-- Called at the end of each thread's init(): wrk starts its clock right after
-- the last thread is ready, so that moment is written down for the controller,
-- which stops a run of a fractional duration itself (wrk takes whole seconds).
function nself_ready(index)
  if index == nself_spec.threads - 1 then
    local fh = io.open(os.getenv("NSELF_BENCH_READY"), "w")
    if fh then
      fh:write(string.format("%.6f", nself_now()))
      fh:close()
    end
  end
end
