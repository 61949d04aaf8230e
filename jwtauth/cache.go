package jwtauth

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// tokenCache remembers verified tokens, so a client that sends the same
// token on every request pays for one signature check, not one per request.
//
// It is keyed by a seeded hash of the exact token bytes, and a hit is only
// a hit when the stored token equals the presented one byte for byte: a hash
// collision can never authenticate. It is sharded, each shard with its own
// lock, and evicts with CLOCK (second chance), so a hit takes a read lock on
// one shard and sets one bit. Entries are bounded in number and in bytes. The
// caller re-checks exp, key presence and revocation on every hit
// (Validator.stillValid), so an entry never outlives what it vouches for.
type tokenCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const (
	cacheShards = 16
	// bytes budgeted per entry: the average token is well under this,
	// and the shard evicts by bytes too, so large tokens cost more room
	cacheEntryBudget = 2048
)

type cacheShard struct {
	mu       sync.RWMutex
	index    map[uint64]int32 // hash -> slot
	slots    []cacheSlot      // fixed capacity
	free     []int32          // empty slots
	hand     int
	bytes    int
	maxBytes int
}

type cacheSlot struct {
	hash uint64
	id   *identity
	ref  atomic.Bool
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed()}
	per := (size + cacheShards - 1) / cacheShards
	for i := range c.shards {
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
	return &c.shards[h%cacheShards]
}

// get returns the identity cached for exactly tok, or nil.
func (c *tokenCache) get(tok string) *identity {
	h := maphash.String(c.seed, tok)
	s := c.shard(h)
	s.mu.RLock()
	var id *identity
	if i, ok := s.index[h]; ok {
		slot := &s.slots[i]
		if slot.id.token == tok {
			id = slot.id
			if !slot.ref.Load() {
				slot.ref.Store(true)
			}
		}
	}
	s.mu.RUnlock()
	return id
}

func entryCost(id *identity) int { return len(id.token) + len(id.payload) + 256 }

// put stores a verified identity.
func (c *tokenCache) put(id *identity) {
	h := maphash.String(c.seed, id.token)
	s := c.shard(h)
	cost := entryCost(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[h]; ok {
		// same hash: the newer token takes the slot; a colliding
		// token is told apart by the full comparison in get
		s.bytes += cost - entryCost(s.slots[i].id)
		s.slots[i].id = id
		return
	}
	if cost > s.maxBytes {
		return
	}
	for len(s.free) == 0 || s.bytes+cost > s.maxBytes {
		if !s.evictOne() {
			return
		}
	}
	i := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	s.slots[i].hash, s.slots[i].id = h, id
	s.slots[i].ref.Store(false)
	s.index[h] = i
	s.bytes += cost
}

// evictOne frees one slot, giving recently used entries a second chance.
func (s *cacheShard) evictOne() bool {
	n := len(s.slots)
	for range 2 * n {
		i := s.hand
		s.hand = (s.hand + 1) % n
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

// remove drops tok.
func (c *tokenCache) remove(tok string) {
	h := maphash.String(c.seed, tok)
	s := c.shard(h)
	s.mu.Lock()
	if i, ok := s.index[h]; ok && s.slots[i].id.token == tok {
		s.drop(i)
	}
	s.mu.Unlock()
}

// len reports the number of entries, for tests.
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
