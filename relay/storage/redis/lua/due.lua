-- Read what may be due in many slots' expiry indexes at once (the sweep; read-only).
-- Single Redis: KEYS are the expiry index keys (xi) of many slots; ARGV: now, most members
-- per key. Redis Cluster (one call per node, over the slots it serves): KEYS[1] is one of
-- them (a script may declare keys of one slot only; allow-cross-slot-keys lets it reach the
-- others of its node), ARGV: now, most, the key head "<prefix>xi:{" and the slot tags
-- joined by commas, from which the keys are built. Returns {i1, rid1, i2, rid2, ...}: the
-- position of the key (from 1) and the rid of each due member.
local now, most = ARGV[1], tonumber(ARGV[2])
local keys = {}
if #ARGV >= 4 then
  for t in string.gmatch(ARGV[4], '[^,]+') do keys[#keys + 1] = ARGV[3] .. t .. '}' end
else
  keys = KEYS
end
local out = {}
for i = 1, #keys do
  local due = redis.call('ZRANGEBYSCORE', keys[i], '-inf', now, 'LIMIT', 0, most)
  for _, rid in ipairs(due) do
    out[#out + 1] = i
    out[#out + 1] = rid
  end
end
return out
