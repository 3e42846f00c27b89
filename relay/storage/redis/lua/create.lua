-- Create a mailbox record. KEYS: every key of the mailbox (m first). ARGV: named, read from
-- the table A (relay/storage/redis/argv.py CreateArgv); kind is 'open', 'pair' or 'addr'.
-- Returns 1 (created, or the same record already exists: a retry) or 0 (the receive id
-- belongs to a live mailbox). An idle-expired record and any leftover data keys of the tag
-- are removed first, so a reused id behaves like a new one.
local m = KEYS[1]
local now, idle = tonumber(A.now), tonumber(A.idle_ttl)
local rec = redis.call('HMGET', m, 'sid', 'ok', 'cd', 'ad')
if rec[1] and not idle_expired(tonumber(rec[4]), now, idle) then
  if rec[1] == A.sid and rec[2] == A.owner_key and rec[3] == A.created_day then
    return 1
  end
  return 0
end
redis.call('DEL', unpack(KEYS))
redis.call('HSET', m, 'sid', A.sid, 'ok', A.owner_key, 'cd', A.created_day, 'ad', A.today,
  'ls', 0, 'n', 0, 'b', 0)
if A.kind ~= 'open' then
  redis.call('HSET', m, 'kd', A.kind)
end
if A.kind == 'addr' then
  redis.call('HSET', m, 'bs', A.size, 'ba', A.att, 'bd', A.day, 'bp', A.pow)
end
redis.call('EXPIRE', m, A.key_ttl)
return 1
