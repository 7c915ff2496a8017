-- wrk script for Q2: each request fetches one signal by an id drawn at random from a file.
-- The requests are formatted once per thread, so that picking one costs wrk next to nothing
-- (wrk.format on every request costs wrk more CPU than the service spends on answering,
-- and wrk shares the cores with the service).
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
  ids[#ids + 1] = line
end
local requests = {}
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function()
  math.randomseed(os.time() * 1000 + (seed or 0))
  for i, id in ipairs(ids) do
    requests[i] = wrk.format("GET", "/v1/signals/" .. id)
  end
end
request = function()
  return requests[math.random(#requests)]
end
