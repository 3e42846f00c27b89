-- Create a mailbox record. ARGV: sid, owner key, created day, now, idle ttl, active day,
-- mailbox key ttl. Returns 1 (created, or the same record already exists: a retry) or 0
-- (the receive id belongs to a live mailbox). An idle-expired record and any leftover data
-- keys of the tag are removed first, so a reused id behaves like a new one.
local m = KEYS[1]
local now, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
local rec = redis.call('HMGET', m, 'sid', 'ok', 'cd', 'ad')
if rec[1] and not idle_expired(tonumber(rec[4]), now, idle) then
  if rec[1] == ARGV[1] and rec[2] == ARGV[2] and rec[3] == ARGV[3] then
    return 1
  end
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
redis.call('HSET', m, 'sid', ARGV[1], 'ok', ARGV[2], 'cd', ARGV[3], 'ad', ARGV[6],
  'ls', 0, 'n', 0, 'b', 0)
redis.call('EXPIRE', m, ARGV[7])
return 1
