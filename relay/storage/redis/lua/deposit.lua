-- The checks run in the order of relay/storage/policy.py DEPOSIT_CHECKS (asserted by the contract
-- suite on both backends); keep the two in step.
-- Deposit: kind checks, dedupe check, quota check, seq assignment, insert, counters and key
-- expiry in one atomic step. KEYS: m, q, e, x, d, y, a (capability hashes), n (banned
-- handles), xi (the expiry index of the slot), g (the gauges). ARGV: named, read from the
-- table A (relay/storage/redis/argv.py DepositArgv).
-- Returns {0, seq, ts} stored, {1, seq, ts} duplicate, {-1} no mailbox, {-2} quota (mailbox
-- or daily allowance), {-3} contact request without a handle, {-4} boundary (addr; pair: attachments without the attachment capability), {-5} proof of
-- work, {-6} refused like an unknown mailbox (pair: capability missing or not registered;
-- addr: banned handle; any kind: suspended by a moderator), {-7, kind} the stamp was
-- computed for another kind than the mailbox's (nothing stored).
-- Safe to retry: a retry of a deposit that was applied finds its dedupe record.
local m, q, e, x, d, y = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local eid, blob = A.eid, A.blob
local size, now = tonumber(A.size), tonumber(A.now)
local exp, dexp = tonumber(A.expires_at), tonumber(A.dedupe_until)
local max_n, max_b, idle = tonumber(A.max_envelopes), tonumber(A.max_bytes), tonumber(A.idle_ttl)

local rec = redis.call('HMGET', m, 'sid', 'ad', 'ls', 'n', 'b', 'kd', 'su', 'g')
if not rec[1] or rec[1] ~= A.sid or idle_expired(tonumber(rec[2]), now, idle) then
  return {-1}
end
if rec[7] then
  return {-6}
end
local kind = rec[6]
local counted = nil  -- addr: requests stored today before this one (-1: allowance used up)
if kind == 'pair' then
  if A.cap_hash == '' or redis.call('SISMEMBER', KEYS[7], A.cap_hash) == 0 then
    return {-6}
  end
  if tonumber(A.attachments) > 0 and
      (A.att_cap_hash == '' or redis.call('SISMEMBER', KEYS[7], A.att_cap_hash) == 0) then
    return {-4}  -- media off for this contact (revision 8)
  end
elseif kind == 'addr' then
  if A.handle == '' then
    return {-3}
  end
  local bnd = redis.call('HMGET', m, 'bs', 'ba', 'bd', 'bp', 'rd', 'rc')
  if size > tonumber(bnd[1]) or (tonumber(A.attachments) > 0 and bnd[2] == '0') then
    return {-4}
  end
  if tonumber(bnd[4]) > tonumber(A.pow_bits) then
    return {-5}
  end
  if redis.call('SISMEMBER', KEYS[8], A.handle) == 1 then
    return {-6}
  end
  counted = 0
  if bnd[5] == A.today then
    counted = tonumber(bnd[6])
  end
  if counted >= tonumber(bnd[3]) then
    counted = -1
  end
  blob = A.blob_with_handle
end
local dup = redis.call('HGET', d, eid)
if dup then
  local seq, ts, until_ = string.match(dup, '^(%d+):(%d+):(%d+)')
  if now < tonumber(until_) then
    return {1, tonumber(seq), tonumber(ts)}
  end
end
if A.stamp_kind ~= '' and A.stamp_kind ~= (kind or 'open') then
  return {-7, kind or 'open'}
end
if counted == -1 then
  return {-2}
end
local n, b = tonumber(rec[4]), tonumber(rec[5])
if n + 1 > max_n or b + size > max_b then
  local fn, fb = remove_expired(q, e, x, now)
  n, b = n - fn, b - fb
  gauge(KEYS[10], rec[8], 0, -fn, -fb)
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
  redis.call('HSET', m, 'rd', A.today, 'rc', counted + 1)
end
redis.call('ZADD', q, seq, seq)
redis.call('HSET', e, seq, blob)
redis.call('ZADD', x, exp, seq)
-- The dedupe record maps eid -> seq; with a recall hash (revision 15) it carries it as a
-- fourth field, "seq:ts:expiry:<rc hex>" (lua/recall.lua).
local drec = seq .. ':' .. now .. ':' .. dexp
if A.rc ~= '' then
  drec = drec .. ':' .. A.rc
end
redis.call('HSET', d, eid, drec)
redis.call('ZADD', y, dexp, eid)
prune_dedupe(d, y, now, 8)
keep_alive(q, A.envelope_key_ttl)
keep_alive(e, A.envelope_key_ttl)
keep_alive(x, A.envelope_key_ttl)
keep_alive(d, A.dedupe_key_ttl)
keep_alive(y, A.dedupe_key_ttl)
gauge(KEYS[10], rec[8], 0, 1, size)
keep_alive(KEYS[10], A.index_ttl)
due_by(KEYS[9], A.rid, math.min(exp, dexp), A.index_ttl)
return {0, seq, now}
