-- Delete a mailbox and all its data keys (prekeys, capability hashes and bans included) at
-- once. KEYS: every key of the mailbox (m first). ARGV[1]: the expected send id, or '' for
-- any. Returns {1, sid} if a record was deleted, {0, ''} otherwise (leftover data keys of the
-- tag are deleted in both cases).
local rec = redis.call('HGET', KEYS[1], 'sid')
if rec and ARGV[1] ~= '' and rec ~= ARGV[1] then
  return {0, ''}
end
redis.call('DEL', unpack(KEYS))
if rec then
  return {1, rec}
end
return {0, ''}
