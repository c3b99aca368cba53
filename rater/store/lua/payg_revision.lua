-- Reserve the revision of the next PAYG switch (the audit event is published with it
-- before the switch is applied: rater/service/payg.py). Nothing is switched here.
-- KEYS[1]: subscription hash. Returns false when the subscription is unknown, else
-- {current payg flag, revision}: above every revision reserved or applied so far.
local current = redis.call('HMGET', KEYS[1], 'payg', 'payg_rev', 'payg_next')
if not current[1] then return false end
local revision = math.max(tonumber(current[2] or '0'), tonumber(current[3] or '0')) + 1
redis.call('HSET', KEYS[1], 'payg_next', revision)
return {current[1], revision}
