-- Record owner activity. ARGV: now, idle ttl, today, mailbox key ttl, index ttl. KEYS: m, then
-- the keys that live as long as the mailbox record (prekeys, capability hashes, bans), whose
-- TTL moves with it, then xi (the expiry index of the slot) and g (the gauges), which must
-- outlive it. Returns the send id when the active day moved (the caller refreshes the index key
-- TTL), false otherwise.
local m = KEYS[1]
local now, idle, today = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rec = redis.call('HMGET', m, 'sid', 'ad')
if not rec[1] then
  return false
end
local ad = tonumber(rec[2])
if idle_expired(ad, now, idle) or ad >= today then
  return false
end
redis.call('HSET', m, 'ad', today)
for i = 1, 5 do
  redis.call('EXPIRE', KEYS[i], ARGV[4])
end
keep_alive(KEYS[6], ARGV[5])
keep_alive(KEYS[7], ARGV[5])
return rec[1]
