-- load.lua: pre-splits envelopes before a run, one EVAL per batch.
--
-- ARGV[1]  first envelope number
-- ARGV[2]  how many envelopes
-- ARGV[3]  shares per envelope
-- ARGV[4]  cents per envelope
-- ARGV[5]  seed
--
-- Envelope n is the list "hb:env:<n as 12 digits>" (the form redis-benchmark
-- gives __rand_int__); its claimed hash is cleared. Shares follow the
-- double-average rule in integer cents: each share is uniform in
-- [1, 2 * remaining / left], kept low enough that every later share can still
-- have 1 cent; the last share takes the rest, so the shares sum to the total.
local first = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local shares = tonumber(ARGV[3])
local total = tonumber(ARGV[4])
math.randomseed(tonumber(ARGV[5]) + first)
assert(total >= shares, 'every share needs at least 1 cent')

for n = first, first + count - 1 do
  local key = string.format('hb:env:%012d', n)
  redis.call('DEL', key, key .. ':claimed')
  local parts = {}
  local remaining = total
  for left = shares, 2, -1 do
    local max = math.floor(2 * remaining / left)
    if max > remaining - (left - 1) then max = remaining - (left - 1) end
    if max < 1 then max = 1 end
    local share = math.random(1, max)
    parts[#parts + 1] = share
    remaining = remaining - share
  end
  parts[#parts + 1] = remaining
  redis.call('RPUSH', key, unpack(parts))
end
return count
