package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	bolt "go.etcd.io/bbolt"
)

// sweepBatch bounds the sessions one Sweep transaction deletes, so that a
// sweep never holds the writer for long.
const sweepBatch = 512

// errNeedWrite ends a read transaction that found something to write; the
// operation then runs again in a write transaction.
var errNeedWrite = errors.New("needs a write transaction")

// txn is the buckets of one transaction.
type txn struct {
	sess, hashes, logins *bolt.Bucket
}

func buckets(tx *bolt.Tx) txn {
	return txn{tx.Bucket(bucketSessions), tx.Bucket(bucketHashes), tx.Bucket(bucketLogins)}
}

func (x txn) load(sid []byte) (record, bool, error) {
	v := x.sess.Get(sid)
	if v == nil {
		return record{}, false, nil
	}
	r, err := decodeRecord(v)
	if err != nil {
		return record{}, false, fmt.Errorf("session %q: %w", sid, err)
	}
	return r, true, nil
}

func (x txn) put(sid string, r *record) error {
	return x.sess.Put([]byte(sid), r.encode())
}

// insert stores a new session and its indexes.
func (x txn) insert(sid string, r *record) error {
	if err := x.put(sid, r); err != nil {
		return err
	}
	if err := x.hashes.Put(r.Cur[:], []byte(sid)); err != nil {
		return err
	}
	return x.logins.Put(loginKey(r.Login, sid), nil)
}

// remove deletes a session and its indexes.
func (x txn) remove(sid string, r *record) error {
	if err := x.sess.Delete([]byte(sid)); err != nil {
		return err
	}
	for _, h := range append([]sessions.Hash{r.Cur}, r.Rotated...) {
		if err := x.hashes.Delete(h[:]); err != nil {
			return err
		}
	}
	return x.logins.Delete(loginKey(r.Login, sid))
}

// match is how a presented refresh token relates to its family.
type match int

const (
	matchNone    match = iota
	matchCurrent       // the family's current token
	matchGrace         // the token the last rotation replaced, within Policy.Grace
	matchReused        // any other replaced token
)

// lookup finds the family of tok.
func (x txn) lookup(p sessions.Policy, tok string, now int64) (string, record, match, error) {
	if !sessions.ValidToken(tok) {
		return "", record{}, matchNone, nil
	}
	h := sessions.HashToken(tok)
	v := x.hashes.Get(h[:])
	if v == nil {
		return "", record{}, matchNone, nil
	}
	sid := string(v)
	r, ok, err := x.load(v)
	if err != nil {
		return "", record{}, matchNone, err
	}
	if !ok {
		return "", record{}, matchNone, fmt.Errorf("token hash of missing session %q", sid)
	}
	last := len(r.Rotated) - 1
	switch {
	case r.Cur == h:
		return sid, r, matchCurrent, nil
	case last >= 0 && r.Rotated[last] == h && r.inGrace(p, now):
		return sid, r, matchGrace, nil
	case slices.Contains(r.Rotated, h):
		return sid, r, matchReused, nil
	}
	return "", record{}, matchNone, fmt.Errorf("token hash not in session %q", sid)
}

// result is what an operation found; it is reset at each run, since a
// write may run more than once.
type result struct {
	s     sessions.Session
	tok   string
	revs  []sessions.Revocation
	err   error // a refusal: ErrUnknown, ErrEnded, ErrReused, ErrMismatch
	found bool
}

// end removes a session and reports it as revoked.
func (x txn) end(res *result, sid string, r *record, reason sessions.Reason, now time.Time) error {
	if err := x.remove(sid, r); err != nil {
		return err
	}
	res.revs = append(res.revs, sessions.Revocation{SID: sid, Login: r.Login, Reason: reason, At: now})
	return nil
}

// do runs op in a read transaction and, if op needs to write
// (errNeedWrite) or write is set, in a write transaction.
func (s *Store) do(ctx context.Context, write bool, op func(x txn, writable bool) error) error {
	if err := ctx.Err(); err != nil {
		return s.fail(err)
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if !write {
		err := s.view(func(tx *bolt.Tx) error { return op(buckets(tx), false) })
		if !errors.Is(err, errNeedWrite) {
			return err
		}
	}
	return s.update(func(tx *bolt.Tx) error { return op(buckets(tx), true) })
}

// Create implements sessions.Store.
func (s *Store) Create(ctx context.Context, p sessions.Policy, n sessions.New, now time.Time) (sessions.Session, string, []sessions.Revocation, error) {
	tok, sid, err := sessions.NewFamily()
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	nano := now.UnixNano()
	var res result
	err = s.do(ctx, true, func(x txn, _ bool) error {
		res = result{}
		if x.sess.Get([]byte(sid)) != nil {
			return fmt.Errorf("session id %q exists", sid)
		}
		if p.MaxPerLogin > 0 {
			live, err := x.liveOf(p, n.Login, nano)
			if err != nil {
				return err
			}
			for i := range len(live) - p.MaxPerLogin + 1 {
				if err := x.end(&res, live[i].sid, &live[i].r, sessions.ReasonBound, now); err != nil {
					return err
				}
			}
		}
		r := record{Created: nano, LastUsed: nano, Cur: sessions.HashToken(tok), Login: n.Login, UserID: n.UserID, FP: n.FP}
		if err := x.insert(sid, &r); err != nil {
			return err
		}
		res.s, res.tok = r.session(sid), tok
		return nil
	})
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	return res.s, res.tok, res.revs, nil
}

type stored struct {
	sid string
	r   record
}

// liveOf returns the live sessions of login, oldest first.
func (x txn) liveOf(p sessions.Policy, login string, now int64) ([]stored, error) {
	var live []stored
	prefix := loginPrefix(login)
	c := x.logins.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		sid := k[len(prefix):]
		r, ok, err := x.load(sid)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("login index names missing session %q", sid)
		}
		if r.live(p, now) {
			live = append(live, stored{string(sid), r})
		}
	}
	sortStored(live)
	return live, nil
}

func sortStored(l []stored) {
	slices.SortFunc(l, func(a, b stored) int {
		return cmp.Or(cmp.Compare(a.r.Created, b.r.Created), cmp.Compare(a.sid, b.sid))
	})
}

// Find implements sessions.Store.
func (s *Store) Find(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Session, []sessions.Revocation, error) {
	return s.refresh(ctx, p, tok, now, false)
}

// Use implements sessions.Store.
func (s *Store) Use(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Session, []sessions.Revocation, error) {
	return s.refresh(ctx, p, tok, now, true)
}

// refresh is Find, and Use when record is set.
func (s *Store) refresh(ctx context.Context, p sessions.Policy, tok string, now time.Time, record bool) (sessions.Session, []sessions.Revocation, error) {
	nano := now.UnixNano()
	var res result
	err := s.do(ctx, false, func(x txn, writable bool) error {
		res = result{}
		sid, r, _, ok, err := x.family(p, tok, now, writable, &res)
		switch {
		case !ok:
			return err
		case record && !writable:
			return errNeedWrite
		case record:
			r.LastUsed = max(r.LastUsed, nano)
			dropStaleSeal(p, &r, nano)
			if err := x.put(sid, &r); err != nil {
				return err
			}
			res.s = r.session(sid)
		default:
			res.s = r.session(sid)
		}
		return nil
	})
	if err != nil {
		return sessions.Session{}, nil, err
	}
	return res.s, res.revs, res.err
}

// family looks tok's family up and settles what Find, Use and Rotate
// share: an unknown token (ErrUnknown), a dead session (ErrEnded) and
// reuse, which ends the family (ErrReused) and so needs a writable
// transaction. ok is false when res holds the answer or err is to be
// returned; then the operation is over.
func (x txn) family(p sessions.Policy, tok string, now time.Time, writable bool, res *result) (sid string, r record, m match, ok bool, err error) {
	nano := now.UnixNano()
	sid, r, m, err = x.lookup(p, tok, nano)
	switch {
	case err != nil:
	case m == matchNone:
		res.err = sessions.ErrUnknown
	case !r.live(p, nano):
		res.err = sessions.ErrEnded
	case m == matchReused && !writable:
		err = errNeedWrite
	case m == matchReused:
		res.err = sessions.ErrReused
		err = x.end(res, sid, &r, sessions.ReasonReuse, now)
	default:
		ok = true
	}
	return sid, r, m, ok, err
}

// dropStaleSeal forgets the sealed successor once the grace window is
// over.
func dropStaleSeal(p sessions.Policy, r *record, now int64) {
	if len(r.Sealed) > 0 && !r.inGrace(p, now) {
		r.Sealed = nil
	}
}

// Rotate implements sessions.Store.
func (s *Store) Rotate(ctx context.Context, p sessions.Policy, tok, sid string, now time.Time) (sessions.Session, string, []sessions.Revocation, error) {
	next, err := sessions.NewToken()
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	nano := now.UnixNano()
	var res result
	err = s.do(ctx, false, func(x txn, writable bool) error {
		res = result{}
		fsid, r, m, ok, err := x.family(p, tok, now, writable, &res)
		switch {
		case !ok:
			return err
		case fsid != sid:
			res.err = sessions.ErrMismatch
		case m == matchGrace && len(r.Sealed) == 0:
			// A Sweep under a shorter grace dropped the successor: the
			// retry cannot be answered, but it is no reuse either.
			res.err = sessions.ErrUnknown
		case m == matchGrace:
			// A retry: the successor the rotation made.
			succ, err := sessions.OpenSuccessor(tok, r.Sealed, fsid)
			if err != nil {
				return fmt.Errorf("session %q: sealed successor: %w", fsid, err)
			}
			res.s, res.tok = r.session(fsid), succ
		case !writable:
			return errNeedWrite
		default:
			sealed, err := sessions.SealSuccessor(tok, next, fsid)
			if err != nil {
				return err
			}
			r.Rotated = append(r.Rotated, r.Cur)
			if drop := len(r.Rotated) - maxRotated; drop > 0 {
				for _, h := range r.Rotated[:drop] {
					if err := x.hashes.Delete(h[:]); err != nil {
						return err
					}
				}
				r.Rotated = slices.Clone(r.Rotated[drop:])
			}
			r.Cur = sessions.HashToken(next)
			r.RotatedAt, r.Sealed = nano, sealed
			r.Gen++
			r.LastUsed = max(r.LastUsed, nano)
			if err := x.put(fsid, &r); err != nil {
				return err
			}
			if err := x.hashes.Put(r.Cur[:], []byte(fsid)); err != nil {
				return err
			}
			res.s, res.tok = r.session(fsid), next
		}
		return nil
	})
	if err != nil {
		return sessions.Session{}, "", nil, err
	}
	return res.s, res.tok, res.revs, res.err
}

// Revoke implements sessions.Store.
func (s *Store) Revoke(ctx context.Context, p sessions.Policy, tok string, now time.Time) (sessions.Revocation, bool, error) {
	nano := now.UnixNano()
	var res result
	err := s.do(ctx, false, func(x txn, writable bool) error {
		res = result{}
		sid, r, m, err := x.lookup(p, tok, nano)
		switch {
		case err != nil:
			return err
		case m == matchNone || !r.live(p, nano):
			return nil
		case !writable:
			return errNeedWrite
		}
		reason := sessions.ReasonLogout
		if m == matchReused {
			reason = sessions.ReasonReuse
		}
		res.found = true
		return x.end(&res, sid, &r, reason, now)
	})
	if err != nil || !res.found {
		return sessions.Revocation{}, false, err
	}
	return res.revs[0], true, nil
}

// RevokeSID implements sessions.Store.
func (s *Store) RevokeSID(ctx context.Context, sid string, reason sessions.Reason, now time.Time) (sessions.Revocation, bool, error) {
	var res result
	err := s.do(ctx, false, func(x txn, writable bool) error {
		res = result{}
		r, ok, err := x.load([]byte(sid))
		switch {
		case err != nil:
			return err
		case !ok:
			return nil
		case !writable:
			return errNeedWrite
		}
		res.found = true
		return x.end(&res, sid, &r, reason, now)
	})
	if err != nil || !res.found {
		return sessions.Revocation{}, false, err
	}
	return res.revs[0], true, nil
}

// RevokeLogin implements sessions.Store.
func (s *Store) RevokeLogin(ctx context.Context, login string, reason sessions.Reason, now time.Time) ([]sessions.Revocation, error) {
	var res result
	err := s.do(ctx, false, func(x txn, writable bool) error {
		res = result{}
		prefix := loginPrefix(login)
		var sids []string
		c := x.logins.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			sids = append(sids, string(k[len(prefix):]))
		}
		if len(sids) == 0 {
			return nil
		}
		if !writable {
			return errNeedWrite
		}
		for _, sid := range sids {
			r, ok, err := x.load([]byte(sid))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("login index names missing session %q", sid)
			}
			if err := x.end(&res, sid, &r, reason, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res.revs, nil
}

// Get implements sessions.Store.
func (s *Store) Get(ctx context.Context, p sessions.Policy, sid string, now time.Time) (sessions.Session, bool, error) {
	var res result
	err := s.do(ctx, false, func(x txn, _ bool) error {
		res = result{}
		r, ok, err := x.load([]byte(sid))
		if err != nil || !ok || !r.live(p, now.UnixNano()) {
			return err
		}
		res.s, res.found = r.session(sid), true
		return nil
	})
	return res.s, res.found && err == nil, err
}

// List implements sessions.Store.
func (s *Store) List(ctx context.Context, p sessions.Policy, login string, now time.Time) ([]sessions.Session, error) {
	nano := now.UnixNano()
	var live []stored
	err := s.do(ctx, false, func(x txn, _ bool) error {
		live = nil
		if login != "" {
			var err error
			live, err = x.liveOf(p, login, nano)
			return err
		}
		err := x.sess.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("session %q: %w", k, err)
			}
			if r.live(p, nano) {
				live = append(live, stored{string(k), r})
			}
			return nil
		})
		sortStored(live)
		return err
	})
	if err != nil {
		return nil, err
	}
	l := make([]sessions.Session, len(live))
	for i := range live {
		l[i] = live[i].r.session(live[i].sid)
	}
	return l, nil
}

// Count implements sessions.Store. It reads every session.
func (s *Store) Count(ctx context.Context, p sessions.Policy, now time.Time) (int, error) {
	nano := now.UnixNano()
	n := 0
	err := s.do(ctx, false, func(x txn, _ bool) error {
		n = 0
		return x.sess.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("session %q: %w", k, err)
			}
			if r.live(p, nano) {
				n++
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Sweep implements sessions.Store: it deletes the sessions dead under p
// and drops sealed successors past p.Grace, in transactions of at most
// sweepBatch sessions.
func (s *Store) Sweep(ctx context.Context, p sessions.Policy, now time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, s.fail(err)
	}
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	nano := now.UnixNano()
	var todo []string
	err := s.view(func(tx *bolt.Tx) error {
		return buckets(tx).sess.ForEach(func(k, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("session %q: %w", k, err)
			}
			if !r.live(p, nano) || (len(r.Sealed) > 0 && !r.inGrace(p, nano)) {
				todo = append(todo, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for len(todo) > 0 {
		chunk := todo[:min(len(todo), sweepBatch)]
		todo = todo[len(chunk):]
		deleted := 0
		err := s.update(func(tx *bolt.Tx) error {
			x := buckets(tx)
			deleted = 0
			for _, sid := range chunk {
				r, ok, err := x.load([]byte(sid))
				switch {
				case err != nil:
					return err
				case !ok:
				case !r.live(p, nano):
					if err := x.remove(sid, &r); err != nil {
						return err
					}
					deleted++
				case len(r.Sealed) > 0 && !r.inGrace(p, nano):
					r.Sealed = nil
					if err := x.put(sid, &r); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += deleted
	}
	return total, nil
}

var _ sessions.Store = (*Store)(nil)
