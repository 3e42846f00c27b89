-- Store a challenge. ARGV: value (8-byte expiry || binding), expiry second, slack seconds.
-- The key TTL uses the Redis clock only for garbage collection; take_challenge checks the
-- expiry against the caller's clock.
local ttl = tonumber(ARGV[2]) - tonumber(redis.call('TIME')[1])
if ttl < 1 then
  ttl = 1
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl + tonumber(ARGV[3]))
return 1
