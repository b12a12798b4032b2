-- Keel's benchmarks drive wrk with this script (tests/bench/outside.py).
--   wrk ... URL -- post PREFIX TOKEN INPUT_JSON   POST a run with a fresh idempotency key each
--   wrk ... URL --                                GET
-- It prints one line, "BENCH_JSON {...}": requests, duration, latency
-- percentiles and the answers that were not what the request expects.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   bad = 0
   first_bad = ""
   if args[1] ~= "post" then
      return
   end
   local prefix, token, input = args[2], args[3], args[4]
   local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}
   local counter = 0
   request = function()
      counter = counter + 1
      local body = string.format('{"input": %s, "idempotency_key": "%s-%d-%d", "source": "bench"}',
                                 input, prefix, id, counter)
      return wrk.format("POST", nil, headers, body)
   end
   response = function(status, _, body)
      if status ~= 201 then
         bad = bad + 1
         if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 300) end
      end
   end
end

function done(summary, latency, _)
   local bad, first_bad = 0, ""
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("bad")
      if first_bad == "" then first_bad = thread:get("first_bad") end
   end
   local errors = summary.errors
   bad = bad + errors.status
   first_bad = string.gsub(string.gsub(first_bad, '\\', '\\\\'), '"', '\\"')
   first_bad = string.gsub(first_bad, "[%c]", " ")
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "bad": %d, '
      .. '"socket_errors": %d, "first_bad": "%s"}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad,
      errors.connect + errors.read + errors.write + errors.timeout, first_bad))
end
