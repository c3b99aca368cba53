-- The initial request of a credit-control session (SPEC 11): decide, and reserve (seconds
-- in the pool, and their worst-case amount against the user's spend limit, SPEC 14).
-- KEYS[1]: subscription hash. ARGV: session_id, user_id, zone letter, free ('1' inbound or
--   emergency), requested_s, request_number ('' none), now_ms, validity_s, grace_s,
--   session keep ms, sweep limit, late grace ms, period key keep ms.
-- Returns {'ok', answer, expired by validity, expired by CDR wait, deadline ('' none)},
--   {'replay', stored answer} or {'refused', code, got, before}; a refused request or a
--   replay writes nothing.
local sub_key = KEYS[1]
local sid, user, zone = ARGV[1], ARGV[2], ARGV[3]
local free = ARGV[4] == '1'
local requested = tonumber(ARGV[5])
local number_text = ARGV[6]
local number = tonumber(number_text)
local now = tonumber(ARGV[7])
local validity, grace = tonumber(ARGV[8]), tonumber(ARGV[9])
local keep, limit = tonumber(ARGV[10]), tonumber(ARGV[11])
local late_grace, period_keep = tonumber(ARGV[12]), tonumber(ARGV[13])

local base = base_of(sub_key)
local key = base .. 's:' .. sid
local stored = load_session(key)
local verdict = session_check('i', stored, number, 0, now)
if verdict == 'replay' then return {'replay', stored.ans} end
if verdict then return {'refused', verdict[1], verdict[2], verdict[3]} end
if stored then redis.call('DEL', key) end -- forgotten: the id may be used again

local function remember(state, answer, gone)
  redis.call('HSET', key, 'st', state, 'z', zone, 'u', user, 'val', validity, 'used', 0,
    'res', 0, 'ra', 0, 'rn', number_text, 'arn', number_text, 'k', 'i', 'ans', answer,
    'gone', int_text(gone))
  redis.call('PEXPIRE', key, gone - now)
end

if free then -- permitted whatever the subscription's state; nothing reserved, no queue
  local answer = answer_text('p', nil, false, validity, 'free', now + validity * 1000)
  remember('f', answer, now + (validity + grace) * 1000 + keep)
  return {'ok', answer, 0, 0, ''}
end
local sub = load_subscription(sub_key)
if not sub then
  local answer = answer_text('b', 0, true, 0, 'unknown_subscription', now)
  remember('b', answer, now + keep)
  return {'ok', answer, 0, 0, ''}
end

local expired_validity, expired_wait = sweep_sessions(sub_key, base, now, keep, limit)
local period, end_ms = period_of(now, sub.anchor)
local pool_key, included, used, reserved_all = session_pool(sub, base, period, zone)
local spend = spend_terms(base, period, user, sub['rmu_' .. zone], 0)
local decision, authorised, reserved, final, reason, amount = session_grant(
  true, 0, requested, included - used - reserved_all, sub.payg, sub.inc_m, sub.inc_i, spend)
if decision == 'b' then
  local answer = answer_text('b', 0, true, 0, reason, now)
  remember('b', answer, now + keep)
  return {'ok', answer, expired_validity, expired_wait, ''}
end

local deadline = now + (validity + grace) * 1000
local answer = answer_text('p', authorised, final, validity, reason, now + validity * 1000)
redis.call('HSET', key, 'st', 'o', 'z', zone, 'per', period, 'u', user, 'val', validity,
  'auth', authorised, 'used', 0, 'res', reserved, 'ra', int_text(amount), 'rn', number_text,
  'arn', number_text, 'k', 'i', 'ans', answer, 'dl', int_text(deadline))
local period_ttl = int_text(math.max(end_ms + late_grace + period_keep - now, period_keep))
redis.call('HINCRBY', pool_key, zone .. ':res', reserved) -- creates the key if need be
add_or_drop(sub_key, 's:r:' .. zone, reserved)
redis.call('PEXPIRE', pool_key, period_ttl, 'NX')
if amount > 0 then
  local users_key = base .. 'u:' .. period
  redis.call('HINCRBY', users_key, user .. '|r$', int_text(amount))
  redis.call('PEXPIRE', users_key, period_ttl, 'NX')
end
add_or_drop(sub_key, 's:o', 1)
add_or_drop(sub_key, 's:n', 1)
redis.call('ZADD', base .. 'sx', deadline, sid)
return {'ok', answer, expired_validity, expired_wait, int_text(deadline)}
