-- Take or renew the sweeper lease. KEYS[1]: the lease. ARGV: this process's token, lease
-- milliseconds. Returns 1 if this process holds the lease now, 0 if another one does.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
