package jwtauth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"golang.org/x/crypto/bcrypt"
)

// An unknown login is checked against a fake hash as slow as the slowest
// hash of the users file, and `caddy jwtauth user add` hashes like it, so
// that the time of an answer never tells whether a login exists.
//
// Within a kind the order is exact: bcrypt by cost, argon2id by memory ×
// passes (then key length). Across kinds it is estimated: a bcrypt round
// costs about as much as bcryptRoundWork KiB-passes of argon2id (bcrypt 10
// ≈ argon2id m=46 MiB, t=1, caddy's default, on amd64). When the estimate
// puts the two kinds within closeCall of each other, one comparison of each
// is timed (best of measureRounds, once per process) to decide.
const (
	bcryptRoundWork = 46
	closeCall       = 4.0
	measureRounds   = 3
)

// hashWork is a hash's estimated cost, in argon2id KiB-passes.
func hashWork(hash []byte) (bcryptKind bool, work float64, ok bool) {
	if cost, err := bcrypt.Cost(hash); err == nil {
		return true, float64(uint64(1)<<cost) * bcryptRoundWork, true
	}
	m, t, _, keyLen, err := argon2idParams(hash)
	if err != nil {
		return false, 0, false
	}
	return false, float64(m)*float64(t) + float64(keyLen)/1e6, true
}

// argon2idParams reads memory (KiB), passes, threads and key length from a
// PHC argon2id string.
func argon2idParams(hash []byte) (m, t uint32, p uint8, keyLen int, err error) {
	parts := strings.Split(string(hash), "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return 0, 0, 0, 0, errors.New("not an argon2id hash")
	}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil {
			return 0, 0, 0, 0, fmt.Errorf("argon2id parameter %q", kv)
		}
		switch k {
		case "m":
			m = uint32(n)
		case "t":
			t = uint32(n)
		case "p":
			if n > 255 {
				return 0, 0, 0, 0, fmt.Errorf("argon2id parameter %q", kv)
			}
			p = uint8(n)
		}
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || m == 0 || t == 0 || p == 0 {
		return 0, 0, 0, 0, errors.New("bad argon2id hash")
	}
	return m, t, p, len(key), nil
}

// slowestHash returns the index of the slowest of hashes, or -1 if none is
// bcrypt or argon2id.
func slowestHash(hashes [][]byte) int {
	best := [2]int{-1, -1} // argon2id, bcrypt
	var work [2]float64
	for i, h := range hashes {
		isBcrypt, w, ok := hashWork(h)
		if !ok {
			continue
		}
		k := 0
		if isBcrypt {
			k = 1
		}
		if best[k] < 0 || w > work[k] || w == work[k] && hashParams(h) > hashParams(hashes[best[k]]) {
			best[k], work[k] = i, w
		}
	}
	switch {
	case best[0] < 0:
		return best[1]
	case best[1] < 0:
		return best[0]
	}
	a, b := hashes[best[0]], hashes[best[1]]
	if r := work[1] / work[0]; r >= closeCall {
		return best[1]
	} else if r <= 1/closeCall {
		return best[0]
	}
	if slowerMeasured(a, b) {
		return best[0]
	}
	return best[1]
}

// measured caches slowerMeasured's verdicts by parameters.
var measured sync.Map

// slowerMeasured reports whether comparing against argon2id hash a takes
// longer than against bcrypt hash b, timing each measureRounds times,
// alternately, and keeping the fastest of each (the least disturbed).
func slowerMeasured(a, b []byte) bool {
	key := hashParams(a) + " " + hashParams(b)
	if v, ok := measured.Load(key); ok {
		return v.(bool)
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	best := func(d, prev time.Duration) time.Duration {
		if prev == 0 || d < prev {
			return d
		}
		return prev
	}
	var ta, tb time.Duration
	for range measureRounds {
		start := time.Now()
		_, _ = caddyauth.Argon2idHash{}.Compare(a, pw)
		ta = best(time.Since(start), ta)
		start = time.Now()
		_ = bcrypt.CompareHashAndPassword(b, pw)
		tb = best(time.Since(start), tb)
	}
	slower := ta > tb
	measured.Store(key, slower)
	return slower
}

// slowestUser is the user whose hash is the slowest, or nil.
func slowestUser(users []*issuerUser) *issuerUser {
	hashes := make([][]byte, len(users))
	for i, u := range users {
		hashes[i] = u.hash
	}
	if i := slowestHash(hashes); i >= 0 {
		return users[i]
	}
	return nil
}

// hashLike hashes password with the kind and parameters of ref, and a
// fresh salt.
func hashLike(ref []byte, password []byte) (string, error) {
	if cost, err := bcrypt.Cost(ref); err == nil {
		if len(password) > maxBcryptPassword {
			return "", fmt.Errorf("the password is %d bytes long; bcrypt takes at most %d (use --algorithm argon2id for longer ones)",
				len(password), maxBcryptPassword)
		}
		h, err := bcrypt.GenerateFromPassword(password, cost)
		return string(h), err
	}
	m, t, p, keyLen, err := argon2idParams(ref)
	if err != nil {
		return "", err
	}
	return hashArgon2id(password, m, t, p, keyLen)
}

// hashArgon2id hashes with caddyauth's argon2id and a fresh salt.
// caddyauth.Argon2idHash keeps its parameters unexported; the only way to
// set them from outside is to decode a PHC string, whose key part only sets
// the key length.
func hashArgon2id(password []byte, m, t uint32, p uint8, keyLen int) (string, error) {
	salt := make([]byte, argon2idSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	params := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(make([]byte, keyLen)))
	hasher, _, err := caddyauth.DecodeHash([]byte(params))
	if err != nil {
		return "", err
	}
	h, err := hasher.Hash(password)
	return string(h), err
}
