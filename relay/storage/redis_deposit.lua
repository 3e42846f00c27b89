-- Deposit: kind checks, dedupe check, quota check, seq assignment, insert, counters and key
-- expiry in one atomic step. KEYS: m, q, e, x, d, y, a (capability hashes), n (banned
-- handles). ARGV: sid, eid, blob, size, now, envelope expiry, dedupe expiry, max envelopes,
-- max bytes, idle ttl, envelope keys ttl, dedupe keys ttl, capability hash (or ''), handle
-- (or ''), attachments referenced, proof-of-work bits verified, today, blob with the handle
-- (or '': stored instead of the blob for contact requests), the mailbox kind the blob's
-- relay franking stamp was computed for (or '': no stamp; revision 4).
-- Returns {0, seq, ts} stored, {1, seq, ts} duplicate, {-1} no mailbox, {-2} quota (mailbox
-- or daily allowance), {-3} contact request without a handle, {-4} boundary, {-5} proof of
-- work, {-6} refused like an unknown mailbox (pair: capability missing or not registered;
-- addr: banned handle; any kind: suspended by a moderator), {-7, kind} the stamp was
-- computed for another kind than the mailbox's (nothing stored).
-- Safe to retry: a retry of a deposit that was applied finds its dedupe record.
local m, q, e, x, d, y = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local eid, blob = ARGV[2], ARGV[3]
local size, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local exp, dexp = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_n, max_b, idle = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])

local rec = redis.call('HMGET', m, 'sid', 'ad', 'ls', 'n', 'b', 'kd', 'su')
if not rec[1] or rec[1] ~= ARGV[1] or idle_expired(tonumber(rec[2]), now, idle) then
  return {-1}
end
if rec[7] then
  return {-6}
end
local kind = rec[6]
local counted = nil  -- addr: requests stored today before this one (-1: allowance used up)
if kind == 'pair' then
  if ARGV[13] == '' or redis.call('SISMEMBER', KEYS[7], ARGV[13]) == 0 then
    return {-6}
  end
elseif kind == 'addr' then
  if ARGV[14] == '' then
    return {-3}
  end
  local bnd = redis.call('HMGET', m, 'bs', 'ba', 'bd', 'bp', 'rd', 'rc')
  if size > tonumber(bnd[1]) or (tonumber(ARGV[15]) > 0 and bnd[2] == '0') then
    return {-4}
  end
  if tonumber(bnd[4]) > tonumber(ARGV[16]) then
    return {-5}
  end
  if redis.call('SISMEMBER', KEYS[8], ARGV[14]) == 1 then
    return {-6}
  end
  counted = 0
  if bnd[5] == ARGV[17] then
    counted = tonumber(bnd[6])
  end
  if counted >= tonumber(bnd[3]) then
    counted = -1
  end
  blob = ARGV[18]
end
local dup = redis.call('HGET', d, eid)
if dup then
  local seq, ts, until_ = string.match(dup, '^(%d+):(%d+):(%d+)$')
  if now < tonumber(until_) then
    return {1, tonumber(seq), tonumber(ts)}
  end
end
if ARGV[19] ~= '' and ARGV[19] ~= (kind or 'open') then
  return {-7, kind or 'open'}
end
if counted == -1 then
  return {-2}
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
if counted ~= nil then
  redis.call('HSET', m, 'rd', ARGV[17], 'rc', counted + 1)
end
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
