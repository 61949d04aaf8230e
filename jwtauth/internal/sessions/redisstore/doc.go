// Package redisstore keeps an issuer's sessions in Redis (6.2 or later,
// or Valkey), so that several Caddy nodes share them, and tells every node
// of the revocations made on any node (sessions.Feed).
//
// # Guarantees
//
// Every Store operation is one Lua script: one round trip, atomic in
// Redis, with the session policy (refresh_ttl, idle_timeout, the
// per-login bound, grace, reuse ending the family) enforced inside it.
// Each operation answers within Config.Timeout: a Redis that is down,
// refuses, or is frozen gives an error wrapping sessions.ErrUnavailable.
// Durability is Redis's: with AOF appendfsync everysec a Redis crash can
// lose about one second of writes, and without persistence a restart
// loses everything (Follow then reports a Reset).
//
// # Keys
//
// Every key of one issuer starts with the hash tag {prefix:issuer}, so all
// of them live in one Redis Cluster slot and a script may touch any of
// them. With B that base:
//
//	B:s:SID      hash: the session (l login, i user_id, f fingerprint,
//	             c created, u last used, g generation, h current token
//	             hash, r replaced hashes, p when the last rotation was)
//	B:t:HASH     string: SID, for the current and the last 16 replaced
//	             token hashes (hex SHA-256)
//	B:n:SID      string: the successor of the last rotation, sealed under
//	             the token it replaced (sessions.SealSuccessor), for the
//	             grace window only
//	B:l:LOGIN    sorted set: the login's SIDs by creation
//	B:c, B:u     sorted sets: every SID by creation and by last use
//	             (microseconds), for List and Count
//	B:x          sorted set: every SID by the expiry its record was given,
//	             to prune the indexes once Redis has expired the record
//	B:rev        stream: revocations (sid, login, reason, at), trimmed
//	             with MINID to Policy.Retain
//	B:epoch      string: set once per Redis dataset; when it is gone,
//	             Redis lost its data
//	B:lim:KIND:HASH
//	             hash: a login limiter window (Limiter), KIND p for an
//	             (IP, login) pair, i for an IP, l for a login; HASH the
//	             SHA-256 of the IP and login, never them in clear
//
// Sessions and token hashes expire through PEXPIREAT: no sweeper is
// needed. Refresh tokens are never stored, only their SHA-256 hashes.
// Times are stored as 20-digit Unix nanoseconds.
package redisstore
