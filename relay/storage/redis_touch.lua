-- Record owner activity. ARGV: now, idle ttl, today, mailbox key ttl. KEYS: m, k, p (the
-- prekey keys live as long as the mailbox record, so their TTL moves with it).
-- Returns the send id when the active day moved (the caller refreshes the index key TTL),
-- false otherwise.
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
redis.call('EXPIRE', m, ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return rec[1]
