-- report.lua: prints one machine-readable line when a wrk run ends, so
-- run.sh need not parse wrk's human-readable report. Loaded by every run
-- (directly with -s, or through dofile from fresh.lua); it adds no
-- per-request work.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d non2xx=%d errors=%d p50_us=%d p99_us=%d\n",
      summary.requests, summary.duration, e.status,
      e.connect + e.read + e.write + e.timeout,
      latency:percentile(50.0), latency:percentile(99.0)))
end
