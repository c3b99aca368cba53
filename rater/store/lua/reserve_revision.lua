-- Reserve the revision of the next change of an audited setting (PAYG, a user's spend
-- limit): its event is published with it before the change is applied
-- (rater/service/audited.py). Nothing changes here.
-- KEYS[1]: subscription hash. ARGV: the setting's hash (a suffix of the subscription's
-- base: 'sub' or 'lim'), its value field, revision-applied field, revision-reserved field
-- (rater/store/keys.py).
-- Returns false when the subscription is unknown, else {current value ('' when none),
-- revision}: above every revision reserved or applied so far.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local key = base_of(KEYS[1]) .. ARGV[1]
local current = redis.call('HMGET', key, ARGV[2], ARGV[3], ARGV[4])
local revision = math.max(tonumber(current[2] or '0'), tonumber(current[3] or '0')) + 1
redis.call('HSET', key, ARGV[4], revision)
return {current[1] or '', revision}
