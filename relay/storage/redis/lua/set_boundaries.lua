-- Replace the boundaries of a contact address (the daily counter is kept). KEYS: m. ARGV:
-- now, idle ttl, size, att, day, pow. Returns 0, -1 (no mailbox) or -3 (not a contact
-- address).
local m = KEYS[1]
local rec = redis.call('HMGET', m, 'ad', 'kd')
if not rec[1] or idle_expired(tonumber(rec[1]), tonumber(ARGV[1]), tonumber(ARGV[2])) then
  return -1
end
if rec[2] ~= 'addr' then
  return -3
end
redis.call('HSET', m, 'bs', ARGV[3], 'ba', ARGV[4], 'bd', ARGV[5], 'bp', ARGV[6])
return 0
