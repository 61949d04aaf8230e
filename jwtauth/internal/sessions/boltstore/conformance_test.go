package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/sessionstest"
)

// backend is a store file in a test's temporary directory.
type backend struct{ path string }

func (b backend) Open() (sessions.Store, error) { return Open(b.path, Options{}) }

func newBackend(t *testing.T) sessionstest.Backend {
	return backend{filepath.Join(t.TempDir(), "sessions", "sessions.db")}
}

func TestConformance(t *testing.T) {
	sessionstest.Run(t, newBackend)
}
