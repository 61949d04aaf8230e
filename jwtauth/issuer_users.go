package jwtauth

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"golang.org/x/crypto/bcrypt"
)

// issuerUser is a user of the users file, ready for checks.
type issuerUser struct {
	login    string
	userID   json.Number
	hash     []byte
	cmp      caddyauth.Comparer
	bcrypt   bool
	disabled bool
	claims   map[string]any // json.RawMessage values
	fp       string
}

// fakeCredential is what unknown logins are checked against, so they cost
// the same time as a wrong password.
type fakeCredential struct {
	hash   []byte
	cmp    caddyauth.Comparer
	bcrypt bool
}

// loadUsers reads the users file and prepares the fake credential.
func (is *Issuer) loadUsers() error {
	t, sig, err := readUsersTable(is.UsersFile)
	if err != nil {
		return fmt.Errorf("users_file: %w", err)
	}
	is.ops = &issuerOps{sig: sig}
	is.ops.users.Store(t)
	return nil
}

// fakeHashes caches generated fake hashes by parameters, across reloads.
var fakeHashes sync.Map

// fakeCredentialFor returns a hash of a random password with the kind and
// cost parameters of the slowest hash the users have (see slowestHash), so
// an unknown login costs at least what a known one does. caddyauth's
// FakeHash serves when it has those parameters (the defaults of `caddy
// hash-password`).
func fakeCredentialFor(users []*issuerUser) (fakeCredential, error) {
	u := slowestUser(users)
	if u == nil {
		return fakeCredential{hash: caddyauth.BcryptHash{}.FakeHash(), cmp: caddyauth.BcryptHash{}, bcrypt: true}, nil
	}
	best := hashParams(u.hash)
	fc := fakeCredential{cmp: u.cmp, bcrypt: u.bcrypt}
	if u.bcrypt {
		if ref := (caddyauth.BcryptHash{}).FakeHash(); hashParams(ref) == best {
			fc.hash = ref
			return fc, nil
		}
	} else if ref := (caddyauth.Argon2idHash{}).FakeHash(); hashParams(ref) == best {
		fc.hash = ref
		return fc, nil
	}
	if h, ok := fakeHashes.Load(best); ok {
		fc.hash = h.([]byte)
		return fc, nil
	}
	pw := make([]byte, 24)
	if _, err := rand.Read(pw); err != nil {
		return fc, err
	}
	var err error
	if u.bcrypt {
		cost, cerr := bcrypt.Cost(u.hash)
		if cerr != nil {
			return fc, fmt.Errorf("users_file: user %q: %w", u.login, cerr)
		}
		fc.hash, err = bcrypt.GenerateFromPassword(pw, cost)
	} else {
		params, _, derr := caddyauth.DecodeHash(u.hash)
		if derr != nil {
			return fc, fmt.Errorf("users_file: user %q: %w", u.login, derr)
		}
		fc.hash, err = params.Hash(pw)
	}
	if err != nil {
		return fc, err
	}
	fakeHashes.Store(best, fc.hash)
	return fc, nil
}

// hashParams names a hash's kind and cost parameters.
func hashParams(hash []byte) string {
	s := string(hash)
	if strings.HasPrefix(s, "$argon2id$") {
		parts := strings.Split(s, "$")
		if len(parts) == 6 {
			return "argon2id$" + parts[2] + "$" + parts[3] + "$" + strconv.Itoa(len(parts[5]))
		}
		return "argon2id"
	}
	if cost, err := bcrypt.Cost(hash); err == nil {
		return "bcrypt$" + strconv.Itoa(cost)
	}
	return "other"
}

// timingFiller replaces a bcrypt password over 72 bytes, so that refusing
// it costs a full comparison like any wrong password.
var timingFiller = []byte(strings.Repeat("x", maxBcryptPassword))

// checkPassword returns the user if login and password are right and the
// user is enabled. It always runs one full hash comparison, against the
// user's hash or the fake one, so unknown, disabled and wrong all take the
// same time and give the same answer. bcrypt passwords over 72 bytes are
// refused rather than truncated. The result, for the audit log and the
// metrics only, is ok, bad_credentials or disabled (the right password of a
// disabled user).
func (is *Issuer) checkPassword(login, password string) (*issuerUser, string) {
	t := is.usersTab()
	u := t.users[login]
	hash, cmp, isBcrypt := t.fake.hash, t.fake.cmp, t.fake.bcrypt
	if u != nil {
		hash, cmp, isBcrypt = u.hash, u.cmp, u.bcrypt
	}
	pw := []byte(password)
	tooLong := isBcrypt && len(pw) > maxBcryptPassword
	if tooLong {
		pw = timingFiller
	}
	ok, err := cmp.Compare(hash, pw)
	if u == nil || tooLong || err != nil || !ok {
		return nil, resultBadCredentials
	}
	if u.disabled {
		return nil, resultDisabled
	}
	return u, resultOK
}
