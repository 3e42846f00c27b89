-- Store a verified report with its audit entry (protocol.md §4.11). KEYS: r, ri, ro, rs (the
-- filing mailbox's ids), au, as. ARGV: id, report blob, created, start of its UTC day, most
-- reports per mailbox and day, report keys ttl, rs ttl, then the audit entry: ts, moderator,
-- action, report id, detail, audit keys ttl.
-- Returns 0 stored, -1 duplicate id, -2 the mailbox's daily allowance is used up.
-- Safe to retry: a retry of an applied insert is a duplicate (the caller already has its id).
local r, ri, ro, rs, au, as = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, created, day = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HEXISTS', r, id) == 1 then
  return -1
end
redis.call('ZREMRANGEBYSCORE', rs, '-inf', '(' .. day)
if redis.call('ZCOUNT', rs, day, day + 86399) >= tonumber(ARGV[5]) then
  return -2
end
redis.call('HSET', r, id, ARGV[2])
redis.call('ZADD', ri, created, id)
redis.call('ZADD', ro, created, id)
redis.call('ZADD', rs, created, id)
for _, key in ipairs({r, ri, ro}) do
  redis.call('EXPIRE', key, ARGV[6])
end
redis.call('EXPIRE', rs, ARGV[7])
append_audit(au, as, ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13])
return 0
