-- Sum the gauges hashes (g) of many hash slots (Redis Cluster: one call per node, over the
-- slots it serves; read-only). KEYS[1]: one of them (a script may declare keys of one slot
-- only; allow-cross-slot-keys lets it reach the others of its node). ARGV: the key head
-- "<prefix>g:{" and the slot tags joined by commas, from which the keys are built.
-- Returns {m, n, b}.
local m, n, b = 0, 0, 0
for t in string.gmatch(ARGV[2], '[^,]+') do
  local v = redis.call('HMGET', ARGV[1] .. t .. '}', 'm', 'n', 'b')
  m = m + (tonumber(v[1]) or 0)
  n = n + (tonumber(v[2]) or 0)
  b = b + (tonumber(v[3]) or 0)
end
return {m, n, b}
