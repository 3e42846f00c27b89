-- Delete a mailbox and all its data keys (prekeys included) at once. ARGV[1]: the expected send id, or '' for
-- any. Returns {1, sid} if a record was deleted, {0, ''} otherwise (leftover data keys of
-- the tag are deleted in both cases).
local rec = redis.call('HGET', KEYS[1], 'sid')
if rec and ARGV[1] ~= '' and rec ~= ARGV[1] then
  return {0, ''}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
if rec then
  return {1, rec}
end
return {0, ''}
