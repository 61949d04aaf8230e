package redisstore

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/sessionstest"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/redistest"
)

// backend is one conformance test's data: an issuer of its own on a shared
// redis-server, so that each test starts empty.
type backend struct {
	addr   string
	issuer string
}

func (b backend) Open() (sessions.Store, error) {
	return New(Config{Addrs: []string{b.addr}, Issuer: b.issuer})
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int64
	sessionstest.Run(t, func(t *testing.T) sessionstest.Backend {
		return backend{addr: srv.Addr(), issuer: fmt.Sprintf("conformance-%d", n.Add(1))}
	})
}
