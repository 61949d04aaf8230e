package jwtauth

// This file adapts the session accessors of the operator features (admin
// API, users-file reload, metrics) to today's issuerState. The session-store
// rework provides the same four methods on sessions.Store; at merge, this
// file is replaced by theirs. Each revocation made here goes through
// recordRevocations, as the store's returned []sessions.Revocation must.

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// listSessions returns the live sessions of login, or of every login when
// login is "", oldest first. It never returns a token or a token hash.
func (is *Issuer) listSessions(_ context.Context, login string) ([]sessions.Session, error) {
	st := is.state
	if st == nil {
		return nil, errStoreUnavailable
	}
	now := is.now()
	st.mu.RLock()
	var out []sessions.Session
	add := func(s *session) {
		if !is.policy.dead(s, now) {
			out = append(out, sessions.Session{
				SID: s.rec.SID, Login: s.rec.Login, UserID: s.rec.UserID.String(), FP: s.rec.FP,
				Created: time.Unix(0, s.rec.Created), LastUsed: time.Unix(0, s.lastUsed.Load()), Gen: s.rec.Gen,
			})
		}
	}
	if login == "" {
		for _, s := range st.sessions {
			add(s)
		}
	} else {
		for _, s := range st.byLogin[login] {
			add(s)
		}
	}
	st.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].SID < out[j].SID
	})
	return out, nil
}

// revokeSID ends one session. found is false when there is no live session
// sid.
func (is *Issuer) revokeSID(_ context.Context, sid string, reason sessions.Reason) (bool, error) {
	st := is.state
	if st == nil {
		return false, errStoreUnavailable
	}
	s := st.get(sid)
	if s == nil || is.policy.dead(s, is.now()) {
		return false, nil
	}
	st.writeMu.Lock()
	err := st.deleteLocked(s)
	st.writeMu.Unlock()
	if err != nil {
		return false, err
	}
	is.recordRevocations([]sessions.Revocation{{SID: s.rec.SID, Login: s.rec.Login, Reason: reason, At: is.now()}})
	return true, nil
}

// revokeLogin ends every session of login and returns how many ended.
func (is *Issuer) revokeLogin(_ context.Context, login string, reason sessions.Reason) (int, error) {
	st := is.state
	if st == nil {
		return 0, errStoreUnavailable
	}
	st.writeMu.Lock()
	st.mu.RLock()
	mine := make([]*session, 0, len(st.byLogin[login]))
	for _, s := range st.byLogin[login] {
		mine = append(mine, s)
	}
	st.mu.RUnlock()
	var revs []sessions.Revocation
	var err error
	for _, s := range mine {
		s.ended.Store(true) // refused at once, even if the deletion fails
		if err = st.deleteLocked(s); err != nil {
			break
		}
		revs = append(revs, sessions.Revocation{SID: s.rec.SID, Login: login, Reason: reason, At: is.now()})
	}
	st.writeMu.Unlock()
	is.recordRevocations(revs)
	return len(revs), err
}

// countSessions returns the number of live sessions.
func (is *Issuer) countSessions(_ context.Context) (int, error) {
	st := is.state
	if st == nil {
		return 0, errStoreUnavailable
	}
	now := is.now()
	n := 0
	st.mu.RLock()
	for _, s := range st.sessions {
		if !is.policy.dead(s, now) {
			n++
		}
	}
	st.mu.RUnlock()
	return n, nil
}

// The shims below are what issuer_http.go calls around today's issuerState
// for the metrics and the audit log. With sessions.Store, whose operations
// return the revocations they made, they become: createSession = Create
// followed by recordRevocations (ReasonBound); logout = Revoke followed by
// recordRevocations; noteSessionError = countStoreError on ErrUnavailable
// only (the reuse revocation arrives with the operation's revocations).

// createSession starts a session for u; a login beyond the per-login bound
// ends its oldest session, recorded as a ReasonBound revocation.
func (is *Issuer) createSession(u *issuerUser, now time.Time) (*session, string, error) {
	st := is.state
	var before []*session
	st.mu.RLock()
	if mine := st.byLogin[u.login]; len(mine) >= maxSessionsPerLogin {
		for _, s := range mine {
			before = append(before, s)
		}
	}
	st.mu.RUnlock()
	s, tok, err := st.create(u, now)
	if err != nil {
		return nil, "", err
	}
	var revs []sessions.Revocation
	for _, o := range before {
		if o.ended.Load() && st.get(o.rec.SID) == nil {
			revs = append(revs, sessions.Revocation{SID: o.rec.SID, Login: o.rec.Login, Reason: sessions.ReasonBound, At: now})
		}
	}
	is.recordRevocations(revs)
	return s, tok, nil
}

// logout ends the family of tok; found is false for an unknown token.
func (is *Issuer) logout(tok string) (bool, error) {
	var s *session
	m := matchNone
	if validRefreshTokenSyntax(tok) {
		s, m = is.state.find(hashRefreshToken(tok), is.now())
	}
	found, err := is.state.revoke(tok, is.now())
	switch {
	case err != nil || !found || s == nil:
	case m == matchReused: // issuerState logged it at Warn
		is.countRevocation(sessions.ReasonReuse)
	default:
		is.recordRevocations([]sessions.Revocation{{SID: s.rec.SID, Login: s.rec.Login, Reason: sessions.ReasonLogout, At: is.now()}})
	}
	return found, err
}

// noteSessionError counts what a refused session operation did: a reuse
// ended the family (issuerState logged it at Warn), a store failure is a
// store error.
func (is *Issuer) noteSessionError(err error, op string) {
	switch {
	case errors.Is(err, errRefreshReused):
		is.countRevocation(sessions.ReasonReuse)
	case errors.Is(err, errStoreUnavailable):
		is.countStoreError(op)
	}
}
