package jwtauth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/boltstore"
	"github.com/jwtauth/caddy-jwtauth/jwtauth/internal/sessions/redisstore"
)

// openBoltStore opens the embedded store at path.
func openBoltStore(path string) (sessions.Store, error) {
	return boltstore.Open(path, boltstore.Options{})
}

// openRedisStore returns the Redis store of issuer. It connects lazily: a
// Redis that is down at start makes the endpoints answer 503 until it is
// back, and Caddy still starts.
func openRedisStore(o *redisOptions, issuer string) (sessions.Store, error) {
	cfg := redisstore.Config{
		Addrs:     o.Addresses,
		Username:  o.Username,
		Password:  o.Password,
		DB:        o.DB,
		Sentinel:  o.Sentinel,
		KeyPrefix: o.KeyPrefix,
		Issuer:    issuer,
		Timeout:   o.timeout,
	}
	if o.TLS != nil {
		conf, err := o.TLS.config()
		if err != nil {
			return nil, err
		}
		cfg.TLS = conf
	}
	return redisstore.New(cfg)
}

// config builds the TLS client config.
func (t *RedisTLS) config() (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store redis: tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store redis: tls ca_file %s: no PEM certificate", t.CAFile)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}
