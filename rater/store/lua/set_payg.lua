-- Switch pay-as-you-go; takes effect for the next rating and decision.
-- KEYS[1]: subscription hash; ARGV[1]: '1' or '0'.
-- Returns the previous flag ('1'/'0'), or false when the subscription is unknown.
local previous = redis.call('HGET', KEYS[1], 'payg')
if not previous then return false end
redis.call('HSET', KEYS[1], 'payg', ARGV[1])
return previous
