-- Deposit: dedupe check, quota check, seq assignment, insert, counters and key expiry in one
-- atomic step. ARGV: sid, eid, blob, size, now, envelope expiry, dedupe expiry, max
-- envelopes, max bytes, idle ttl, envelope keys ttl, dedupe keys ttl.
-- Returns {0, seq, ts} stored, {1, seq, ts} duplicate, {-1} no mailbox, {-2} quota.
-- Safe to retry: a retry of a deposit that was applied finds its dedupe record.
local m, q, e, x, d, y = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local eid, blob = ARGV[2], ARGV[3]
local size, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local exp, dexp = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_n, max_b, idle = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])

local rec = redis.call('HMGET', m, 'sid', 'ad', 'ls', 'n', 'b')
if not rec[1] or rec[1] ~= ARGV[1] or idle_expired(tonumber(rec[2]), now, idle) then
  return {-1}
end
local dup = redis.call('HGET', d, eid)
if dup then
  local seq, ts, until_ = string.match(dup, '^(%d+):(%d+):(%d+)$')
  if now < tonumber(until_) then
    return {1, tonumber(seq), tonumber(ts)}
  end
end
local n, b = tonumber(rec[4]), tonumber(rec[5])
if n + 1 > max_n or b + size > max_b then
  local fn, fb = remove_expired(q, e, x, now)
  n, b = n - fn, b - fb
  if n + 1 > max_n or b + size > max_b then
    if fn > 0 then
      redis.call('HSET', m, 'n', n, 'b', b)
    end
    return {-2}
  end
end
local seq = tonumber(rec[3]) + 1
redis.call('HSET', m, 'ls', seq, 'n', n + 1, 'b', b + size)
redis.call('ZADD', q, seq, seq)
redis.call('HSET', e, seq, blob)
redis.call('ZADD', x, exp, seq)
redis.call('HSET', d, eid, seq .. ':' .. now .. ':' .. dexp)
redis.call('ZADD', y, dexp, eid)
prune_dedupe(d, y, now, 8)
redis.call('EXPIRE', q, ARGV[11])
redis.call('EXPIRE', e, ARGV[11])
redis.call('EXPIRE', x, ARGV[11])
redis.call('EXPIRE', d, ARGV[12])
redis.call('EXPIRE', y, ARGV[12])
return {0, seq, now}
