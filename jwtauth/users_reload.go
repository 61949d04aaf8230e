package jwtauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"go.uber.org/zap"
)

// defaultUsersReloadInterval is how often a running issuer checks its users
// file, unless users_reload_interval says otherwise.
const defaultUsersReloadInterval = 5 * time.Second

// racyWindow is how long after a file's mtime a check still reads it even
// when its size and mtime look unchanged: a write within the file system's
// timestamp granularity may keep both.
const racyWindow = 2 * time.Second

// usersTable is an issuer's users, with the fake credential that unknown
// logins are checked against. It is immutable: a users-file change swaps in
// a new table, so requests always see one whole version.
type usersTable struct {
	users map[string]*issuerUser
	fake  fakeCredential
}

// usersFileSig identifies the content of the users file last read.
type usersFileSig struct {
	size   int64
	mtime  time.Time
	hash   [32]byte
	readAt time.Time // real time, compared with the file system's mtimes
}

// issuerOps is the issuer's runtime state for the operator's features: the
// current users, the users-file watcher and the counters.
type issuerOps struct {
	users atomic.Pointer[usersTable]

	countersOnce sync.Once
	counters     *issuerCounters

	checkMu sync.Mutex // serializes checkUsers
	sig     usersFileSig
	failed  [32]byte // hash of the content that last failed to parse
	stat    string   // the last stat or read error logged

	watchMu sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	// tick drives the watcher in tests; nil means a ticker at the
	// interval.
	tick <-chan time.Time
}

// usersTab returns the current users.
func (is *Issuer) usersTab() *usersTable { return is.ops.users.Load() }

// user returns the current user with this login, or nil.
func (is *Issuer) user(login string) *issuerUser {
	if is.ops == nil {
		return nil
	}
	if t := is.ops.users.Load(); t != nil {
		return t.users[login]
	}
	return nil
}

// usersReloadInterval returns the check interval; 0 means off.
func (is *Issuer) usersReloadInterval() time.Duration {
	if is.UsersReloadInterval == nil {
		return defaultUsersReloadInterval
	}
	return time.Duration(*is.UsersReloadInterval)
}

// readUsersTable reads and checks the users file completely, and returns
// the table with the signature of what it read.
func readUsersTable(path string) (*usersTable, usersFileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, usersFileSig{}, err
	}
	now := time.Now()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usersFileSig{}, err
	}
	sig := usersFileSig{size: fi.Size(), mtime: fi.ModTime(), hash: sha256.Sum256(data), readAt: now}
	t, err := parseUsersTable(path, data)
	return t, sig, err
}

// parseUsersTable parses a users file's content into a table.
func parseUsersTable(path string, data []byte) (*usersTable, error) {
	uf, err := parseUsersFile(path, data)
	if err != nil {
		return nil, err
	}
	return newUsersTable(uf)
}

// newUsersTable prepares the users of a checked users file.
func newUsersTable(uf *UsersFile) (*usersTable, error) {
	t := &usersTable{users: make(map[string]*issuerUser, len(uf.Users))}
	list := make([]*issuerUser, 0, len(uf.Users))
	for _, u := range uf.Users {
		cmp, err := hashKind(u.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", u.Login, err)
		}
		iu := &issuerUser{
			login: u.Login, userID: u.UserID, hash: []byte(u.PasswordHash), cmp: cmp,
			disabled: u.Disabled,
		}
		_, iu.bcrypt = cmp.(caddyauth.BcryptHash)
		var claims map[string]json.RawMessage
		if len(u.Claims) > 0 {
			if err := json.Unmarshal(u.Claims, &claims); err != nil {
				return nil, fmt.Errorf("user %q: claims must be a JSON object", u.Login)
			}
		}
		iu.claims = make(map[string]any, len(claims))
		for k, v := range claims {
			if isReservedClaim(k) {
				return nil, fmt.Errorf("user %q: claim %q is set by the issuer", u.Login, k)
			}
			iu.claims[k] = v
		}
		canon, _ := json.Marshal(claims) // sorted keys, compacted values
		fp := sha256.New()
		for _, part := range []string{"jwtauth-user-v1", u.Login, u.UserID.String(), u.PasswordHash, strconv.FormatBool(u.Disabled), string(canon)} {
			fp.Write([]byte(part))
			fp.Write([]byte{0})
		}
		iu.fp = hex.EncodeToString(fp.Sum(nil))
		t.users[u.Login] = iu
		list = append(list, iu)
	}
	var err error
	t.fake, err = fakeCredentialFor(list)
	return t, err
}

// changedLogins returns, sorted, the logins of old whose hash, user_id,
// claims or disabled flag differ in new, or that new lacks.
func changedLogins(old, new *usersTable) []string {
	var out []string
	for login, u := range old.users {
		if n := new.users[login]; n == nil || n.fp != u.fp {
			out = append(out, login)
		}
	}
	sort.Strings(out)
	return out
}

// checkUsers is one look at the users file by the watcher: when its
// content changed and parses, the new users replace the old ones at once,
// and every changed or removed user loses its sessions. A file that fails
// to parse changes nothing: the previous users stay in force.
func (is *Issuer) checkUsers() {
	is.ops.checkMu.Lock()
	defer is.ops.checkMu.Unlock()
	path := is.UsersFile
	fi, err := os.Stat(path)
	if err != nil {
		is.usersFileUnreadable(err)
		return
	}
	prev := is.ops.sig
	if fi.Size() == prev.size && fi.ModTime().Equal(prev.mtime) && prev.readAt.Sub(prev.mtime) > racyWindow {
		return
	}
	now := time.Now()
	data, err := os.ReadFile(path)
	if err != nil {
		is.usersFileUnreadable(err)
		return
	}
	is.ops.stat = ""
	sig := usersFileSig{size: fi.Size(), mtime: fi.ModTime(), hash: sha256.Sum256(data), readAt: now}
	if sig.hash == prev.hash {
		is.ops.sig = sig
		return
	}
	if sig.hash == is.ops.failed {
		return // already reported
	}
	t, err := parseUsersTable(path, data)
	if err != nil {
		is.ops.failed = sig.hash
		is.logger.Error("users_file changed but cannot be used; the previous users stay in force",
			zap.String("users_file", path), zap.Error(err))
		return
	}
	is.ops.failed = [32]byte{}
	old := is.ops.users.Swap(t)
	is.ops.sig = sig
	if ss := is.shared(); ss != nil {
		// the next config load compares its users with these
		fps := fingerprints(t)
		ss.fps.Store(&fps)
	}
	var changed []string
	if old != nil {
		changed = changedLogins(old, t)
	}
	is.logger.Info("users_file reloaded", zap.String("users_file", path),
		zap.Int("users", len(t.users)), zap.Int("changed", len(changed)))
	// Use and Rotate already refuse these sessions, the table being
	// swapped; revoking them also ends them in the store and on the
	// validators with revoke_access_tokens.
	for _, login := range changed {
		n, err := is.revokeLogin(context.Background(), login, sessions.ReasonUserChanged)
		if err != nil {
			is.countStoreError("reload")
			is.logger.Error("ending the sessions of a changed user", auditLogin(login), zap.Error(err))
			continue
		}
		is.auditUserChanged(login, n)
	}
}

// usersFileUnreadable reports a users file that cannot be read, once per
// distinct error.
func (is *Issuer) usersFileUnreadable(err error) {
	if msg := err.Error(); msg != is.ops.stat {
		is.ops.stat = msg
		is.logger.Error("users_file cannot be read; the previous users stay in force",
			zap.String("users_file", is.UsersFile), zap.Error(err))
	}
}

// startWatcher starts checking the users file every users_reload_interval.
func (is *Issuer) startWatcher() {
	if is.ops == nil {
		return
	}
	every := is.usersReloadInterval()
	is.ops.watchMu.Lock()
	defer is.ops.watchMu.Unlock()
	if every <= 0 || is.ops.cancel != nil {
		return
	}
	tick := is.ops.tick
	var ticker *time.Ticker
	if tick == nil {
		ticker = time.NewTicker(every)
		tick = ticker.C
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	is.ops.cancel, is.ops.done = cancel, done
	go func() {
		defer close(done)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick:
				is.checkUsers()
			}
		}
	}()
}

// stopWatcher stops the watcher and waits for it; it is idempotent.
func (is *Issuer) stopWatcher() {
	if is.ops == nil {
		return
	}
	is.ops.watchMu.Lock()
	cancel, done := is.ops.cancel, is.ops.done
	is.ops.cancel, is.ops.done = nil, nil
	is.ops.watchMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// startOps starts what the operator's features run: the users-file
// watchers and, when exported, the per-request metrics.
func (a *App) startOps() error {
	if err := a.startMetrics(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(a.Issuers)) {
		if is := a.Issuers[name]; is != nil {
			is.startWatcher()
		}
	}
	return nil
}

// stopOps stops the watchers.
func (a *App) stopOps() {
	for _, is := range a.Issuers {
		if is != nil {
			is.stopWatcher()
		}
	}
}

// parseUsersReloadInterval reads users_reload_interval: off or a positive
// duration.
func parseUsersReloadInterval(s string) (caddy.Duration, error) {
	if s == "off" {
		return 0, nil
	}
	d, err := caddy.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("want off or a positive duration")
	}
	return caddy.Duration(d), nil
}
