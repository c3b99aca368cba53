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
