-- fresh.lua: sends a different token on every request, cycling through the
-- list in $BENCH_TOKENS (one token per line, written by ./mint). The list is
-- many times larger than the validator's caches (10000 verified tokens, 256
-- refusals), so every token arrives evicted: each request pays the full
-- verification or refusal (the first-seen case).
-- The plain baseline runs with this same script, so it pays the same
-- client-side cost and receives the identical headers.
dofile(os.getenv("BENCH_SCRIPTS") .. "/report.lua")

local tokens = {}
local i = 0
local threads = 0

-- setup runs in the main Lua state, once per wrk thread
function setup(thread)
   thread:set("offset", threads)
   threads = threads + 1
end

function init(args)
   for line in io.lines(os.getenv("BENCH_TOKENS")) do
      tokens[#tokens + 1] = "Bearer " .. line
   end
   -- threads start at different places in the list (up to 16 threads)
   i = (offset or 0) * math.floor(#tokens / 16)
end

function request()
   i = i + 1
   if i > #tokens then
      i = 1
   end
   return wrk.format(nil, nil, { ["Authorization"] = tokens[i] })
end
