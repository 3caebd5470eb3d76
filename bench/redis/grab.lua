-- grab.lua: the grab script most teams run in Redis, one EVALSHA per grab.
--
-- KEYS[1]  the envelope's list of pre-split shares, e.g. "hb:env:000000012345"
-- ARGV[1]  the grabbing user's id
--
-- Returns the amount in cents, 0 when the envelope is sold out, -1 when this
-- user already grabbed it.
--
-- The claimed hash and the settlement log are named inside the script, not
-- passed as keys: redis-benchmark replaces every __rand_int__ on its own, so
-- the envelope can only be given once. That is not cluster-safe (Redis Cluster
-- requires every key a script touches to be declared and in one slot); it is
-- fine on the single instance measured here.
local shares = KEYS[1]
local claimed = shares .. ':claimed'
local log = 'hb:settlement'
local user = ARGV[1]

-- One share per user per envelope.
if redis.call('HEXISTS', claimed, user) == 1 then
  return -1
end

-- Take the next pre-split share.
local amount = redis.call('LPOP', shares)
if not amount then
  return 0
end

-- Record the claim, and queue it for settlement (the MySQL writer pops the log).
redis.call('HSET', claimed, user, amount)
redis.call('RPUSH', log, shares .. ' ' .. user .. ' ' .. amount)
return tonumber(amount)
