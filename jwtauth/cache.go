package jwtauth

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// tokenCache remembers verified tokens, so a client that sends the same
// token on every request pays for one signature check, not one per request.
//
// It is keyed by a seeded hash of the exact token bytes, and a hit is only a
// hit when the stored token equals the presented one byte for byte: a hash
// collision can never authenticate. It is sharded, each shard with its own
// lock, and evicts with CLOCK (second chance), so a hit takes a read lock on
// one shard and sets one bit; there is no global lock. Entries are bounded in
// number (the configured size, exactly) and in bytes. The caller re-checks
// exp, key presence and revocation on every hit (Validator.stillValid), so an
// entry never outlives what it vouches for. Only verified identities are put
// in it.
type tokenCache struct {
	// hash maps a token to its key. It is a field so tests can force
	// collisions; it is seeded per cache, so collisions cannot be planned.
	hash   func(string) uint64
	mask   uint64 // len(shards)-1, a power of two minus one
	shards []cacheShard

	// refusals is a small negative cache of refused tokens (see
	// rememberRefusal), so a client that repeats a bad token costs a hash
	// lookup per request, not a parse or a signature check. It is
	// direct-mapped and lock-free: a new refusal overwrites whatever shared
	// its slot.
	refusals [refusalSlots]atomic.Pointer[refusal]
}

// refusal is a refused token, the error it got and the remote key
// generation it was refused under.
type refusal struct {
	token string
	gen   uint64
	err   error
}

const (
	maxCacheShards = 16
	// minShardSize keeps shards large enough for CLOCK to tell hot
	// entries from cold ones; small caches have fewer shards.
	minShardSize = 64
	// cacheEntryBudget is the number of bytes budgeted per entry. Typical
	// tokens use well under it; a shard also evicts by bytes, so large
	// tokens take more room and the memory bound holds for any mix.
	cacheEntryBudget = 2048
	// cacheEntryOverhead approximates the memory of an entry beside its
	// token and payload bytes: the identity, its strings and the index.
	cacheEntryOverhead = 256
	// refusalSlots bounds the negative cache: at most this many tokens of
	// at most maxTokenSize bytes each.
	refusalSlots = 256
)

type cacheShard struct {
	mu       sync.RWMutex
	index    map[uint64]int32 // hash -> slot
	slots    []cacheSlot      // fixed capacity
	free     []int32          // empty slots
	hand     int              // CLOCK hand
	bytes    int
	maxBytes int
	_        [64]byte // keep shards' locks on separate cache lines
}

type cacheSlot struct {
	hash uint64
	id   *identity
	ref  atomic.Bool // set on a hit, cleared by the passing CLOCK hand
}

// newTokenCache returns a cache of exactly size entries (size > 0), spread
// over up to 16 shards of at least 64 entries.
func newTokenCache(size int) *tokenCache {
	n := 1
	for n < maxCacheShards && n*2*minShardSize <= size {
		n *= 2
	}
	seed := maphash.MakeSeed()
	c := &tokenCache{
		hash:   func(s string) uint64 { return maphash.String(seed, s) },
		mask:   uint64(n - 1),
		shards: make([]cacheShard, n),
	}
	for i := range c.shards {
		per := size / n
		if i < size%n {
			per++
		}
		s := &c.shards[i]
		s.index = make(map[uint64]int32, per)
		s.slots = make([]cacheSlot, per)
		s.free = make([]int32, per)
		for j := range s.free {
			s.free[j] = int32(per - 1 - j)
		}
		s.maxBytes = per * cacheEntryBudget
	}
	return c
}

func (c *tokenCache) shard(h uint64) *cacheShard {
	return &c.shards[h&c.mask]
}

// The methods below take the token's hash, h = c.hash(tok), which verify
// computes once per request for the positive and the negative cache.

// getH returns the identity cached for exactly tok, or nil.
func (c *tokenCache) getH(h uint64, tok string) *identity {
	s := c.shard(h)
	var id *identity
	s.mu.RLock()
	if i, ok := s.index[h]; ok {
		sl := &s.slots[i]
		if sl.id.token == tok {
			id = sl.id
			if !sl.ref.Load() {
				sl.ref.Store(true)
			}
		}
	}
	s.mu.RUnlock()
	return id
}

func entryCost(id *identity) int { return len(id.token) + len(id.payload) + cacheEntryOverhead }

// putH stores a verified identity, evicting as needed. An entry larger than
// a shard's byte budget is not stored.
func (c *tokenCache) putH(h uint64, id *identity) {
	s := c.shard(h)
	cost := entryCost(id)
	if cost > s.maxBytes {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[h]; ok {
		// The same token verified twice concurrently, or a colliding
		// token: the newer identity takes the slot. get tells colliding
		// tokens apart by comparing them in full.
		s.drop(i)
	}
	for len(s.free) == 0 || s.bytes+cost > s.maxBytes {
		if !s.evictOne() {
			return
		}
	}
	i := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	sl := &s.slots[i]
	sl.hash, sl.id = h, id
	sl.ref.Store(false)
	s.index[h] = i
	s.bytes += cost
}

// evictOne frees one slot, giving recently used entries a second chance.
// It reports false only when the shard is empty.
func (s *cacheShard) evictOne() bool {
	n := len(s.slots)
	for range 2 * n {
		i := s.hand
		if s.hand++; s.hand == n {
			s.hand = 0
		}
		sl := &s.slots[i]
		if sl.id == nil {
			continue
		}
		if sl.ref.Load() {
			sl.ref.Store(false)
			continue
		}
		s.drop(int32(i))
		return true
	}
	return false
}

func (s *cacheShard) drop(i int32) {
	sl := &s.slots[i]
	delete(s.index, sl.hash)
	s.bytes -= entryCost(sl.id)
	sl.id = nil
	s.free = append(s.free, i)
}

// removeH drops tok, if it is cached.
func (c *tokenCache) removeH(h uint64, tok string) {
	s := c.shard(h)
	s.mu.Lock()
	if i, ok := s.index[h]; ok && s.slots[i].id.token == tok {
		s.drop(i)
	}
	s.mu.Unlock()
}

// refusedH returns the error remembered for exactly tok, provided the keys
// have not changed since (gen is the remote key generation, 0 without a
// remote JWKS), or nil.
func (c *tokenCache) refusedH(h uint64, tok string, gen uint64) error {
	r := c.refusals[h%refusalSlots].Load()
	if r == nil || r.gen != gen || r.token != tok {
		return nil
	}
	return r.err
}

// rememberRefusalH remembers why tok was refused with the keys of generation
// gen, when that cannot change while the keys stay the same and time moves
// forward: a malformed token, a wrong iss or aud, a missing claim, an
// expired token (expiry only gets truer), a bad signature. A token that is
// not valid yet (nbf, iat), one that is unverifiable (an unknown kid, whose
// key a refresh may bring, or an alg or typ outside the allow-list), a
// revoked session and an unavailable revocation list are not
// remembered; nor is a bad signature against a local issuer, whose keys
// carry no generation.
func (c *tokenCache) rememberRefusalH(h uint64, tok string, gen uint64, err error, localIssuer bool) {
	ae, ok := err.(*authError)
	if !ok {
		return
	}
	switch ae.err {
	case ErrTokenNotValidYet, ErrTokenUsedBeforeIAT, ErrTokenUnverifiable, ErrRevoked, ErrRevocationUnavailable:
		return
	case ErrTokenSignature:
		if localIssuer {
			return
		}
	}
	c.refusals[h%refusalSlots].Store(&refusal{token: tok, gen: gen, err: err})
}

// keyGeneration identifies the current remote key set (0 without one), so
// refusals remembered under other keys are not used.
func (v *Validator) keyGeneration() uint64 {
	if v.remote == nil {
		return 0
	}
	return v.remote.generation.Load()
}

// len reports the number of entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.index)
		s.mu.RUnlock()
	}
	return n
}

// stats reports the entries, bytes and their bounds, summed over shards.
func (c *tokenCache) stats() (entries, bytes, maxEntries, maxBytes int) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		entries += len(s.index)
		bytes += s.bytes
		maxEntries += len(s.slots)
		maxBytes += s.maxBytes
		s.mu.RUnlock()
	}
	return
}
