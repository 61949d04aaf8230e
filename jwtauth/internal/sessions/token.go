package sessions

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// TokenBytes is the entropy of a refresh token.
const TokenBytes = 32

var b64 = base64.RawURLEncoding.Strict()

// Hash is what a store keeps of a refresh token: its SHA-256.
type Hash [sha256.Size]byte

// HashToken returns the hash of tok.
func HashToken(tok string) Hash { return sha256.Sum256([]byte(tok)) }

// NewToken returns a refresh token of TokenBytes random bytes, base64url.
func NewToken() (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("%w: random: %w", ErrUnavailable, err)
	}
	return b64.EncodeToString(b), nil
}

// ValidToken reports whether tok can be a token of NewToken; anything else
// is unknown without a lookup.
func ValidToken(tok string) bool {
	if len(tok) != b64.EncodedLen(TokenBytes) {
		return false
	}
	_, err := b64.DecodeString(tok)
	return err == nil
}

// successorAEAD derives the key that seals the successor of tok. Only a
// holder of tok (the client whose rotation answer was lost) can open it.
func successorAEAD(tok string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(tok), nil, "jwtauth successor refresh token v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// SealSuccessor seals next, the token that replaced tok, under a key
// derived from tok. The sid is bound as additional data.
func SealSuccessor(tok, next, sid string) ([]byte, error) {
	aead, err := successorAEAD(tok)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, []byte(next), []byte(sid)), nil
}

// OpenSuccessor opens what SealSuccessor sealed.
func OpenSuccessor(tok string, sealed []byte, sid string) (string, error) {
	aead, err := successorAEAD(tok)
	if err != nil {
		return "", err
	}
	if len(sealed) < aead.NonceSize() {
		return "", errors.New("sealed successor too short")
	}
	next, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(sid))
	if err != nil {
		return "", err
	}
	return string(next), nil
}

// NewSID returns a random session id.
func NewSID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("%w: random: %w", ErrUnavailable, err)
	}
	return b64.EncodeToString(b), nil
}

// NewFamily returns the first refresh token and the id of a new session,
// what every Create starts with.
func NewFamily() (tok, sid string, err error) {
	if tok, err = NewToken(); err != nil {
		return "", "", err
	}
	if sid, err = NewSID(); err != nil {
		return "", "", err
	}
	return tok, sid, nil
}
