-- Apply a change of an audited setting (PAYG, a user's spend limit); it takes effect for
-- the next rating and decision.
-- KEYS[1]: subscription hash. ARGV: the setting's hash (suffix: 'sub' or 'lim'), its value
-- field, revision field, the new value ('' removes the field), the change's revision ('').
-- Every change bumps the revision. The API publishes the change's event with a reserved
-- revision and then applies it; when the subscriptions agent meets that event again, its
-- revision is not newer than the stored one and it changes nothing. So an older event can
-- never undo a newer change. A change without a revision (another producer) always applies.
-- Returns false when the subscription is unknown, else {previous value ('' when none),
-- stored revision, 1 applied | 0 not}.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local key = base_of(KEYS[1]) .. ARGV[1]
local field, revision_field = ARGV[2], ARGV[3]
local stored = redis.call('HMGET', key, field, revision_field)
local previous = stored[1] or ''
local current = tonumber(stored[2] or '0')
local revision = current + 1
if ARGV[5] ~= '' then
  revision = tonumber(ARGV[5])
  if revision <= current then return {previous, current, 0} end
end
if ARGV[4] == '' then
  redis.call('HDEL', key, field)
else
  redis.call('HSET', key, field, ARGV[4])
end
redis.call('HSET', key, revision_field, revision)
return {previous, revision, 1}
