-- Make a period's counters the rerated ones (SPEC 13), once per rerate.
-- KEYS[1]: subscription hash. ARGV[1]: rerate_id, ARGV[2]: period, ARGV[3]: expiry of
-- the period's keys (epoch ms), ARGV[4]: now (epoch ms), ARGV[5]: JSON
--   {"deltas": {field: n}, "totals": {field: n}, "user_deltas": {field: n},
--    "user_totals": {field: n}}
-- with the counter and user fields of rater/store/keys.py (the user fields: billable
-- seconds by zone and the overage amount `<user>|$` a spend limit weighs, SPEC 14). Where
-- the period's counters still exist they move by the deltas (rerated minus original
-- contributions of the calls rerated: calls rated live after the rerate's cutoff keep
-- theirs); where they are gone (expired) they are set to the totals of the calls rerated.
-- A marker field `rr:<rerate_id>` in the counters hash makes a second run change
-- nothing. Returns 1 when applied, 0 when this rerate was applied before.
local base = base_of(KEYS[1])
local period = ARGV[2]
local counters_key = base .. 'p:' .. period
local users_key = base .. 'u:' .. period
local marker = 'rr:' .. ARGV[1]
if redis.call('HEXISTS', counters_key, marker) == 1 then return 0 end
local change = cjson.decode(ARGV[5])
local ttl = math.max(tonumber(ARGV[3]) - tonumber(ARGV[4]), 1)

local function move(key, deltas, totals)
  if redis.call('EXISTS', key) == 1 then
    for name, n in pairs(deltas) do
      if n ~= 0 then redis.call('HINCRBY', key, name, n) end
    end
  else
    for name, n in pairs(totals) do
      if n ~= 0 then redis.call('HSET', key, name, n) end
    end
  end
end

move(counters_key, change.deltas, change.totals)
move(users_key, change.user_deltas, change.user_totals)
redis.call('HSET', counters_key, marker, ARGV[4])
redis.call('PEXPIRE', counters_key, ttl, 'NX')
if redis.call('EXISTS', users_key) == 1 then redis.call('PEXPIRE', users_key, ttl, 'NX') end
return 1
