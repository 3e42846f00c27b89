-- Read what may be due in many slots' expiry indexes at once (the sweep; read-only). KEYS:
-- expiry index keys (xi) of many slots. ARGV: now, most members per key. Returns {i1, rid1,
-- i2, rid2, ...}: the position in KEYS and the rid of each due member. On Redis Cluster the
-- caller passes the index keys of one node's slots only (allow-cross-slot-keys).
local now, most = ARGV[1], tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, most)
  for _, rid in ipairs(due) do
    out[#out + 1] = i
    out[#out + 1] = rid
  end
end
return out
