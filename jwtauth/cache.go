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

	// refusals is a small negative cache of refused tokens, so a client that repeats a bad token costs a hash
	// lookup per request, not a parse or a signature check. It is
	// direct-mapped and lock-free: a new refusal overwrites whatever shared
	// its slot.
	refusals [refusalSlots]atomic.Pointer[refusal]
}

// refusal is a refused token, the error it got and the caller's tag (the
// verifier's key generation) it was refused under.
type refusal struct {
	token string
	tag   uint64
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
	cost int32       // entryCost(id), kept here so eviction never reads a cold identity
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

// cacheKey is a token and its hash, computed once per request by key and
// used for both the positive and the negative cache.
type cacheKey struct {
	hash  uint64
	token string
}

// key returns the cache key of tok.
func (c *tokenCache) key(tok string) cacheKey { return cacheKey{c.hash(tok), tok} }

// get returns the identity cached for exactly k.token, or nil.
func (c *tokenCache) get(k cacheKey) *identity {
	s := c.shard(k.hash)
	var id *identity
	s.mu.RLock()
	if i, ok := s.index[k.hash]; ok {
		sl := &s.slots[i]
		if sl.id.token == k.token {
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

// put stores id under k, evicting as needed. An entry larger than a shard's
// byte budget is not stored.
func (c *tokenCache) put(k cacheKey, id *identity) {
	h := k.hash
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
	sl.hash, sl.id, sl.cost = h, id, int32(cost)
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
	s.bytes -= int(sl.cost)
	sl.id, sl.cost = nil, 0
	s.free = append(s.free, i)
}

// remove drops k.token, if it is cached.
func (c *tokenCache) remove(k cacheKey) {
	s := c.shard(k.hash)
	s.mu.Lock()
	if i, ok := s.index[k.hash]; ok && s.slots[i].id.token == k.token {
		s.drop(i)
	}
	s.mu.Unlock()
}

// refused returns the error remembered for exactly k.token under tag, or
// nil. The tag is the caller's: an error remembered under another tag is
// not returned.
func (c *tokenCache) refused(k cacheKey, tag uint64) error {
	r := c.refusals[k.hash%refusalSlots].Load()
	if r == nil || r.tag != tag || r.token != k.token {
		return nil
	}
	return r.err
}

// putRefused remembers err for k.token under tag, overwriting whatever
// shared its slot.
func (c *tokenCache) putRefused(k cacheKey, tag uint64, err error) {
	c.refusals[k.hash%refusalSlots].Store(&refusal{token: k.token, tag: tag, err: err})
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
