-- Prekey upload, all or nothing. KEYS: m, k, p. ARGV: upload token, now, idle ttl, replace
-- (0/1), max items, fallback key ttl (s), has static (0/1), static (or ''), items...
-- Returns {0, items held, static held (0/1)}, {-1} no mailbox, {-2} quota (nothing changed).
-- Safe to retry: a retry of an applied upload finds its token and changes nothing.
local m, k, p = KEYS[1], KEYS[2], KEYS[3]
local now, idle = tonumber(ARGV[2]), tonumber(ARGV[3])
local ad = redis.call('HGET', m, 'ad')
if not ad or idle_expired(tonumber(ad), now, idle) then
  return {-1}
end
if redis.call('HGET', k, 'u') == ARGV[1] then
  return {0, redis.call('LLEN', p), redis.call('HEXISTS', k, 's')}
end
local replace, max_items = ARGV[4] == '1', tonumber(ARGV[5])
local n_new = #ARGV - 8
local held = 0
if not replace then
  held = redis.call('LLEN', p)
end
if n_new > 0 and held + n_new > max_items then
  return {-2}
end
if replace then
  redis.call('DEL', p)
end
if ARGV[7] == '1' then
  redis.call('HSET', k, 's', ARGV[8])
end
redis.call('HSET', k, 'u', ARGV[1])
if n_new > 0 then
  redis.call('RPUSH', p, unpack(ARGV, 9, #ARGV))
end
-- The prekey keys expire with the mailbox record (touch moves all three together).
local ttl = redis.call('PTTL', m)
if ttl <= 0 then
  ttl = tonumber(ARGV[6]) * 1000
end
redis.call('PEXPIRE', k, ttl)
redis.call('PEXPIRE', p, ttl)
return {0, held + n_new, redis.call('HEXISTS', k, 's')}
