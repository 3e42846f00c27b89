-- Read what may be due in many slots' expiry indexes at once (the sweep; read-only). KEYS:
-- expiry index keys (xi) of many slots; ARGV: now, most members per key, then more index
-- keys. Returns {i1, rid1, i2, rid2, ...}: the position among the keys (KEYS, then the keys
-- in ARGV) and the rid of each due member. On Redis Cluster the caller passes the index keys
-- of one node's slots only, one as KEYS[1] and the rest in ARGV (a script may declare keys
-- of one slot only; allow-cross-slot-keys lets it reach the others of its node).
local now, most = ARGV[1], tonumber(ARGV[2])
local keys = {}
for i = 1, #KEYS do keys[#keys + 1] = KEYS[i] end
for i = 3, #ARGV do keys[#keys + 1] = ARGV[i] end
local out = {}
for i = 1, #keys do
  local due = redis.call('ZRANGEBYSCORE', keys[i], '-inf', now, 'LIMIT', 0, most)
  for _, rid in ipairs(due) do
    out[#out + 1] = i
    out[#out + 1] = rid
  end
end
return out
