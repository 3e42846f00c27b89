-- Create a mailbox record. KEYS: every key of the mailbox (m first). ARGV: sid, owner key,
-- created day, now, idle ttl, active day, mailbox key ttl, kind ('open', 'pair', 'addr'),
-- and for 'addr' the boundaries: size, att, day, pow.
-- Returns 1 (created, or the same record already exists: a retry) or 0 (the receive id
-- belongs to a live mailbox). An idle-expired record and any leftover data keys of the tag
-- are removed first, so a reused id behaves like a new one.
local m = KEYS[1]
local now, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
local rec = redis.call('HMGET', m, 'sid', 'ok', 'cd', 'ad')
if rec[1] and not idle_expired(tonumber(rec[4]), now, idle) then
  if rec[1] == ARGV[1] and rec[2] == ARGV[2] and rec[3] == ARGV[3] then
    return 1
  end
  return 0
end
redis.call('DEL', unpack(KEYS))
redis.call('HSET', m, 'sid', ARGV[1], 'ok', ARGV[2], 'cd', ARGV[3], 'ad', ARGV[6],
  'ls', 0, 'n', 0, 'b', 0)
if ARGV[8] ~= 'open' then
  redis.call('HSET', m, 'kd', ARGV[8])
end
if ARGV[8] == 'addr' then
  redis.call('HSET', m, 'bs', ARGV[9], 'ba', ARGV[10], 'bd', ARGV[11], 'bp', ARGV[12])
end
redis.call('EXPIRE', m, ARGV[7])
return 1
