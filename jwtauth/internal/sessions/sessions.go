// Package sessions defines the session store of a jwt_issuer: the table of
// refresh-token families, behind one interface that every backend (the
// embedded bbolt store, Redis) implements and one conformance suite
// (package sessionstest) checks.
//
// A login starts a session, a family of refresh tokens. Rotation replaces
// the family's current token; presenting a replaced token again (reuse: the
// token was copied) ends the whole family. Only SHA-256 hashes of refresh
// tokens are stored. For Policy.Grace after a rotation, the replaced token
// still refreshes access tokens, and a rotation retried with it (its answer
// was lost) gets the same successor again: the successor is kept for that
// window only, sealed under a key derived from the replaced token
// (SealSuccessor), so the store never holds a usable token in clear.
//
// Each operation is atomic in the engine (one bbolt transaction, one Redis
// script) and enforces the Policy itself: a session past RefreshTTL or idle
// past IdleTimeout is refused by the operation, not by a later sweep.
//
// This package imports nothing of Caddy.
package sessions

import (
	"context"
	"errors"
	"time"
)

// Errors of session operations. ErrUnknown, ErrEnded, ErrReused and
// ErrMismatch are refusals of the client (401); ErrUnavailable is wrapped
// by every failure of the engine (a full disk, Redis down or too slow) and
// answered with 503, never 401.
var (
	ErrUnknown     = errors.New("unknown refresh token")
	ErrEnded       = errors.New("session ended")
	ErrReused      = errors.New("refresh token reused: session revoked")
	ErrMismatch    = errors.New("the access token belongs to another session")
	ErrUnavailable = errors.New("session store unavailable")
)

// Policy is an issuer's session policy. It is passed to every operation, so
// that a config reload applies the new policy at once and several nodes
// sharing one store each apply their own config.
type Policy struct {
	// RefreshTTL is the absolute lifetime of a session, from its creation.
	RefreshTTL time.Duration
	// IdleTimeout ends a session whose refresh token was not used this
	// long.
	IdleTimeout time.Duration
	// MaxPerLogin bounds the sessions of one login: a Create beyond it
	// ends the login's oldest session (ReasonBound) in the same
	// operation.
	MaxPerLogin int
	// Grace is how long a replaced refresh token still refreshes, and a
	// retried rotation with it gets the same successor.
	Grace time.Duration
	// Retain is how long a revocation is kept for other nodes to read
	// (Feed): the longest remaining life of the session's access tokens,
	// that is access_ttl plus the validators' leeway.
	Retain time.Duration
}

// Expires returns when s ends under p unless it is used again: at the end
// of its absolute lifetime, or IdleTimeout after its last use, whichever
// comes first.
func (p Policy) Expires(s Session) time.Time {
	end := s.Created.Add(p.RefreshTTL)
	if idle := s.LastUsed.Add(p.IdleTimeout); idle.Before(end) {
		return idle
	}
	return end
}

// End returns the end of s's absolute lifetime: no token of the family
// works after it, and no access token of it may expire later.
func (p Policy) End(s Session) time.Time { return s.Created.Add(p.RefreshTTL) }

// Live reports whether s is live at now under p.
func (p Policy) Live(s Session, now time.Time) bool { return now.Before(p.Expires(s)) }

// New is what a login starts a session with.
type New struct {
	Login string
	// UserID is the user_id claim, as JSON number or string text.
	UserID string
	// FP fingerprints the user at login (hash, user_id, claims, disabled):
	// the issuer ends the session when the user changes.
	FP string
}

// Session is a session as the store reports it. It never holds a token or
// a token hash.
type Session struct {
	SID      string
	Login    string
	UserID   string
	FP       string
	Created  time.Time
	LastUsed time.Time
	// Gen counts the family's rotations.
	Gen uint64
}

// Reason says why a session ended.
type Reason string

// Reasons a session ends early. Sessions that merely expire
// (refresh_ttl, idle_timeout) are not revocations: their access tokens
// cannot outlive them.
const (
	ReasonLogout      Reason = "logout"
	ReasonReuse       Reason = "reuse"
	ReasonUserChanged Reason = "user_changed"
	ReasonAdmin       Reason = "admin"
	ReasonBound       Reason = "bound"
)

// Revocation is a session ended by an operation.
type Revocation struct {
	SID    string
	Login  string
	Reason Reason
	At     time.Time
}

// Store is the session table of one issuer. Every method is safe for
// concurrent use, atomic in the engine, and returns an error wrapping
// ErrUnavailable when the engine fails; the revocations it returns are the
// sessions the operation ended, for the issuer's deny-list, audit log and
// metrics.
type Store interface {
	// Create starts a session and returns it with its refresh token. A
	// login holding p.MaxPerLogin live sessions loses its oldest one,
	// returned as a ReasonBound revocation.
	Create(ctx context.Context, p Policy, n New, now time.Time) (Session, string, []Revocation, error)

	// Find returns the session of tok without recording a use: tok must
	// be the family's current token or, within p.Grace, the one the last
	// rotation replaced. Any older token of the family is reuse: the
	// family ends (ErrReused, with its revocation). Unknown or malformed
	// tokens give ErrUnknown, expired sessions ErrEnded.
	Find(ctx context.Context, p Policy, tok string, now time.Time) (Session, []Revocation, error)

	// Use is Find for an access-token refresh: it also records the use
	// (LastUsed), which keeps the session from idling out.
	Use(ctx context.Context, p Policy, tok string, now time.Time) (Session, []Revocation, error)

	// Rotate replaces the current refresh token of tok's family, if sid
	// names that family (else ErrMismatch), and returns the successor.
	// Exactly one of concurrent rotations of one token rotates; the
	// others, and any retry with the replaced token within p.Grace, get
	// the same successor. After p.Grace the replaced token is reuse.
	Rotate(ctx context.Context, p Policy, tok, sid string, now time.Time) (Session, string, []Revocation, error)

	// Revoke ends tok's family (logout). A token older than the grace
	// window ends it as reuse. found is false for an unknown token.
	Revoke(ctx context.Context, p Policy, tok string, now time.Time) (rev Revocation, found bool, err error)

	// RevokeSID ends one session, found false if there is none.
	RevokeSID(ctx context.Context, sid string, reason Reason, now time.Time) (rev Revocation, found bool, err error)

	// RevokeLogin ends every session of login.
	RevokeLogin(ctx context.Context, login string, reason Reason, now time.Time) ([]Revocation, error)

	// Get returns the live session sid.
	Get(ctx context.Context, p Policy, sid string, now time.Time) (Session, bool, error)

	// List returns the live sessions of login, or of every login when
	// login is "", oldest first.
	List(ctx context.Context, p Policy, login string, now time.Time) ([]Session, error)

	// Count returns the number of live sessions.
	Count(ctx context.Context, p Policy, now time.Time) (int, error)

	// Sweep deletes sessions that are dead under p and returns how many;
	// engines that expire keys themselves return 0.
	Sweep(ctx context.Context, p Policy, now time.Time) (int, error)

	// Close releases the engine. Operations after Close fail with
	// ErrUnavailable.
	Close() error
}

// Feed is implemented by stores that several nodes share. It tells each
// node of the revocations made on any node, so that validators with
// revoke_access_tokens refuse a revoked session's access tokens everywhere.
type Feed interface {
	// Follow first delivers the revocations retained from since on
	// (Policy.Retain), then each new one as it is made, until ctx ends.
	// It calls h.Heard whenever the engine has answered, at least every
	// interval while it is reachable, so a silent feed can be told from a
	// quiet one. It returns ctx's error.
	Follow(ctx context.Context, since time.Time, interval time.Duration, h FeedHandler) error
}

// FeedHandler receives what a Feed reads.
type FeedHandler interface {
	// Revoked is a revocation made by any node.
	Revoked(Revocation)
	// Heard reports that the engine answered at at.
	Heard(at time.Time)
	// Reset reports that the engine lost its data (it restarted empty):
	// revocations made before at may be missing, so access tokens issued
	// before at can no longer be trusted.
	Reset(at time.Time)
}
