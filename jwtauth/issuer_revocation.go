package jwtauth

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxDenied bounds the deny-list. When it is full, the oldest entry makes
// room, and every access token issued up to that entry's revocation is
// refused until the entry would have expired: memory stays bounded and no
// revoked token comes back.
const maxDenied = 1 << 18

// revocationState is what a validator learns about a session's access
// tokens.
type revocationState uint8

const (
	// notRevoked: accept the token.
	notRevoked revocationState = iota
	// sessionRevoked: the session ended; refuse the token (401).
	sessionRevoked
	// revocationUnknown: the issuer cannot tell (its store is not open
	// yet, or its revocation feed is silent); answer 503, never accept.
	revocationUnknown
)

// denyList holds the sessions revoked within the retention window (access
// TTL plus leeway), each until its access tokens have all expired, and a
// floor: access tokens issued before it are refused until it expires (after
// a restart, a lost feed or an overflow). A lookup is an atomic load, and a
// map lookup under a read lock when the list is not empty; it never
// allocates.
type denyList struct {
	n     atomic.Int64 // len(m), read without the lock
	floor atomic.Pointer[denyFloor]

	mu sync.RWMutex
	m  map[string]int64 // sid -> end of its retention, Unix nanoseconds
	q  []deniedSID      // insertion order, for pruning and eviction
	// fresh holds the sessions created in the second of the floor, after
	// it: their tokens carry the floor's second as iat, yet were issued
	// after it.
	fresh map[string]struct{}
}

type deniedSID struct {
	sid   string
	until int64
}

// denyFloor refuses the access tokens issued before at until until (Unix
// nanoseconds).
type denyFloor struct{ at, until int64 }

// add denies sid until until, pruning what expired by now.
func (d *denyList) add(sid string, until, now time.Time) {
	u := until.UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]int64)
	}
	n := now.UnixNano()
	for len(d.q) > 0 && (d.q[0].until <= n || len(d.m) >= maxDenied) {
		old := d.q[0]
		d.q[0] = deniedSID{}
		d.q = d.q[1:]
		if d.m[old.sid] != old.until {
			continue // re-added later, with a later entry in q
		}
		delete(d.m, old.sid)
		if old.until > n {
			// evicted while live: its tokens were issued before its
			// revocation, at most retain before until
			d.raiseFloor(n, old.until)
		}
	}
	if prev, ok := d.m[sid]; ok && prev >= u {
		return
	}
	d.m[sid] = u
	d.q = append(d.q, deniedSID{sid: sid, until: u})
	d.n.Store(int64(len(d.m)))
}

// raiseFloor refuses tokens issued before at until until, keeping any
// stronger floor in force.
func (d *denyList) raiseFloor(at, until int64) {
	for {
		old := d.floor.Load()
		f := &denyFloor{at: at, until: until}
		if old != nil {
			f.at, f.until = max(old.at, at), max(old.until, until)
		}
		if d.floor.CompareAndSwap(old, f) {
			return
		}
	}
}

// refuseIssuedBefore refuses every access token issued before at until
// until.
func (d *denyList) refuseIssuedBefore(at, until time.Time) {
	d.raiseFloor(at.UnixNano(), until.UnixNano())
}

// created records a session created at now: if that is in the second of
// the floor, after it, its tokens are not refused by the floor.
func (d *denyList) created(sid string, now time.Time) {
	f := d.floor.Load()
	n := now.UnixNano()
	if f == nil || n < f.at || n/int64(time.Second) != f.at/int64(time.Second) {
		return
	}
	d.mu.Lock()
	if d.fresh == nil {
		d.fresh = make(map[string]struct{})
	}
	d.fresh[sid] = struct{}{}
	d.mu.Unlock()
}

// denied reports whether an access token of sid issued at iat (Unix
// seconds, 0 when absent) is refused at now (Unix nanoseconds). iat counts
// whole seconds: a token issued before the floor has iat*1e9 < at, so the
// floor never lets one through; a token issued in the floor's second after
// it is refused too (the client refreshes, and after that second its token
// passes), unless its session was created after the floor.
func (d *denyList) denied(sid string, iat, now int64) bool {
	if f := d.floor.Load(); f != nil && now < f.until && iat*int64(time.Second) < f.at {
		if iat != f.at/int64(time.Second) {
			return true
		}
		d.mu.RLock()
		_, fresh := d.fresh[sid]
		d.mu.RUnlock()
		if !fresh {
			return true
		}
	}
	if d.n.Load() == 0 {
		return false
	}
	d.mu.RLock()
	until, ok := d.m[sid]
	d.mu.RUnlock()
	return ok && now < until
}

// len returns the number of entries, expired ones included until pruned.
func (d *denyList) len() int { return int(d.n.Load()) }

// verificationKeys implements localIssuer.
func (is *Issuer) verificationKeys() *keySet { return is.keys.Load() }

// signingAlgs implements localIssuer.
func (is *Issuer) signingAlgs() algSet {
	if a := lookupAlg(is.Algorithm); a != nil {
		return 1 << a.bit
	}
	return 0
}

// issuerClaim implements localIssuer.
func (is *Issuer) issuerClaim() string { return is.Iss }

// issuedAudiences implements localIssuer.
func (is *Issuer) issuedAudiences() []string { return is.Audience }

// revoked implements localIssuer: with revoke_access_tokens, the access
// tokens of session sid issued at iat (Unix seconds) are refused if the
// deny-list holds sid or a floor covers iat, and cannot be judged before
// start or while a shared store's feed is silent. It is a few atomic loads
// and at most one map lookup; it never allocates.
func (is *Issuer) revoked(sid string, iat int64, now time.Time) revocationState {
	if !is.RevokeAccessTokens {
		return notRevoked
	}
	run := is.run.Load()
	if run == nil {
		return revocationUnknown
	}
	n := now.UnixNano()
	if run.shared.stale(n, is.maxStaleness) {
		return revocationUnknown
	}
	if run.shared.deny.denied(sid, iat, n) {
		return sessionRevoked
	}
	return notRevoked
}

// revocationRetry is the Retry-After of a 503 for a token whose revocation
// cannot be checked.
func (is *Issuer) revocationRetry() time.Duration { return max(is.maxStaleness, time.Second) }
