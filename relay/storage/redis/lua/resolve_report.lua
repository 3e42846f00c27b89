-- Resolve an open report with its audit entry. KEYS: r, rr, ro, au, as. ARGV: id, resolution
-- blob, report keys ttl, then the audit entry: ts, moderator, action, report id, detail,
-- audit keys ttl. Returns 0 resolved, -1 no such report, -2 already resolved.
local r, rr, ro, au, as = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[1]
if redis.call('HEXISTS', r, id) == 0 then
  return -1
end
if redis.call('HEXISTS', rr, id) == 1 then
  return -2
end
redis.call('HSET', rr, id, ARGV[2])
redis.call('EXPIRE', rr, ARGV[3])
redis.call('ZREM', ro, id)
append_audit(au, as, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return 0
