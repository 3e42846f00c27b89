-- Store a franking key unless its kid is taken. KEYS: f, fc. ARGV: kid, secret, created,
-- keys ttl. Returns {secret, created} of the key stored under kid (ours or a concurrent
-- rotation's). Safe to retry.
local f, fc, kid = KEYS[1], KEYS[2], ARGV[1]
if redis.call('HSETNX', f, kid, ARGV[2]) == 1 then
  redis.call('HSET', fc, kid, ARGV[3])
  redis.call('EXPIRE', f, ARGV[4])
  redis.call('EXPIRE', fc, ARGV[4])
end
return {redis.call('HGET', f, kid), redis.call('HGET', fc, kid)}
