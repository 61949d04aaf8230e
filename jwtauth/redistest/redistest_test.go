package redistest

import (
	"testing"
)

func TestServerLifecycle(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []Option
	}{{"unix", nil}, {"tcp", []Option{TCP()}}, {"tls", []Option{TLS(), Password("s3cret")}}} {
		t.Run(c.name, func(t *testing.T) {
			s := Start(t, c.opts...)
			if err := s.ping(); err != nil {
				t.Fatalf("started server: %v", err)
			}
			if (s.Socket() == "") == (s.Port() == 0) {
				t.Fatalf("socket %q, port %d: want exactly one", s.Socket(), s.Port())
			}
			pid := s.PID()
			s.Pause()
			if err := s.ping(); err == nil {
				t.Fatal("a paused server answered PING")
			}
			s.Resume()
			if err := s.ping(); err != nil {
				t.Fatalf("resumed server: %v", err)
			}
			s.Restart()
			if err := s.ping(); err != nil {
				t.Fatalf("restarted server: %v", err)
			}
			if s.PID() == pid || s.Starts() != 2 {
				t.Fatalf("restart kept pid %d (starts %d)", pid, s.Starts())
			}
			s.Kill()
			if err := s.ping(); err == nil {
				t.Fatal("a killed server answered PING")
			}
			if s.PID() != 0 {
				t.Fatal("a killed server still has a pid")
			}
		})
	}
}

func TestSentinel(t *testing.T) {
	m := Start(t, TCP())
	s := Start(t, Sentinel("mymaster", m.Addr()))
	if err := s.ping(); err != nil {
		t.Fatalf("sentinel: %v", err)
	}
}
