-- Switch pay-as-you-go; takes effect for the next rating and decision.
-- KEYS[1]: subscription hash; ARGV[1]: '1' or '0'; ARGV[2]: the change's revision, or ''.
-- Every switch bumps `payg_rev`. The API switches Redis first and then publishes its
-- payg.changed event with the revision; when the subscriptions agent meets that event
-- again, its revision is not newer than the stored one and it changes nothing. So an
-- older event can never undo a newer switch.
-- Returns false when the subscription is unknown, else {previous, revision, applied}.
local previous = redis.call('HGET', KEYS[1], 'payg')
if not previous then return false end
local current = tonumber(redis.call('HGET', KEYS[1], 'payg_rev') or '0')
local revision = current + 1
if ARGV[2] ~= '' then
  revision = tonumber(ARGV[2])
  if revision <= current then return {previous, current, 0} end
end
redis.call('HSET', KEYS[1], 'payg', ARGV[1], 'payg_rev', revision)
return {previous, revision, 1}
