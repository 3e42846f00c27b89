-- Create a mailbox record. KEYS: every key of the mailbox (m first, 10 keys), then xi (the
-- expiry index of its slot) and g (the gauges). ARGV: named, read from the table A
-- (relay/storage/redis/argv.py CreateArgv); kind is 'open', 'pair' or 'addr'.
-- Returns 1 (created, or the same record already exists: a retry) or 0 (the receive id
-- belongs to a live mailbox). An idle-expired record and any leftover data keys of the tag
-- are removed first (and leave the gauges), so a reused id behaves like a new one.
local m, xi, g = KEYS[1], KEYS[11], KEYS[12]
local now, idle = tonumber(A.now), tonumber(A.idle_ttl)
local rec = redis.call('HMGET', m, 'sid', 'ok', 'cd', 'ad', 'n', 'b', 'g')
if rec[1] and not idle_expired(tonumber(rec[4]), now, idle) then
  if rec[1] == A.sid and rec[2] == A.owner_key and rec[3] == A.created_day then
    return 1
  end
  return 0
end
if rec[1] then
  gauge(g, rec[7], -1, -tonumber(rec[5]), -tonumber(rec[6]))
end
redis.call('UNLINK', unpack(KEYS, 1, 10))
redis.call('HSET', m, 'sid', A.sid, 'ok', A.owner_key, 'cd', A.created_day, 'ad', A.today,
  'ls', 0, 'n', 0, 'b', 0, 'g', 1)
if A.kind ~= 'open' then
  redis.call('HSET', m, 'kd', A.kind)
end
if A.kind == 'addr' then
  redis.call('HSET', m, 'bs', A.size, 'ba', A.att, 'bd', A.day, 'bp', A.pow)
end
redis.call('EXPIRE', m, A.key_ttl)
gauge(g, true, 1, 0, 0)
keep_alive(g, A.index_ttl)
due_by(xi, A.rid, (tonumber(A.today) + 1) * DAY + idle, A.index_ttl)
return 1
