-- Suspend a mailbox, or lift its suspension (a moderator's action, protocol.md §4.11).
-- KEYS: m. ARGV: sid, now, idle ttl, 1 (suspend) or 0 (lift).
-- Returns 1 done, -1 no live mailbox with this send id (stale index entry or gone).
-- Safe to retry: setting the same state twice changes nothing.
local m = KEYS[1]
local now, idle = tonumber(ARGV[2]), tonumber(ARGV[3])
local rec = redis.call('HMGET', m, 'sid', 'ad')
if not rec[1] or rec[1] ~= ARGV[1] or idle_expired(tonumber(rec[2]), now, idle) then
  return -1
end
if ARGV[4] == '1' then
  redis.call('HSET', m, 'su', 1)
else
  redis.call('HDEL', m, 'su')
end
return 1
