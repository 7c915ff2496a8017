-- wrk script for Q2: each request fetches one signal by an id drawn at random from a file.
local ids = {}
for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
  ids[#ids + 1] = line
end
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
init = function()
  math.randomseed(os.time() * 1000 + (seed or 0))
end
request = function()
  return wrk.format("GET", "/v1/signals/" .. ids[math.random(#ids)])
end
