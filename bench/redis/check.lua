-- check.lua: after a run, checks the money of a batch of envelopes.
--
-- ARGV[1]  first envelope number
-- ARGV[2]  how many envelopes
-- ARGV[3]  shares per envelope
-- ARGV[4]  cents per envelope
--
-- Returns {claims, paid cents, envelopes sold out, envelopes that break a
-- rule}. An envelope breaks a rule when paid + left over is not its total,
-- when claims + shares left is not its share count, or when a paid share is
-- below 1 cent.
local first = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local shares = tonumber(ARGV[3])
local total = tonumber(ARGV[4])
local claims, paid, sold_out, broken = 0, 0, 0, 0

for n = first, first + count - 1 do
  local key = string.format('hb:env:%012d', n)
  local left = redis.call('LRANGE', key, 0, -1)
  local got = redis.call('HVALS', key .. ':claimed')
  local cents = 0
  local bad = false
  for _, v in ipairs(left) do cents = cents + tonumber(v) end
  for _, v in ipairs(got) do
    local a = tonumber(v)
    if a < 1 then bad = true end
    cents = cents + a
    paid = paid + a
  end
  if cents ~= total or #left + #got ~= shares then bad = true end
  if bad then broken = broken + 1 end
  if #left == 0 then sold_out = sold_out + 1 end
  claims = claims + #got
end
return {claims, paid, sold_out, broken}
