package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
)

// Sessions are refresh-token families, kept by a sessions.Store (the
// embedded bbolt store or Redis), which enforces the policy in each atomic
// operation. The issuer adds what depends on its config: the users'
// fingerprints, and the revocations that every session-ending operation
// returns, which all go through ended.

// errNotStarted is the error of a session operation before start opened
// the store.
var errNotStarted = fmt.Errorf("%w: the issuer has not started", sessions.ErrUnavailable)

// startupScanTimeout bounds the search for sessions of changed users at
// start.
const startupScanTimeout = 30 * time.Second

// shared returns the open store, or nil before start.
func (is *Issuer) shared() *sharedStore {
	if run := is.run.Load(); run != nil {
		return run.shared
	}
	return nil
}

// ended records the sessions that an operation ended: each goes on the
// deny-list (when access tokens are revocable, validators refuse its
// tokens at once) and gets an audit line with its sid, login and reason,
// never a token. Every session-ending operation's revocations go through
// here.
func (is *Issuer) ended(revs []sessions.Revocation) {
	if len(revs) == 0 {
		return
	}
	ss := is.shared()
	now := is.now()
	for _, r := range revs {
		if ss != nil {
			at := r.At
			if at.IsZero() {
				at = now
			}
			ss.deny.add(r.SID, at.Add(is.pol.Retain), now)
		}
		fields := []zap.Field{zap.String("sid", r.SID), zap.String("login", r.Login), zap.String("reason", string(r.Reason))}
		if r.Reason == sessions.ReasonReuse {
			is.audit.Warn("refresh token reuse detected: session revoked", fields...)
		} else {
			is.audit.Info("session revoked", fields...)
		}
	}
}

// userCurrent reports whether s belongs to a user of this config whose
// hash, user_id, claims and disabled flag are those the session started
// with.
func (is *Issuer) userCurrent(s sessions.Session) (*issuerUser, bool) {
	u := is.users[s.Login]
	if u == nil || u.disabled || u.fp != s.FP {
		return nil, false
	}
	return u, true
}

// endStale ends a session whose user changed since it started (reason
// user_changed); it reports a store failure.
func (is *Issuer) endStale(ctx context.Context, ss *sharedStore, sid string) error {
	rev, found, err := ss.store.RevokeSID(ctx, sid, sessions.ReasonUserChanged, is.now())
	if found {
		is.ended([]sessions.Revocation{rev})
	}
	return err
}

// endChangedUsers ends, at start, the sessions of users whose hash,
// user_id, claims or disabled flag changed, or who were removed. A store
// opened by this process for the first time is searched session by session;
// on a reload the previous config's users are compared with this one's, and
// each changed login loses every session. Sessions missed here (the store
// was unreachable) are still refused at their next use.
func (is *Issuer) endChangedUsers(ss *sharedStore, fresh bool) {
	ctx, cancel := context.WithTimeout(context.Background(), startupScanTimeout)
	defer cancel()
	now := is.now()
	fps := make(map[string]string, len(is.users))
	for login, u := range is.users {
		if !u.disabled {
			fps[login] = u.fp
		}
	}
	prev := ss.fps.Swap(&fps)
	var err error
	if fresh || prev == nil {
		var list []sessions.Session
		if list, err = ss.store.List(ctx, is.policy(), "", now); err == nil {
			for _, s := range list {
				if _, ok := is.userCurrent(s); !ok {
					if err = is.endStale(ctx, ss, s.SID); err != nil {
						break
					}
				}
			}
		}
	} else {
		for login, fp := range *prev {
			if fps[login] == fp {
				continue
			}
			revs, rerr := ss.store.RevokeLogin(ctx, login, sessions.ReasonUserChanged, now)
			is.ended(revs)
			if rerr != nil {
				err = rerr
			}
		}
	}
	if err != nil {
		is.logger.Error("ending the sessions of changed users; they are refused at their next use", zap.Error(err))
	}
}

// listSessions returns the live sessions of login, or of every login when
// login is "", oldest first.
func (is *Issuer) listSessions(ctx context.Context, login string) ([]sessions.Session, error) {
	ss := is.shared()
	if ss == nil {
		return nil, errNotStarted
	}
	return ss.store.List(ctx, is.policy(), login, is.now())
}

// revokeSID ends session sid, reporting whether it existed.
func (is *Issuer) revokeSID(ctx context.Context, sid string, reason sessions.Reason) (bool, error) {
	ss := is.shared()
	if ss == nil {
		return false, errNotStarted
	}
	rev, found, err := ss.store.RevokeSID(ctx, sid, reason, is.now())
	if found {
		is.ended([]sessions.Revocation{rev})
	}
	return found, err
}

// revokeLogin ends every session of login and returns how many.
func (is *Issuer) revokeLogin(ctx context.Context, login string, reason sessions.Reason) (int, error) {
	ss := is.shared()
	if ss == nil {
		return 0, errNotStarted
	}
	revs, err := ss.store.RevokeLogin(ctx, login, reason, is.now())
	is.ended(revs)
	return len(revs), err
}

// countSessions returns the number of live sessions.
func (is *Issuer) countSessions(ctx context.Context) (int, error) {
	ss := is.shared()
	if ss == nil {
		return 0, errNotStarted
	}
	return ss.store.Count(ctx, is.policy(), is.now())
}

// storeFailed reports whether err is a failure of the store (an answer
// 503), as opposed to a refusal of the client's token.
func storeFailed(err error) bool {
	if err == nil {
		return false
	}
	for _, refusal := range []error{sessions.ErrUnknown, sessions.ErrEnded, sessions.ErrReused, sessions.ErrMismatch} {
		if errors.Is(err, refusal) {
			return false
		}
	}
	return true
}
