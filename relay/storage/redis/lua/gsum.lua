-- Sum the gauges hashes (g) of many hash slots (Redis Cluster: one call per node, over the
-- slots it serves; read-only). KEYS[1]: one gauges key; ARGV: the others (a script may
-- declare keys of one slot only; allow-cross-slot-keys lets it reach the others of its
-- node). Returns {m, n, b}.
local m, n, b = 0, 0, 0
local function add(key)
  local v = redis.call('HMGET', key, 'm', 'n', 'b')
  m = m + (tonumber(v[1]) or 0)
  n = n + (tonumber(v[2]) or 0)
  b = b + (tonumber(v[3]) or 0)
end
for i = 1, #KEYS do add(KEYS[i]) end
for i = 1, #ARGV do add(ARGV[i]) end
return {m, n, b}
