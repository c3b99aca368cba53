-- Apply a subscription.upserted event: the whole plan replaces the stored one.
-- KEYS[1]: subscription hash; ARGV: field, value pairs (see rater/store/redis_store.py).
-- A subscription's billing account and currency are fixed for life: rated calls are
-- re-emitted with them on replay, so changing them would break idempotency (SPEC 5.8).
-- Returns 'ok', or 'immutable:<field>' when the event tries to change one of them.
local current = redis.call('HMGET', KEYS[1], 'ba', 'cur')
if current[1] then
  for i = 1, #ARGV, 2 do
    if ARGV[i] == 'ba' and ARGV[i + 1] ~= current[1] then return 'immutable:billing_account_id' end
    if ARGV[i] == 'cur' and ARGV[i + 1] ~= current[2] then return 'immutable:currency' end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 'ok'
