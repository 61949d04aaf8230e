package caddyfile_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// caddytestAdmin is where caddytest puts Caddy's admin endpoint
// (localhost:2999, either loopback family).
var caddytestAdmin = []string{"127.0.0.1:2999", "[::1]:2999"}

// TestMain refuses to run beside a Caddy already listening on the admin
// port caddytest uses: caddytest would load its configs into that Caddy
// (or stop it), taking it over.
func TestMain(m *testing.M) {
	if err := adminPortFree(caddytestAdmin); err != nil {
		fmt.Fprintf(os.Stderr, "caddyfile tests: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// adminPortFree returns an error if anything accepts connections on one of
// addrs.
func adminPortFree(addrs []string) error {
	for _, addr := range addrs {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("something already listens on %s, the admin address caddytest uses; "+
				"stop it (for example `caddy stop`, or another run of these tests) and run again, "+
				"under `flock /tmp/jwtauth-caddytest.lock` when tests share the machine", addr)
		}
	}
	return nil
}

// TestAdminPortFree: the check sees a listener, and only a listener.
func TestAdminPortFree(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	err = adminPortFree([]string{addr})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("with a listener on %s: %v", addr, err)
	}
	ln.Close()
	if err := adminPortFree([]string{addr}); err != nil {
		t.Fatalf("after it closed: %v", err)
	}
	if err := adminPortFree(nil); err != nil {
		t.Fatal(err)
	}
}
