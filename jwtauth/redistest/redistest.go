// Package redistest runs a private redis-server for a test: on a Unix
// socket in the test's temporary directory, or on a free loopback port,
// with no persistence, stopped by PID when the test ends.
//
// Tests that need Redis call Start. When redis-server is not on PATH the
// test is skipped, except under CI=true, where it fails: CI installs
// redis-server (.ci/run), so a missing one is a broken CI, not a reason to
// skip.
//
// It is test support for this module's own tests (the jwtauth packages and
// caddyfile's end-to-end tests), not part of the plugin.
package redistest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is a redis-server process owned by one test.
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	socket string // unix socket path, "" with TCP
	port   int    // TCP port, 0 with a unix socket
	tls    bool   // the TCP port speaks TLS only
	pass   string // requirepass
	caFile string
	roots  *x509.CertPool
	// sentinel: the master name and address this Sentinel monitors.
	sentinelName, sentinelMaster string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	runs int
}

// Option configures Start.
type Option func(*Server)

// TCP makes the server listen on a free loopback port instead of a Unix
// socket, for clients that cannot use one (other processes' configs, TLS).
func TCP() Option {
	return func(s *Server) { s.port = -1 }
}

// TLS makes the server speak TLS only, on a free loopback port, with a
// certificate for 127.0.0.1 and localhost from a test CA (CAFile,
// ClientTLS). Clients are not asked for certificates.
func TLS() Option {
	return func(s *Server) { s.port, s.tls = -1, true }
}

// Sentinel makes the process a Redis Sentinel (redis-server --sentinel) on
// a free loopback port, monitoring the master at addr (host:port) under
// name.
func Sentinel(name, addr string) Option {
	return func(s *Server) { s.port, s.sentinelName, s.sentinelMaster = -1, name, addr }
}

// Password makes the server require a password (requirepass, for the
// default user).
func Password(pw string) Option {
	return func(s *Server) { s.pass = pw }
}

// Start starts a redis-server and waits until it answers PING. It is
// stopped when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required under CI=true: %v", err)
		}
		t.Skipf("redis-server not found on PATH (%v); install it to run this test", err)
	}
	// The socket path must fit sockaddr_un (108 bytes): t.TempDir can be
	// long, so the server gets its own short directory.
	dir, err := os.MkdirTemp("", "redistest")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, dir: dir}
	for _, o := range opts {
		o(s)
	}
	if s.port == 0 {
		s.socket = filepath.Join(dir, "redis.sock")
	}
	if s.tls {
		if err := s.writeCerts(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			if b, err := os.ReadFile(s.logFile()); err == nil {
				t.Logf("redis-server log:\n%s", b)
			}
		}
		_ = os.RemoveAll(dir)
	})
	if s.port < 0 {
		// A free port can be taken by someone else between the probe and
		// redis-server's bind: try a few.
		var err error
		for range 5 {
			if s.port, err = freePort(); err != nil {
				t.Fatal(err)
			}
			if err = s.start(); err == nil {
				return s
			}
		}
		t.Fatal(err)
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) logFile() string { return filepath.Join(s.dir, "redis.log") }

// start runs redis-server and waits for PING. The caller makes sure no
// server of s is running.
func (s *Server) start() error {
	args := []string{
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", s.logFile(),
		"--daemonize", "no",
	}
	if s.sentinelName != "" {
		// Sentinel rewrites its config file, so each start gets a fresh
		// one.
		host, port, err := net.SplitHostPort(s.sentinelMaster)
		if err != nil {
			return err
		}
		conf := filepath.Join(s.dir, "sentinel.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, "sentinel monitor %s %s %s 1\n", s.sentinelName, host, port), 0o600); err != nil {
			return err
		}
		args = []string{conf, "--sentinel", "--dir", s.dir, "--logfile", s.logFile(), "--daemonize", "no"}
	}
	if s.pass != "" {
		args = append(args, "--requirepass", s.pass)
	}
	switch {
	case s.socket != "":
		args = append(args, "--port", "0", "--unixsocket", s.socket, "--unixsocketperm", "700")
	case s.tls:
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
			"--tls-cert-file", filepath.Join(s.dir, "cert.pem"), "--tls-key-file", filepath.Join(s.dir, "key.pem"),
			"--tls-ca-cert-file", s.caFile, "--tls-auth-clients", "no")
	default:
		args = append(args, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1")
	}
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.runs++
	s.mu.Unlock()
	if err := s.waitPing(done); err != nil {
		s.Kill()
		b, _ := os.ReadFile(s.logFile())
		return fmt.Errorf("%w\nredis-server log:\n%s", err, b)
	}
	return nil
}

// waitPing polls PING until the server answers +PONG, it exits, or
// startTimeout passes.
func (s *Server) waitPing(exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = s.ping(); last == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited before answering PING")
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within %v: %w", startTimeout, last)
		}
	}
}

// ping sends one PING and reads the reply.
func (s *Server) ping() error {
	network, addr := "unix", s.socket
	if s.socket == "" {
		network, addr = "tcp", s.Addr()
	}
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if s.tls {
		conf := s.ClientTLS()
		conf.ServerName = "127.0.0.1"
		c = tls.Client(c, conf)
	}
	cmd := "PING\r\n"
	if s.pass != "" {
		cmd = fmt.Sprintf("*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\nPING\r\n", len(s.pass), s.pass)
	}
	if _, err := c.Write([]byte(cmd)); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err == nil && s.pass != "" {
		if strings.TrimSpace(line) != "+OK" {
			return fmt.Errorf("AUTH answered %q", strings.TrimSpace(line))
		}
		line, err = r.ReadString('\n')
	}
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Addr is the server's address as redisstore.Config.Addrs and the
// Caddyfile's `address` take it: 127.0.0.1:PORT, or unix/PATH.
func (s *Server) Addr() string {
	if s.socket != "" {
		return "unix/" + s.socket
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// CAFile is the PEM file of the CA that signed a TLS server's
// certificate, "" without TLS.
func (s *Server) CAFile() string { return s.caFile }

// ClientTLS is a client config that trusts a TLS server's CA (nil without
// TLS).
func (s *Server) ClientTLS() *tls.Config {
	if !s.tls {
		return nil
	}
	return &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12}
}

// writeCerts makes a CA and a server certificate for 127.0.0.1 and
// localhost, in s.dir.
func (s *Server) writeCerts() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.caFile = filepath.Join(s.dir, "ca.pem")
	for name, b := range map[string]*pem.Block{
		s.caFile:                         {Type: "CERTIFICATE", Bytes: caDER},
		filepath.Join(s.dir, "cert.pem"): {Type: "CERTIFICATE", Bytes: leafDER},
		filepath.Join(s.dir, "key.pem"):  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(name, pem.EncodeToMemory(b), 0o600); err != nil {
			return err
		}
	}
	s.roots = x509.NewCertPool()
	s.roots.AddCert(caCert)
	return nil
}

// Socket is the Unix socket path, "" for a TCP server.
func (s *Server) Socket() string { return s.socket }

// Port is the TCP port, 0 for a Unix socket server.
func (s *Server) Port() int { return s.port }

// PID is the running server's process id, 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Starts is how many times the server was started (1 + restarts).
func (s *Server) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs
}

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("redis-server: signal %v: %v", sig, err)
	}
}

// wait waits for the running server to exit, within d, and forgets it.
// It reports whether it exited.
func (s *Server) wait(d time.Duration) bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
	case <-time.After(d):
		return false
	}
	s.mu.Lock()
	if s.done == done {
		s.cmd, s.done = nil, nil
	}
	s.mu.Unlock()
	return true
}

// Stop shuts the server down (SIGTERM, or SIGKILL if it does not exit
// within 5 s) and waits for it to exit. A paused server is resumed first
// so that it can handle SIGTERM.
func (s *Server) Stop() {
	s.signal(syscall.SIGTERM)
	s.signal(syscall.SIGCONT)
	if !s.wait(5 * time.Second) {
		s.Kill()
	}
}

// Kill kills the server with SIGKILL and waits for it to exit: a crash.
func (s *Server) Kill() {
	s.signal(syscall.SIGKILL)
	if !s.wait(10 * time.Second) {
		s.t.Errorf("redis-server pid %d did not exit after SIGKILL", s.PID())
	}
}

// Pause freezes the server with SIGSTOP: connections stay open and
// commands get no answer.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

// Restart kills the server if it runs and starts it again on the same
// socket or port. Nothing is persisted, so it restarts empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if s.socket != "" {
		_ = os.Remove(s.socket)
	}
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}
