-- wrk script: send `depth` requests back to back per write (HTTP/1.1 pipelining),
-- as TechEmpower's plaintext test does. Usage: wrk -s pipeline.lua URL -- 16
local depth = 1
local batch = nil

init = function(args)
  depth = tonumber(args[1]) or 1
  local one = wrk.format(nil, nil, {["Connection"] = "keep-alive"})
  batch = string.rep(one, depth)
end

request = function()
  return batch
end
