package jwtauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Sessions are refresh-token families. A login starts one; rotation replaces
// its current refresh token and remembers the hashes of the tokens it
// replaced, so that presenting one again (reuse: the token was copied) ends
// the whole family. Only SHA-256 hashes of refresh tokens are ever stored.

const (
	// sessionKeyPrefix prefixes the store key of every session record.
	sessionKeyPrefix = "session/"
	// rotationGrace is how long the token a rotation just replaced is still
	// accepted for an access-token refresh (or a logout), so that a
	// refresh exactly concurrent with its own rotation is not taken for
	// reuse.
	rotationGrace = 2 * time.Second
	// maxRotatedHashes bounds the rotated-out hashes a family remembers
	// for reuse detection; a token older than that is merely unknown.
	maxRotatedHashes = 16
	// sweepInterval is how often dead sessions are deleted.
	sweepInterval = time.Minute
	// purgeBatch bounds the deletions written at once by a sweep.
	purgeBatch = 512
	// refreshTokenBytes is the entropy of a refresh token.
	refreshTokenBytes = 32
	// maxSessionsPerLogin bounds the sessions one user holds: a login
	// beyond it ends the user's oldest session, so that valid
	// credentials cannot grow the store without limit.
	maxSessionsPerLogin = 100
)

// Errors of session operations. Each is answered with 401, except store
// failures (errStoreUnavailable), answered with 503.
var (
	errRefreshUnknown  = errors.New("unknown refresh token")
	errSessionEnded    = errors.New("session ended")
	errRefreshReused   = errors.New("refresh token reused: session revoked")
	errJustRotated     = errors.New("refresh token was just rotated")
	errSessionMismatch = errors.New("the access token belongs to another session")
)

// sessionRecord is a session as stored. Times are Unix nanoseconds.
type sessionRecord struct {
	SID    string      `json:"sid"`
	Login  string      `json:"login"`
	UserID json.Number `json:"user_id"`
	// FP fingerprints the user's password hash, disabled flag, user_id
	// and claims at login: when any changes, the session ends.
	FP       string `json:"fp"`
	Created  int64  `json:"created"`
	LastUsed int64  `json:"last_used"`
	Gen      uint64 `json:"gen"`
	// Current is the hex SHA-256 of the current refresh token.
	Current string `json:"current"`
	// Rotated are the hashes the family's rotations replaced, oldest
	// first, with the time each was replaced.
	Rotated []rotatedHash `json:"rotated,omitempty"`
}

type rotatedHash struct {
	Hash string `json:"hash"`
	At   int64  `json:"at"`
}

// session is a record in memory. rec and the hashes are immutable once the
// session is published; a change publishes a new *session.
type session struct {
	rec     sessionRecord
	cur     [32]byte
	rotated [][32]byte // same order as rec.Rotated
	// lastUsed is the exact last use; rec.LastUsed is persisted coarsely.
	lastUsed atomic.Int64
	// ended is set as soon as the family must end, before its deletion is
	// durable, so a failing store never keeps a revoked family usable.
	ended atomic.Bool
}

func (s *session) created() time.Time { return time.Unix(0, s.rec.Created) }

func newSession(rec sessionRecord) (*session, error) {
	s := &session{rec: rec}
	if err := decodeHash(rec.Current, &s.cur); err != nil {
		return nil, err
	}
	s.rotated = make([][32]byte, len(rec.Rotated))
	for i, r := range rec.Rotated {
		if err := decodeHash(r.Hash, &s.rotated[i]); err != nil {
			return nil, err
		}
	}
	s.lastUsed.Store(rec.LastUsed)
	return s, nil
}

func decodeHash(s string, dst *[32]byte) error {
	if len(s) != 64 {
		return errors.New("bad token hash")
	}
	_, err := hex.Decode(dst[:], []byte(s))
	return err
}

// hashRefreshToken is what the store keeps of a refresh token.
func hashRefreshToken(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// newRefreshToken returns 256 random bits, base64url, and their hash.
func newRefreshToken() (string, [32]byte, error) {
	b := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", [32]byte{}, err
	}
	tok := b64.EncodeToString(b)
	return tok, hashRefreshToken(tok), nil
}

// validRefreshTokenSyntax reports whether tok can be one of ours; anything
// else is unknown without a lookup.
func validRefreshTokenSyntax(tok string) bool {
	if len(tok) != b64.EncodedLen(refreshTokenBytes) {
		return false
	}
	_, err := b64.DecodeString(tok)
	return err == nil
}

// sessionPolicy decides when a session is dead, under one issuer config.
type sessionPolicy struct {
	refreshTTL time.Duration
	idle       time.Duration
	user       func(login string) *issuerUser
	now        func() time.Time
}

// dead reports whether s has ended: revoked, past refresh_ttl, idle past
// idle_timeout, or its user changed, disabled or removed.
func (p *sessionPolicy) dead(s *session, now time.Time) bool {
	if s.ended.Load() {
		return true
	}
	n := now.UnixNano()
	if n >= s.rec.Created+int64(p.refreshTTL) || n >= s.lastUsed.Load()+int64(p.idle) {
		return true
	}
	u := p.user(s.rec.Login)
	return u == nil || u.disabled || u.fp != s.rec.FP
}

// end returns when the session ends at the latest: its absolute lifetime.
func (p *sessionPolicy) end(s *session) time.Time {
	return s.created().Add(p.refreshTTL)
}

// issuerState is an issuer's store with its in-memory indexes. It is shared across config reloads through issuerPool, keyed by
// the absolute store_dir, and holds no caddy.Context.
type issuerState struct {
	dir    string
	store  *store
	logger *zap.Logger

	// writeMu serializes every change: read the index, write the store,
	// then publish to the index. Readers only take mu.
	writeMu  sync.Mutex
	mu       sync.RWMutex
	sessions map[string]*session            // by sid
	byHash   map[[32]byte]*session          // current and rotated hashes
	byLogin  map[string]map[string]*session // login -> sid -> session

	// policies of the configs using this state. The sweeper deletes a
	// session only when every one of them finds it dead, so a config that
	// is being loaded (and may yet fail) never deletes sessions that the
	// running config still honours; per-request checks apply each
	// config's own policy at once.
	polMu    sync.Mutex
	policies map[*sessionPolicy]struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

var issuerPool = caddy.NewUsagePool()

// openIssuerState opens the store in dir, builds the indexes and starts the
// sweeper.
func openIssuerState(dir string, logger *zap.Logger) (*issuerState, error) {
	st, err := loadIssuerState(dir, logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel, st.done = cancel, make(chan struct{})
	go st.sweepLoop(ctx)
	return st, nil
}

// loadIssuerState opens the store and indexes it, without a sweeper.
func loadIssuerState(dir string, logger *zap.Logger) (*issuerState, error) {
	s, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	st := &issuerState{
		dir: dir, store: s, logger: logger,
		sessions: make(map[string]*session),
		byHash:   make(map[[32]byte]*session),
		byLogin:  make(map[string]map[string]*session),
	}
	var bad error
	s.Range(func(key string, val []byte) bool {
		if !strings.HasPrefix(key, sessionKeyPrefix) {
			return true
		}
		var rec sessionRecord
		if err := json.Unmarshal(val, &rec); err != nil || rec.SID == "" || sessionKeyPrefix+rec.SID != key {
			bad = fmt.Errorf("store %s: record %q is not a valid session", dir, key)
			return false
		}
		ss, err := newSession(rec)
		if err != nil {
			bad = fmt.Errorf("store %s: record %q: %v", dir, key, err)
			return false
		}
		for _, h := range ss.hashes() {
			if _, dup := st.byHash[h]; dup {
				bad = fmt.Errorf("store %s: record %q repeats a token hash", dir, key)
				return false
			}
			st.byHash[h] = ss
		}
		st.index(ss)
		return true
	})
	if bad != nil {
		_ = s.Close()
		return nil, bad
	}
	return st, nil
}

func (s *session) hashes() [][32]byte {
	return append([][32]byte{s.cur}, s.rotated...)
}

// Destruct stops the sweeper and closes the store when the last config
// using it is gone.
func (st *issuerState) Destruct() error {
	if st.cancel != nil {
		st.cancel()
		<-st.done
	}
	return st.store.Close()
}

func (st *issuerState) sweepLoop(ctx context.Context) {
	defer close(st.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := st.sweep(); err != nil {
				st.logger.Warn("deleting ended sessions", zap.Error(err))
			}
		}
	}
}

// register adds a config's policy.
func (st *issuerState) register(p *sessionPolicy) {
	st.polMu.Lock()
	if st.policies == nil {
		st.policies = make(map[*sessionPolicy]struct{})
	}
	st.policies[p] = struct{}{}
	st.polMu.Unlock()
}

// unregister removes a config's policy.
func (st *issuerState) unregister(p *sessionPolicy) {
	st.polMu.Lock()
	delete(st.policies, p)
	st.polMu.Unlock()
}

// sweep deletes the sessions that every registered policy finds dead.
func (st *issuerState) sweep() (int, error) {
	st.polMu.Lock()
	ps := make([]*sessionPolicy, 0, len(st.policies))
	for p := range st.policies {
		ps = append(ps, p)
	}
	st.polMu.Unlock()
	if len(ps) == 0 {
		return 0, nil
	}
	now := ps[0].now()
	return st.purge(func(s *session) bool {
		for _, p := range ps {
			if !p.dead(s, now) {
				return false
			}
		}
		return true
	})
}

// get returns the live record of sid, or nil.
func (st *issuerState) get(sid string) *session {
	st.mu.RLock()
	s := st.sessions[sid]
	st.mu.RUnlock()
	return s
}

// match is how a presented refresh token relates to its family.
type match int

const (
	matchNone    match = iota
	matchCurrent       // the family's current token
	matchGrace         // the token the last rotation replaced, within rotationGrace
	matchReused        // any other rotated-out token
)

// find looks a refresh token's hash up.
func (st *issuerState) find(h [32]byte, now time.Time) (*session, match) {
	st.mu.RLock()
	s := st.byHash[h]
	st.mu.RUnlock()
	if s == nil {
		return nil, matchNone
	}
	if s.cur == h {
		return s, matchCurrent
	}
	last := len(s.rotated) - 1
	if last >= 0 && s.rotated[last] == h && now.UnixNano()-s.rec.Rotated[last].At <= int64(rotationGrace) {
		return s, matchGrace
	}
	return s, matchReused
}

// create stores a new session and returns it with its refresh token.
func (st *issuerState) create(u *issuerUser, now time.Time) (*session, string, error) {
	tok, h, err := newRefreshToken()
	if err != nil {
		return nil, "", err
	}
	sid, err := randomID(16)
	if err != nil {
		return nil, "", err
	}
	rec := sessionRecord{
		SID: sid, Login: u.login, UserID: u.userID, FP: u.fp,
		Created: now.UnixNano(), LastUsed: now.UnixNano(),
		Current: hex.EncodeToString(h[:]),
	}
	s, err := newSession(rec)
	if err != nil {
		return nil, "", err
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return nil, "", err
	}
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	ops := []storeOp{{Key: sessionKeyPrefix + sid, Value: val}}
	var oldest *session
	if mine := st.byLogin[u.login]; len(mine) >= maxSessionsPerLogin {
		for _, o := range mine {
			if oldest == nil || o.rec.Created < oldest.rec.Created {
				oldest = o
			}
		}
		ops = append(ops, storeOp{Key: sessionKeyPrefix + oldest.rec.SID, Delete: true})
	}
	if err := st.store.Apply(ops...); err != nil {
		return nil, "", err
	}
	st.mu.Lock()
	if oldest != nil {
		oldest.ended.Store(true)
		st.unindex(oldest)
	}
	st.index(s)
	st.byHash[h] = s
	st.mu.Unlock()
	return s, tok, nil
}

// index adds s to the sid and login indexes; the caller holds mu (or owns
// st alone).
func (st *issuerState) index(s *session) {
	st.sessions[s.rec.SID] = s
	mine := st.byLogin[s.rec.Login]
	if mine == nil {
		mine = make(map[string]*session)
		st.byLogin[s.rec.Login] = mine
	}
	mine[s.rec.SID] = s
}

// use checks a refresh token for an access-token refresh and records the
// use. The current token and, within rotationGrace, the one just rotated out
// are accepted; any other rotated-out token ends the family.
func (st *issuerState) use(tok string, p *sessionPolicy, now time.Time) (*session, error) {
	if !validRefreshTokenSyntax(tok) {
		return nil, errRefreshUnknown
	}
	s, m := st.find(hashRefreshToken(tok), now)
	switch {
	case m == matchNone:
		return nil, errRefreshUnknown
	case p.dead(s, now):
		// refused at once; the sweeper deletes it once every config
		// using the store agrees that it is dead
		return nil, errSessionEnded
	case m == matchReused:
		st.reused(s)
		return nil, errRefreshReused
	}
	st.touch(s, p, now)
	return s, nil
}

// touch records a use in memory, and in the store when the stored time is
// older than a fraction of idle_timeout, so that refreshes do not each cost
// a write while idle_timeout stays accurate across restarts. A failed write
// only makes the session look idle earlier.
func (st *issuerState) touch(s *session, p *sessionPolicy, now time.Time) {
	n := now.UnixNano()
	for {
		old := s.lastUsed.Load()
		if old >= n || s.lastUsed.CompareAndSwap(old, n) {
			break
		}
	}
	every := min(max(p.idle/64, time.Second), time.Hour)
	if n-s.rec.LastUsed < int64(every) {
		return
	}
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	cur := st.get(s.rec.SID)
	if cur == nil || cur.ended.Load() || n-cur.rec.LastUsed < int64(every) {
		return
	}
	rec := cur.rec
	rec.LastUsed = max(n, cur.lastUsed.Load())
	_ = st.replace(cur, rec)
}

// replace writes rec as the new version of cur and publishes it. The caller
// holds writeMu.
func (st *issuerState) replace(cur *session, rec sessionRecord) error {
	ns, err := newSession(rec)
	if err != nil {
		return err
	}
	if l := cur.lastUsed.Load(); l > rec.LastUsed {
		ns.lastUsed.Store(l)
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := st.store.Put(sessionKeyPrefix+rec.SID, val); err != nil {
		return err
	}
	st.mu.Lock()
	for _, h := range cur.hashes() {
		delete(st.byHash, h)
	}
	for _, h := range ns.hashes() {
		st.byHash[h] = ns
	}
	st.index(ns)
	st.mu.Unlock()
	return nil
}

// rotate replaces the current refresh token of the family that tok belongs
// to, if sid (from the caller's access token) names that family. Exactly one
// of concurrent rotations of one token wins; the others get errJustRotated
// within the grace period and end the family after it.
func (st *issuerState) rotate(tok, sid string, p *sessionPolicy, now time.Time) (*session, string, error) {
	if !validRefreshTokenSyntax(tok) {
		return nil, "", errRefreshUnknown
	}
	h := hashRefreshToken(tok)
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	s, m := st.find(h, now)
	switch {
	case m == matchNone:
		return nil, "", errRefreshUnknown
	case p.dead(s, now):
		return nil, "", errSessionEnded
	case m == matchGrace:
		return nil, "", errJustRotated
	case m == matchReused:
		s.ended.Store(true)
		st.warnReuse(s)
		_ = st.deleteLocked(s)
		return nil, "", errRefreshReused
	case s.rec.SID != sid:
		return nil, "", errSessionMismatch
	}
	newTok, nh, err := newRefreshToken()
	if err != nil {
		return nil, "", err
	}
	rec := s.rec
	rec.Gen++
	rec.LastUsed = max(now.UnixNano(), s.lastUsed.Load())
	rec.Rotated = append(append([]rotatedHash(nil), s.rec.Rotated...), rotatedHash{Hash: s.rec.Current, At: now.UnixNano()})
	if len(rec.Rotated) > maxRotatedHashes {
		rec.Rotated = rec.Rotated[len(rec.Rotated)-maxRotatedHashes:]
	}
	rec.Current = hex.EncodeToString(nh[:])
	if err := st.replace(s, rec); err != nil {
		return nil, "", err
	}
	return st.get(rec.SID), newTok, nil
}

// revoke ends the family of tok (logout). It reports whether tok was known.
// A rotated-out token outside the grace period is reuse, and logged as
// such; the family ends either way.
func (st *issuerState) revoke(tok string, now time.Time) (bool, error) {
	if !validRefreshTokenSyntax(tok) {
		return false, nil
	}
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	s, m := st.find(hashRefreshToken(tok), now)
	if m == matchNone {
		return false, nil
	}
	s.ended.Store(true)
	if m == matchReused {
		st.warnReuse(s)
	}
	return true, st.deleteLocked(s)
}

// reused ends a family whose rotated-out token came back.
func (st *issuerState) reused(s *session) {
	s.ended.Store(true)
	st.warnReuse(s)
	st.endQuietly(s)
}

func (st *issuerState) warnReuse(s *session) {
	st.logger.Warn("refresh token reuse detected: session revoked",
		zap.String("sid", s.rec.SID), zap.String("login", s.rec.Login))
}

// endQuietly ends a family that is already refused. If the deletion fails,
// the family stays marked ended in memory and the sweeper retries.
func (st *issuerState) endQuietly(s *session) {
	s.ended.Store(true)
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	_ = st.deleteLocked(s)
}

// deleteLocked deletes the current version of s's family. The caller holds
// writeMu.
func (st *issuerState) deleteLocked(s *session) error {
	cur := st.get(s.rec.SID)
	if cur == nil {
		return nil
	}
	cur.ended.Store(true)
	if err := st.store.Delete(sessionKeyPrefix + cur.rec.SID); err != nil {
		return err
	}
	st.mu.Lock()
	st.unindex(cur)
	st.mu.Unlock()
	return nil
}

// unindex removes cur from the indexes; the caller holds mu.
func (st *issuerState) unindex(cur *session) {
	for _, h := range cur.hashes() {
		if st.byHash[h] == cur {
			delete(st.byHash, h)
		}
	}
	if st.sessions[cur.rec.SID] == cur {
		delete(st.sessions, cur.rec.SID)
	}
	if mine := st.byLogin[cur.rec.Login]; mine[cur.rec.SID] == cur {
		delete(mine, cur.rec.SID)
		if len(mine) == 0 {
			delete(st.byLogin, cur.rec.Login)
		}
	}
}

// purge deletes every dead session, in batches, so that one sweep never
// holds writeMu for long. It returns how many it deleted.
func (st *issuerState) purge(isDead func(*session) bool) (int, error) {
	var dead []string
	st.mu.RLock()
	for sid, s := range st.sessions {
		if isDead(s) {
			dead = append(dead, sid)
		}
	}
	st.mu.RUnlock()
	n := 0
	for len(dead) > 0 {
		batch := dead[:min(len(dead), purgeBatch)]
		dead = dead[len(batch):]
		k, err := st.purgeBatch(batch, isDead)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (st *issuerState) purgeBatch(sids []string, isDead func(*session) bool) (int, error) {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	var ops []storeOp
	var gone []*session
	for _, sid := range sids {
		if s := st.get(sid); s != nil && isDead(s) {
			s.ended.Store(true)
			ops = append(ops, storeOp{Key: sessionKeyPrefix + sid, Delete: true})
			gone = append(gone, s)
		}
	}
	if len(ops) == 0 {
		return 0, nil
	}
	if err := st.store.Apply(ops...); err != nil {
		return 0, err
	}
	st.mu.Lock()
	for _, s := range gone {
		st.unindex(s)
	}
	st.mu.Unlock()
	return len(gone), nil
}

// count returns the number of indexed sessions.
func (st *issuerState) count() int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.sessions)
}
