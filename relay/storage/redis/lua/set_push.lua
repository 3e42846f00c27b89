-- Register (ARGV: url, token) or, with no ARGV, forget the push endpoint of a mailbox: the
-- fields pu and pt of its record hash KEYS[1], so it goes with the record (deleted, expired).
-- Returns 1, or 0 if the record does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if #ARGV == 0 then
  redis.call('HDEL', KEYS[1], 'pu', 'pt')
else
  redis.call('HSET', KEYS[1], 'pu', ARGV[1], 'pt', ARGV[2])
end
return 1
