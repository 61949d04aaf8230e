package redisstore

import "github.com/redis/go-redis/v9"

// Every operation is one of these scripts: one EVALSHA (EVAL when Redis
// answers NOSCRIPT), one round trip, atomic. KEYS[1] is the issuer's base,
// "{prefix:issuer}"; every key the scripts touch starts with it, so they all
// share its hash slot (Redis Cluster runs such a script on one node).
//
// Times: ARGV[1] is the caller's now in Unix nanoseconds as a fixed-width
// 20-digit decimal (ns). Stored times use the same form, so Lua compares
// them as strings, exactly, although a Lua number (a double) cannot hold a
// nanosecond time. The caller also passes the thresholds the policy needs,
// already subtracted (now - refresh_ttl, now - idle_timeout, now - grace),
// so that no nanosecond arithmetic happens in Lua. Scores and expiries use
// microseconds (us), which a double holds exactly.
//
// Expiry: a deadline of the caller's clock (end_us) is turned into one of
// Redis's clock before PEXPIREAT, as TIME + (end_us - now_us): keys then
// outlive the policy by the same span on every node, whatever the skew of
// a node's clock (or a test's pinned clock) against Redis's. Keys live one
// minute past the deadline: the scripts refuse a dead session themselves
// (ErrEnded), so expiry only collects garbage, and a session is never
// "unknown" instead of "ended" because Redis's clock ran a little ahead.

// prelude is the common head of every script. ARGV (1-based):
//
//	1 now (ns)           2 now_us
//	3 min created (ns)   4 min last used (ns)   5 min rotated at (ns)
//	6 refresh_ttl (us)   7 idle_timeout (us)    8 grace (us)
//	9 max per login      10 retain (ms, -1: keep the stream untrimmed)
//	11... the operation's own arguments
const prelude = `
local base = KEYS[1]
local now, now_us = ARGV[1], tonumber(ARGV[2])
local minC, minU, minP = ARGV[3], ARGV[4], ARGV[5]
local refresh_us, idle_us, grace_us = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local maxper, retain_ms = tonumber(ARGV[9]), tonumber(ARGV[10])
local tm = redis.call('TIME')
local rnow = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)

local ckey, ukey, xkey, revkey = base .. ':c', base .. ':u', base .. ':x', base .. ':rev'
local function skey(sid) return base .. ':s:' .. sid end
local function tkey(h) return base .. ':t:' .. h end
local function nkey(sid) return base .. ':n:' .. sid end
local function lkey(login) return base .. ':l:' .. login end

-- us converts a stored time (ns) to microseconds.
local function us(ns) return tonumber(string.sub(ns, 1, 17)) end
-- pxat turns a deadline of the caller's clock into one of Redis's (ms).
local function pxat(end_us) return rnow + math.ceil((end_us - now_us) / 1000) + 60000 end

local function load(sid)
	local v = redis.call('HMGET', skey(sid), 'l', 'i', 'f', 'c', 'u', 'g', 'h', 'r', 'p')
	if not v[1] then return nil end
	return {sid = sid, l = v[1], i = v[2], f = v[3], c = v[4], u = v[5], g = v[6], h = v[7], r = v[8] or '', p = v[9] or ''}
end
local function live(s) return s.c > minC and s.u > minU end
local function tuple(s) return {s.sid, s.l, s.i, s.f, s.c, s.u, s.g} end
-- absend is the end of s's absolute lifetime, expend when it ends unless
-- used again (us).
local function absend(s) return us(s.c) + refresh_us end
local function expend(s)
	local a, b = absend(s), us(s.u) + idle_us
	if b < a then return b end
	return a
end

local function minid() return string.format('%.0f-0', math.max(0, rnow - retain_ms)) end

-- revoke ends s: its record, every token hash of the family, its sealed
-- successor and index entries go, and the revocation is appended to the
-- issuer's stream for the other nodes.
local function revoke(s, reason)
	local keys = {skey(s.sid), nkey(s.sid), tkey(s.h)}
	for k = 1, #s.r, 64 do keys[#keys + 1] = tkey(string.sub(s.r, k, k + 63)) end
	redis.call('DEL', unpack(keys))
	redis.call('ZREM', ckey, s.sid)
	redis.call('ZREM', ukey, s.sid)
	redis.call('ZREM', xkey, s.sid)
	redis.call('ZREM', lkey(s.l), s.sid)
	if retain_ms >= 0 then
		redis.call('XADD', revkey, 'MINID', '~', minid(), '*', 'sid', s.sid, 'login', s.l, 'reason', reason, 'at', now)
	else
		redis.call('XADD', revkey, '*', 'sid', s.sid, 'login', s.l, 'reason', reason, 'at', now)
	end
	return {s.sid, s.l, reason, now}
end

-- touch records a use at now and moves the expiries.
local function touch(s)
	if now > s.u then s.u = now end
	redis.call('HSET', skey(s.sid), 'u', s.u)
	local e = expend(s)
	redis.call('PEXPIREAT', skey(s.sid), pxat(e))
	redis.call('PEXPIREAT', tkey(s.h), pxat(absend(s)))
	redis.call('ZADD', ukey, us(s.u), s.sid)
	redis.call('ZADD', xkey, e, s.sid)
end

-- prune drops up to limit index entries of sessions that Redis has
-- expired. An entry whose session is still there (its expiry was moved by
-- a longer policy, or the caller's clock runs ahead of Redis's) gets the
-- session's real expiry instead.
local function prune(limit)
	for _, id in ipairs(redis.call('ZRANGEBYSCORE', xkey, '-inf', now_us - 2, 'LIMIT', 0, limit)) do
		local pt = redis.call('PTTL', skey(id))
		if pt == -2 then
			redis.call('ZREM', xkey, id)
			redis.call('ZREM', ckey, id)
			redis.call('ZREM', ukey, id)
		else
			if pt < 0 then pt = refresh_us / 1000 end
			redis.call('ZADD', xkey, now_us + pt * 1000, id)
		end
	end
end

-- lookup finds the family of token hash h and how h relates to it:
-- 'cur' (its current token), 'grace' (the one the last rotation replaced,
-- strictly before rotation + grace) or 'reuse' (any other replaced token). With no session it
-- returns nil and 'unknown', or 'ended' when the token outlived its
-- session's record (the session idled out).
local function lookup(h)
	local sid = redis.call('GET', tkey(h))
	if not sid then return nil, 'unknown' end
	local s = load(sid)
	if not s then return nil, 'ended' end
	if s.h == h then return s, 'cur' end
	if #s.r >= 64 and string.sub(s.r, -64) == h and s.p > minP then return s, 'grace' end
	return s, 'reuse'
end

-- check applies lookup and the policy for Find, Use and Rotate: it
-- returns the session and the match, or the script's answer.
local function check(h)
	local s, m = lookup(h)
	if not s then return nil, nil, {m} end
	if not live(s) then return nil, nil, {'ended'} end
	if m == 'reuse' then return nil, nil, {'reused', revoke(s, 'reuse')} end
	return s, m, nil
end
`

// createScript: ARGV 11 sid, 12 login, 13 user_id, 14 fp, 15 token hash.
// It ends the login's oldest live sessions beyond maxper, prunes a few
// index entries whose session is gone, and trims the stream.
var createScript = redis.NewScript(prelude + `
local sid, login = ARGV[11], ARGV[12]
local lk = lkey(login)
local lv = {}
for _, id in ipairs(redis.call('ZRANGE', lk, 0, -1)) do
	local o = load(id)
	if not o then
		redis.call('ZREM', lk, id)
	elseif live(o) then
		lv[#lv + 1] = o
	end
end
local revs = {}
if maxper > 0 and #lv >= maxper then
	table.sort(lv, function(a, b)
		if a.c ~= b.c then return a.c < b.c end
		return a.sid < b.sid
	end)
	for k = 1, #lv - maxper + 1 do revs[#revs + 1] = revoke(lv[k], 'bound') end
end
local s = {sid = sid, l = login, i = ARGV[13], f = ARGV[14], c = now, u = now, g = '0', h = ARGV[15], r = '', p = ''}
redis.call('HSET', skey(sid), 'l', s.l, 'i', s.i, 'f', s.f, 'c', s.c, 'u', s.u, 'g', s.g, 'h', s.h)
local e, a = expend(s), absend(s)
redis.call('PEXPIREAT', skey(sid), pxat(e))
redis.call('SET', tkey(s.h), sid, 'PXAT', pxat(a))
redis.call('ZADD', lk, us(now), sid)
local want = math.ceil((a - now_us) / 1000)
if redis.call('PTTL', lk) < want then redis.call('PEXPIRE', lk, want) end
redis.call('ZADD', ckey, us(now), sid)
redis.call('ZADD', ukey, us(now), sid)
redis.call('ZADD', xkey, e, sid)
prune(16)
if retain_ms >= 0 then redis.call('XTRIM', revkey, 'MINID', '~', minid()) end
return {tuple(s), revs}
`)

// findScript: ARGV 11 token hash, 12 "1" to record the use (Use).
var findScript = redis.NewScript(prelude + `
local s, m, answer = check(ARGV[11])
if answer then return answer end
if ARGV[12] == '1' then touch(s) end
return {'ok', tuple(s)}
`)

// rotateScript: ARGV 11 token hash, 12 sid, 13 successor's hash, 14 the
// successor sealed under the token (sessions.SealSuccessor). A retry with
// the token just replaced gets the sealed successor kept for grace.
var rotateScript = redis.NewScript(prelude + `
local s, m, answer = check(ARGV[11])
if answer then return answer end
if s.sid ~= ARGV[12] then return {'mismatch'} end
if m == 'grace' then
	local sealed = redis.call('GET', nkey(s.sid))
	if not sealed then return {'lost'} end
	return {'again', tuple(s), sealed}
end
local r = s.r .. s.h
if #r > 64 * 16 then
	redis.call('DEL', tkey(string.sub(r, 1, 64)))
	r = string.sub(r, 65)
end
s.r, s.p, s.h, s.g = r, now, ARGV[13], tostring(tonumber(s.g) + 1)
if now > s.u then s.u = now end
redis.call('HSET', skey(s.sid), 'h', s.h, 'r', s.r, 'p', s.p, 'g', s.g, 'u', s.u)
local e = expend(s)
redis.call('PEXPIREAT', skey(s.sid), pxat(e))
redis.call('SET', tkey(s.h), s.sid, 'PXAT', pxat(absend(s)))
if grace_us > 0 then
	redis.call('SET', nkey(s.sid), ARGV[14], 'PXAT', pxat(now_us + grace_us))
else
	redis.call('DEL', nkey(s.sid))
end
redis.call('ZADD', ukey, us(s.u), s.sid)
redis.call('ZADD', xkey, e, s.sid)
return {'rotated', tuple(s)}
`)

// revokeScript: ARGV 11 token hash. A replaced token outside grace ends
// the family as reuse, any other as logout; the token of a session that has
// ended under the policy finds nothing (expiry is no revocation).
var revokeScript = redis.NewScript(prelude + `
local s, m = lookup(ARGV[11])
if not s or not live(s) then return {'unknown'} end
local reason = 'logout'
if m == 'reuse' then reason = 'reuse' end
return {'revoked', revoke(s, reason)}
`)

// revokeSIDScript: ARGV 11 sid, 12 reason.
var revokeSIDScript = redis.NewScript(prelude + `
local s = load(ARGV[11])
if not s then return {'unknown'} end
return {'revoked', revoke(s, ARGV[12])}
`)

// revokeLoginScript: ARGV 11 login, 12 reason.
var revokeLoginScript = redis.NewScript(prelude + `
local lk = lkey(ARGV[11])
local revs = {}
for _, id in ipairs(redis.call('ZRANGE', lk, 0, -1)) do
	local s = load(id)
	if s then revs[#revs + 1] = revoke(s, ARGV[12]) end
end
redis.call('DEL', lk)
return revs
`)

// getScript: ARGV 11 sid.
var getScript = redis.NewScript(prelude + `
local s = load(ARGV[11])
if not s or not live(s) then return {} end
return tuple(s)
`)

// listScript: ARGV 11 login, or "" with 12 "all" for every login. The
// caller sorts by creation (the scores are only microseconds).
var listScript = redis.NewScript(prelude + `
local ids
if ARGV[12] == 'all' then
	ids = redis.call('ZRANGE', ckey, 0, -1)
else
	ids = redis.call('ZRANGE', lkey(ARGV[11]), 0, -1)
end
local out = {}
for _, id in ipairs(ids) do
	local s = load(id)
	if s and live(s) then out[#out + 1] = tuple(s) end
end
return out
`)

// countScript counts the sessions live under the policy without reading
// each: those used after now - idle_timeout (ZCOUNT of the last-use index)
// less those among them created at or before now - refresh_ttl (few: they
// have normally expired already). The indexes hold microseconds; entries
// on the boundary microsecond are checked against the session itself.
var countScript = redis.NewScript(prelude + `
local Mu, Mc = us(minU), us(minC)
local function used(sid, score)
	if score > Mu then return true end
	if score < Mu then return false end
	local u = redis.call('HGET', skey(sid), 'u')
	return u and u > minU
end
local n = redis.call('ZCOUNT', ukey, '(' .. string.format('%.0f', Mu), '+inf')
for _, id in ipairs(redis.call('ZRANGEBYSCORE', ukey, Mu, Mu)) do
	if used(id, Mu) then n = n + 1 end
end
local old = redis.call('ZRANGEBYSCORE', ckey, '-inf', Mc, 'WITHSCORES')
for k = 1, #old, 2 do
	local id = old[k]
	local isold = tonumber(old[k + 1]) < Mc
	if not isold then
		local c = redis.call('HGET', skey(id), 'c')
		isold = (not c) or c <= minC
	end
	local score = redis.call('ZSCORE', ukey, id)
	if isold and score and used(id, tonumber(score)) then n = n - 1 end
end
return n
`)

// sweepScript prunes index entries of sessions that Redis has expired (it
// deletes the sessions themselves), ARGV 11 at most.
var sweepScript = redis.NewScript(prelude + `
prune(tonumber(ARGV[11]))
if retain_ms >= 0 then redis.call('XTRIM', revkey, 'MINID', '~', minid()) end
return 0
`)

// epochScript returns the epoch key's value, setting it to ARGV[1] first
// if it is missing (Redis lost its data, or this is its first use).
var epochScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`)
