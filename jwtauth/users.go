package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
)

// UsersFile is the JSON users file of an issuer:
//
//	{"users": [{"login": "demo", "password_hash": "$2a$14$...", "user_id": 1,
//	            "disabled": false, "claims": {"email": "demo@example.com"}}]}
//
// Hashes are bcrypt or argon2id, as printed by `caddy hash-password`.
type UsersFile struct {
	// The accounts.
	Users []User `json:"users"`
}

// User is one account in a users file.
type User struct {
	// Login name. Required, unique.
	Login string `json:"login"`
	// bcrypt or argon2id hash, as `caddy hash-password` prints it. Required.
	PasswordHash string `json:"password_hash"`
	// The user id put in issued tokens (odoo_jwt's user_id). Required.
	UserID json.Number `json:"user_id"`
	// A disabled user cannot log in, and loses its sessions when the
	// issuer notices the change (users_reload_interval). Default: false.
	Disabled bool `json:"disabled,omitempty"`
	// Extra claims for the user's access tokens, e.g. email, partner_id,
	// roles; registered claim names are refused. Default: none.
	Claims json.RawMessage `json:"claims,omitempty"`
}

// maxBcryptPassword is bcrypt's input limit: longer passwords would be
// truncated silently, so they are refused instead.
const maxBcryptPassword = 72

// hashKind returns the caddyauth comparer for a stored hash.
func hashKind(hash string) (caddyauth.Comparer, error) {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return caddyauth.BcryptHash{}, nil
	case strings.HasPrefix(hash, "$argon2id$"):
		return caddyauth.Argon2idHash{}, nil
	}
	return nil, errors.New("password_hash is neither bcrypt nor argon2id (use `caddy hash-password`)")
}

// LoadUsersFile reads and validates a users file.
func LoadUsersFile(path string) (*UsersFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseUsersFile(path, data)
}

// parseUsersFile validates the content of the users file at path.
func parseUsersFile(path string, data []byte) (*UsersFile, error) {
	var uf UsersFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&uf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	seen := make(map[string]bool)
	for i, u := range uf.Users {
		if u.Login == "" {
			return nil, fmt.Errorf("%s: user %d: login is required", path, i)
		}
		if seen[u.Login] {
			return nil, fmt.Errorf("%s: login %q appears twice", path, u.Login)
		}
		seen[u.Login] = true
		if u.UserID == "" {
			return nil, fmt.Errorf("%s: user %q: user_id is required", path, u.Login)
		}
		if _, err := hashKind(u.PasswordHash); err != nil {
			return nil, fmt.Errorf("%s: user %q: %w", path, u.Login, err)
		}
		if len(u.Claims) > 0 {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(u.Claims, &obj); err != nil {
				return nil, fmt.Errorf("%s: user %q: claims must be a JSON object", path, u.Login)
			}
		}
	}
	return &uf, nil
}

// Find returns the user with this login, or nil.
func (uf *UsersFile) Find(login string) *User {
	for i := range uf.Users {
		if uf.Users[i].Login == login {
			return &uf.Users[i]
		}
	}
	return nil
}

// Save writes the file atomically: a temporary file in the same directory,
// synced, renamed over the old one, and the directory synced, so a crash
// leaves either the old or the new file, never a mix.
func (uf *UsersFile) Save(path string) error {
	data, err := json.MarshalIndent(uf, "", "\t")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'), 0o600)
}
