-- Shared helpers, prepended to every script by rater/store/scripts.py.
-- Lua 5.1 has only doubles: every number here is an integer far below 2^53
-- (instants in ms, seconds, small counts), so arithmetic on them is exact.
-- Money is never held in a Lua number: see mul_div60_half_up.

local MS_PER_DAY = 86400000

-- days since 1970-01-01 <-> civil date (proleptic Gregorian), integer-only.
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m
  if mp < 10 then m = mp + 3 else m = mp - 9 end
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp
  if m > 2 then mp = m - 3 else mp = m + 9 end
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function days_in_month(y, m)
  if m == 12 then return 31 end
  return days_from_civil(y, m + 1, 1) - days_from_civil(y, m, 1)
end

local function shift_month(y, m, delta)
  local index = y * 12 + (m - 1) + delta
  return math.floor(index / 12), index % 12 + 1
end

-- The billing period holding instant `ms` (SPEC 5.1): start day, end day (exclusive), name.
local function period_of(ms, anchor)
  local y, m, d = civil_from_days(math.floor(ms / MS_PER_DAY))
  local this_start = math.min(anchor, days_in_month(y, m))
  local sy, sm, sd, ey, em, ed
  if d >= this_start then
    sy, sm, sd = y, m, this_start
    ey, em = shift_month(y, m, 1)
    ed = math.min(anchor, days_in_month(ey, em))
  else
    sy, sm = shift_month(y, m, -1)
    sd = math.min(anchor, days_in_month(sy, sm))
    ey, em, ed = y, m, this_start
  end
  local name = string.format('%04d-%02d-%02d', sy, sm, sd)
  return name, days_from_civil(ey, em, ed) * MS_PER_DAY
end

local function format_instant(ms)
  local days = math.floor(ms / MS_PER_DAY)
  local y, m, d = civil_from_days(days)
  local rest = ms - days * MS_PER_DAY
  local secs = math.floor(rest / 1000)
  local millis = rest - secs * 1000
  local text = string.format('%04d-%02d-%02dT%02d:%02d:%02d', y, m, d,
    math.floor(secs / 3600), math.floor(secs / 60) % 60, secs % 60)
  if millis > 0 then return text .. string.format('.%03dZ', millis) end
  return text .. 'Z'
end

-- round_half_up(rate_micro * seconds / 60) in micro-units, on decimal digit strings,
-- so the amount is exact whatever its size (SPEC 5.6). `rate_micro` is a digit string.
local function mul_div60_half_up(rate_micro, seconds)
  local product = {}
  local carry = 0
  for i = #rate_micro, 1, -1 do
    local v = (string.byte(rate_micro, i) - 48) * seconds + carry
    product[#product + 1] = v % 10
    carry = math.floor(v / 10)
  end
  while carry > 0 do
    product[#product + 1] = carry % 10
    carry = math.floor(carry / 10)
  end
  local quotient = {}
  local rem = 0
  for i = #product, 1, -1 do
    local cur = rem * 10 + product[i]
    quotient[#quotient + 1] = math.floor(cur / 60)
    rem = cur % 60
  end
  if rem * 2 >= 60 then
    local i = #quotient
    while i >= 1 and quotient[i] == 9 do
      quotient[i] = 0
      i = i - 1
    end
    if i >= 1 then quotient[i] = quotient[i] + 1 else table.insert(quotient, 1, 1) end
  end
  local text = string.gsub(table.concat(quotient), '^0+', '')
  if text == '' then return '0' end
  return text
end

local function billable_seconds(duration, minimum, step)
  if duration <= 0 then return 0 end
  return math.max(minimum, math.ceil(duration / step) * step)
end

local function split(text, sep)
  local parts = {}
  local start = 1
  while true do
    local at = string.find(text, sep, start, true)
    if not at then
      parts[#parts + 1] = string.sub(text, start)
      return parts
    end
    parts[#parts + 1] = string.sub(text, start, at - 1)
    start = at + 1
  end
end

local SUB_FIELDS = {'ba', 'cur', 'lic', 'payg', 'anchor', 'inc_m', 'inc_i',
  'min_d', 'min_i', 'rate_d', 'rate_i', 'rmu_d', 'rmu_i'}

-- The subscription hash as a table, or nil when the subscription is unknown.
local function load_subscription(key)
  local values = redis.call('HMGET', key, unpack(SUB_FIELDS))
  if not values[1] then return nil end
  local sub = {}
  for i, name in ipairs(SUB_FIELDS) do sub[name] = values[i] end
  sub.lic = tonumber(sub.lic)
  sub.anchor = tonumber(sub.anchor)
  sub.inc_m = tonumber(sub.inc_m)
  sub.inc_i = tonumber(sub.inc_i)
  sub.min_d = tonumber(sub.min_d)
  sub.min_i = tonumber(sub.min_i)
  sub.payg = sub.payg == '1'
  return sub
end

-- "<prefix>:{<id>}:sub" -> "<prefix>:{<id>}:"; every key of a subscription shares its hash tag.
local function base_of(sub_key)
  return string.sub(sub_key, 1, -4)
end

-- -------------------------------------------------------------- sessions ---
-- Credit-control sessions (SPEC 11). The layout is rater/store/keys.py's (SESSION_FIELDS,
-- SESSION_STATES, the `:res` and `s:` fields); the rules are rater/rating/sessions.py's,
-- and the session differential test holds the two together. Numbers written to Redis go
-- through string.format('%d'): tostring would print 13-digit instants in %.14g, exact but
-- easy to break.

local SESSION_READ = {'st', 'z', 'per', 'u', 'val', 'auth', 'used', 'res', 'ra', 'rn', 'arn',
  'k', 'ans', 'term', 'dl', 'gone'}

local function int_text(n)
  return string.format('%d', n)
end

-- A session hash as a table (numbers as numbers, absent or '' as nil), or nil.
local function load_session(key)
  local v = redis.call('HMGET', key, unpack(SESSION_READ))
  if not v[1] then return nil end
  local s = {}
  for i, name in ipairs(SESSION_READ) do
    if v[i] and v[i] ~= '' then s[name] = v[i] end
  end
  s.val = tonumber(s.val)
  s.auth = tonumber(s.auth)
  s.used = tonumber(s.used) or 0
  s.res = tonumber(s.res) or 0
  s.ra = tonumber(s.ra) or 0
  s.rn = tonumber(s.rn)
  s.arn = tonumber(s.arn)
  s.dl = tonumber(s.dl)
  s.gone = tonumber(s.gone)
  return s
end

-- HINCRBY that removes the field when it comes back to 0, so an idle pool or subscription
-- carries no session fields.
local function add_or_drop(key, field, delta)
  if delta ~= 0 and redis.call('HINCRBY', key, field, delta) == 0 then
    redis.call('HDEL', key, field)
  end
end

-- Change what a session reserves by `delta` seconds and `amount` micro-units: its pool, the
-- subscription's zone total and its user's reserved amount (`<u>|r$` in `u:<per>`, SPEC 14).
-- The pool's `res` field stays when it comes back to 0, so the period's key, created by
-- the initial request with its lifetime, exists as long as a session of it can; a key past
-- that lifetime (days after its period closed) is not brought back, nor is `u:<per>`. The
-- users' key may have gone when its last field came back to 0: made again, it gets the
-- pool key's lifetime.
local function session_reserve(sub_key, base, s, delta, amount)
  if delta == 0 and amount == 0 then return end
  local pool_key = base .. 'p:' .. s.per
  if redis.call('EXISTS', pool_key) == 1 then
    if delta ~= 0 then redis.call('HINCRBY', pool_key, s.z .. ':res', delta) end
    if amount ~= 0 then
      local users_key = base .. 'u:' .. s.per
      add_or_drop(users_key, s.u .. '|r$', amount)
      local ttl = redis.call('PTTL', pool_key)
      if ttl > 0 and redis.call('PTTL', users_key) == -1 then
        redis.call('PEXPIRE', users_key, ttl)
      end
    end
  end
  add_or_drop(sub_key, 's:r:' .. s.z, delta)
end

-- Give back everything an open or terminated session holds and take it off the queue.
local function session_release(sub_key, base, sid, s)
  session_reserve(sub_key, base, s, -s.res, -s.ra)
  if s.st == 'o' then add_or_drop(sub_key, 's:o', -1) end
  add_or_drop(sub_key, 's:n', -1)
  redis.call('ZREM', base .. 'sx', sid)
end

-- A session that reserves nothing any more: kept `keep_ms` for retries and late requests.
local function session_close(key, state, now, keep_ms)
  redis.call('HSET', key, 'st', state, 'res', 0, 'ra', 0, 'dl', '', 'gone',
    int_text(now + keep_ms))
  redis.call('PEXPIRE', key, keep_ms)
end

-- Release the subscription's sessions whose deadline has come (at most `limit` of them);
-- how many expired by validity (open) and by CDR wait (terminated). Called first by every
-- script that decides on or reads a pool, so no reader ever sees an expired reservation.
local function sweep_sessions(sub_key, base, now, keep_ms, limit)
  local queue = base .. 'sx'
  local due = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'LIMIT', 0, limit)
  local validity, cdr_wait = 0, 0
  for _, sid in ipairs(due) do
    local key = base .. 's:' .. sid
    local v = redis.call('HMGET', key, 'st', 'z', 'per', 'res', 'u', 'ra')
    if v[1] == 'o' or v[1] == 't' then
      if v[1] == 'o' then validity = validity + 1 else cdr_wait = cdr_wait + 1 end
      session_release(sub_key, base, sid, {st = v[1], z = v[2], per = v[3],
        res = tonumber(v[4]) or 0, u = v[5], ra = tonumber(v[6]) or 0})
      session_close(key, 'x', now, keep_ms)
    else
      redis.call('ZREM', queue, sid)
    end
  end
  return validity, cdr_wait
end

-- The earliest deadline left in the subscription's queue (text), or '' when it is empty.
local function earliest_deadline(base)
  local first = redis.call('ZRANGE', base .. 'sx', 0, 0, 'WITHSCORES')
  if first[2] then return first[2] end
  return ''
end

-- The stored answer, `keys.session_answer`'s format: decision|granted|final|validity|reason|ms
local function answer_text(decision, granted, final, validity, reason, expires_ms)
  local granted_text = ''
  if granted then granted_text = int_text(granted) end
  local final_text = '0'
  if final then final_text = '1' end
  return decision .. '|' .. granted_text .. '|' .. final_text .. '|' .. int_text(validity)
    .. '|' .. reason .. '|' .. int_text(expires_ms)
end

-- max_duration_within (rater.rating.increments): the longest call that bills <= available.
local function fits_within(available, minimum, step)
  if available < minimum then return 0 end
  return math.floor(available / step) * step
end

-- held_seconds: billable(used), with PAYG off capped at what is available to the session.
local function held_seconds(used, available, payg, minimum, step)
  local billable = billable_seconds(used, minimum, step)
  if payg then return billable end
  return math.min(billable, math.max(0, available))
end

-- ----------------------------------------------------------- spend limits ---
-- SPEC 14, the rules of rater/rating/spend.py. Amounts are micro-units: a limit is at most
-- 10^15, a session's worst case at most 172800 s at a rate below 10^12 a minute (< 2^53),
-- so every amount compared here is exact; a sum of amounts beyond 2^53 is far above any
-- limit, and only compared with one.

-- max_overage_within: the most overage seconds whose charge fits in `budget`; nil when the
-- rate is 0 (no cap). (120*B + 59) // (2*r) computed as 60*q + (120*rem + 59) // (2*r)
-- with B = q*r + rem, so no product leaves the exact range of a double. A quotient beyond
-- 10^9 minutes is more than any grant can use (asked <= 2 x 86400 s): no cap either.
local function max_overage_within(budget, rate)
  if rate <= 0 then return nil end
  if budget < 0 then return 0 end
  local q = math.floor(budget / rate)
  if q * rate > budget then q = q - 1 elseif (q + 1) * rate <= budget then q = q + 1 end
  if q >= 1e9 then return nil end
  return 60 * q + math.floor((120 * (budget - q * rate) + 59) / (2 * rate))
end

-- SpendTerms: the zone's rate (`rmu` digit string, `rate` its number), and with a limit
-- (`limit`, nil without) what the user was charged in the period (`spent`) and what the
-- user's sessions other than the deciding one reserve there (`others`; `own` is the
-- deciding session's amount).
local function spend_terms(base, period, user, rate_micro, own)
  local t = {rmu = rate_micro, rate = tonumber(rate_micro)}
  local limit = redis.call('HGET', base .. 'lim', 'l:' .. user)
  if limit then
    local v = redis.call('HMGET', base .. 'u:' .. period, user .. '|$', user .. '|r$')
    t.limit = tonumber(limit)
    t.spent = tonumber(v[1] or '0')
    t.others = tonumber(v[2] or '0') - own
  end
  return t
end

local function spend_at_limit(t)
  return t.limit ~= nil and t.spent + t.others >= t.limit
end

-- reservation_amount: the charge of what the pool could not carry of `reserved` seconds.
local function spend_amount(t, reserved, available)
  local overage = reserved - math.max(0, available)
  if overage <= 0 then return 0 end
  return tonumber(mul_div60_half_up(t.rmu, overage))
end

-- SpendTerms.held: the worst case, with a limit capped at the budget left (never below 0).
local function spend_held(t, reserved, available)
  local amount = spend_amount(t, reserved, available)
  if t.limit == nil then return amount end
  return math.min(amount, math.max(0, t.limit - t.spent - t.others))
end

-- SpendTerms.cap: the longest call whose worst case fits in the budget; nil: no cap.
local function spend_cap(t, available, minimum, step)
  if t.limit == nil then return nil end
  local overage = max_overage_within(t.limit - t.spent - t.others, t.rate)
  if overage == nil then return nil end
  return fits_within(math.max(0, available) + overage, minimum, step)
end

-- grant (rater.rating.sessions): decision ('p'|'b'), authorised, reserved, final, reason,
-- reserved amount. `spend` is a spend_terms table.
local function session_grant(initial, used, requested, available, payg, minimum, step, spend)
  local asked = used + requested
  local function hold(reason)
    if initial then return 'b', 0, 0, true, reason, 0 end
    local held = held_seconds(used, available, payg, minimum, step)
    return 'p', used, held, true, reason, spend_held(spend, held, available)
  end
  if spend_at_limit(spend) then return hold('spend_limit') end
  if payg then
    local cap = spend_cap(spend, available, minimum, step)
    if cap == nil or cap >= asked then
      local reserved = billable_seconds(asked, minimum, step)
      local reason = 'payg'
      if reserved <= available then reason = 'included' end
      return 'p', asked, reserved, false, reason, spend_amount(spend, reserved, available)
    end
    if cap > used then
      local reserved = billable_seconds(cap, minimum, step)
      return 'p', cap, reserved, true, 'spend_limit', spend_amount(spend, reserved, available)
    end
    return hold('spend_limit')
  end
  local fits = math.min(asked, fits_within(available, minimum, step))
  if fits > used then
    local reserved = billable_seconds(fits, minimum, step)
    return 'p', fits, reserved, fits < asked, 'included', spend_amount(spend, reserved, available)
  end
  return hold('exhausted')
end

-- check_request (rater.rating.sessions), SPEC 11.7: nil to go on, 'replay', or a refusal
-- {code, got, before}. `kind` is 'i', 'u' or 't'; `rn` the request's number or nil.
local function session_check(kind, s, rn, used, now)
  if s and s.gone and s.gone <= now then s = nil end
  if kind == 'i' then
    if not s then return nil end
    if s.k == 'i' and s.arn == rn then return 'replay' end
    return {'session_exists', '', ''}
  end
  if not s or s.st == 'x' or ((s.st == 'o' or s.st == 't') and s.dl and s.dl <= now) then
    return {'unknown_session', '', ''}
  end
  if rn then
    if rn == s.arn and s.k == kind then return 'replay' end
    if s.rn and rn <= s.rn then return {'out_of_order', int_text(rn), int_text(s.rn)} end
  end
  if s.st == 'b' then return {'blocked', '', ''} end
  if s.term then return {'terminated', '', ''} end
  if kind == 'u' and s.st == 'c' then return {'closed', '', ''} end
  if used < s.used then return {'used_decreased', int_text(used), int_text(s.used)} end
  return nil
end

-- The start of a follow-up request ('u' update, 't' terminate): its session and the
-- request number to keep, or the reply that ends the request here (a replay, a refusal).
-- A request without a number keeps the highest number seen, for the order of later ones.
local function open_follow_up(kind, sub_key, sid, number_text, used, now)
  local base = base_of(sub_key)
  local key = base .. 's:' .. sid
  local s = load_session(key)
  local number = tonumber(number_text)
  local verdict = session_check(kind, s, number, used, now)
  if verdict == 'replay' then return nil, {'replay', s.ans} end
  if verdict then return nil, {'refused', verdict[1], verdict[2], verdict[3]} end
  local highest = number_text
  if not number and s.rn then highest = int_text(s.rn) end
  return {base = base, key = key, s = s, highest = highest}
end

-- The pool a session decides on: {key, included, used, reserved by every session}.
local function session_pool(sub, base, period, zone_letter)
  local key = base .. 'p:' .. period
  local v = redis.call('HMGET', key, zone_letter .. ':used', zone_letter .. ':res')
  return key, sub.lic * sub['min_' .. zone_letter] * 60, tonumber(v[1] or '0'),
    tonumber(v[2] or '0')
end
