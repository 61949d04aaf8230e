package jwtauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
)

// The benchmarks below never assert on timing. Each one runs beside its
// baseline in the same process, and the comparisons are reported as extra
// metrics:
//
//	x_parse            ns/op of this sub-benchmark / ns/op of golang-jwt's ParseWithClaims
//	allocs_over_parse  allocs/op of this sub-benchmark - allocs/op of ParseWithClaims
//	allocs_own         allocs/op minus the harness (noop) and the bare signature check
//
// Run them with
//
//	go test -run '^$' -bench 'Handler|Cache' -count 5 ./jwtauth/

// benchAlg is one algorithm under benchmark.
type benchAlg struct {
	name   string
	method jwt.SigningMethod
	sign   func() any // private key or secret
	pub    func() any // verification key for golang-jwt
	config func(b *testing.B) *Validator
}

func benchAlgs() []benchAlg {
	hs := func() any { return []byte(testSecret) }
	return []benchAlg{
		{"HS256", jwt.SigningMethodHS256, hs, hs, func(b *testing.B) *Validator { return hsValidator() }},
		{"RS256", jwt.SigningMethodRS256, func() any { return rsaKey }, func() any { return &rsaKey.PublicKey },
			func(b *testing.B) *Validator { return benchPEMValidator(b, &rsaKey.PublicKey) }},
		{"ES256", jwt.SigningMethodES256, func() any { return ecKey }, func() any { return &ecKey.PublicKey },
			func(b *testing.B) *Validator { return benchPEMValidator(b, &ecKey.PublicKey) }},
		{"EdDSA", jwt.SigningMethodEdDSA, func() any { return edKey }, func() any { return edKey.Public() },
			func(b *testing.B) *Validator { return benchPEMValidator(b, edKey.Public()) }},
	}
}

func benchPEMValidator(b *testing.B, pub any) *Validator {
	return &Validator{
		Issuers: []string{"iss"}, Audiences: []string{"aud"},
		PublicKeyFiles: []PublicKeyFile{{Path: writePEM(b, pub)}},
	}
}

// benchNext is the no-op next handler.
var benchNext = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// benchNoop is the baseline middleware: it only calls next.
type benchNoop struct{}

func (benchNoop) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

// benchWriter is a ResponseWriter that discards everything.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(int)             {}

// benchHarness serves one prepared request over and over. Like Caddy's
// server it gives every request a fresh replacer; the request itself is
// reused, so the harness costs a few allocations (measured by the noop
// sub-benchmark), not an httptest request per iteration.
type benchHarness struct {
	r    *http.Request
	repl *caddy.Replacer
	w    *benchWriter
}

func newBenchHarness(token string) *benchHarness {
	hh := &benchHarness{repl: caddy.NewReplacer(), w: &benchWriter{h: make(http.Header)}}
	r := httptest.NewRequest(http.MethodGet, "/api/items", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench")
	hh.r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, hh.repl))
	return hh
}

func (hh *benchHarness) serve(h caddyhttp.MiddlewareHandler) error {
	*hh.repl = *caddy.NewReplacer() // a fresh replacer, in the context already
	if len(hh.w.h) > 0 {
		clear(hh.w.h)
	}
	return h.ServeHTTP(hh.w, hh.r, benchNext)
}

// benchPerOp is what benchMeasure found: ns/op and allocs/op of the loop.
type benchPerOp struct{ ns, allocs float64 }

// benchMeasure runs body in a b.Loop and returns its cost per iteration, so
// a sub-benchmark can be compared with a baseline that ran before it.
func benchMeasure(b *testing.B, body func()) benchPerOp {
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0 := ms.Mallocs
	for b.Loop() {
		body()
	}
	runtime.ReadMemStats(&ms)
	n := float64(b.N)
	return benchPerOp{ns: float64(b.Elapsed().Nanoseconds()) / n, allocs: float64(ms.Mallocs-m0) / n}
}

// BenchmarkHandler runs the full jwt_auth ServeHTTP path beside golang-jwt's
// ParseWithClaims of the same token, for each algorithm:
//
//	parse            golang-jwt ParseWithClaims, parser built once (the baseline)
//	verify           the bare signature check (SigningMethod.Verify), for reference
//	noop             a middleware that only calls next, through the same harness
//	handler-nocache  jwt_auth with cache_size 0: every request is fully verified
//	handler-cache    jwt_auth with the default cache: a hit
func BenchmarkHandler(b *testing.B) {
	testKeys(b)
	for _, alg := range benchAlgs() {
		b.Run(alg.name, func(b *testing.B) {
			token := sign(b, alg.method, alg.sign(), claims(), nil)
			clock := newTestClock().Now

			noCache, zero := alg.config(b), 0
			noCache.CacheSize = &zero
			cached := alg.config(b)
			app := provisionApp(b, clock, map[string]*Validator{"nocache": noCache, "cache": cached})
			hNoCache := provisionHandler(b, app, &Handler{Validators: []string{"nocache"}})
			hCache := provisionHandler(b, app, &Handler{Validators: []string{"cache"}})

			hh := newBenchHarness(token)
			for _, h := range []caddyhttp.MiddlewareHandler{hNoCache, hCache} {
				if err := hh.serve(h); err != nil {
					b.Fatalf("handler refused the benchmark token: %v", err)
				}
				if id, _ := hh.repl.GetString("http.auth.user.id"); id != "alice" {
					b.Fatalf("user id %q", id)
				}
			}

			var parse, verify, noop benchPerOp
			b.Run("parse", func(b *testing.B) {
				p := jwt.NewParser(
					jwt.WithValidMethods([]string{alg.method.Alg()}),
					jwt.WithTimeFunc(clock),
					jwt.WithExpirationRequired(),
					jwt.WithIssuer("iss"),
					jwt.WithAudience("aud"),
				)
				key := alg.pub()
				keyFunc := func(*jwt.Token) (any, error) { return key, nil }
				if _, err := p.ParseWithClaims(token, jwt.MapClaims{}, keyFunc); err != nil {
					b.Fatal(err)
				}
				parse = benchMeasure(b, func() {
					if _, err := p.ParseWithClaims(token, jwt.MapClaims{}, keyFunc); err != nil {
						b.Fatal(err)
					}
				})
			})
			b.Run("verify", func(b *testing.B) {
				d := strings.LastIndexByte(token, '.')
				sig, err := b64.DecodeString(token[d+1:])
				if err != nil {
					b.Fatal(err)
				}
				input, key := token[:d], alg.pub()
				verify = benchMeasure(b, func() {
					if err := alg.method.Verify(input, sig, key); err != nil {
						b.Fatal(err)
					}
				})
				benchReportVsParse(b, verify, parse)
			})
			b.Run("noop", func(b *testing.B) {
				noop = benchMeasure(b, func() {
					if err := hh.serve(benchNoop{}); err != nil {
						b.Fatal(err)
					}
				})
				benchReportVsParse(b, noop, parse)
			})
			for _, c := range []struct {
				name string
				h    *Handler
			}{{"handler-nocache", hNoCache}, {"handler-cache", hCache}} {
				b.Run(c.name, func(b *testing.B) {
					m := benchMeasure(b, func() {
						if err := hh.serve(c.h); err != nil {
							b.Fatal(err)
						}
					})
					benchReportVsParse(b, m, parse)
					if noop.ns > 0 {
						own := m.allocs - noop.allocs
						if c.h == hNoCache {
							own -= verify.allocs
						}
						b.ReportMetric(own, "allocs_own")
					}
				})
			}
		})
	}
}

// reportVsParse adds the comparison with the parse baseline, when it ran in
// this process (a -bench filter may have skipped it).
func benchReportVsParse(b *testing.B, m, parse benchPerOp) {
	if parse.ns > 0 {
		b.ReportMetric(m.ns/parse.ns, "x_parse")
		b.ReportMetric(m.allocs-parse.allocs, "allocs_over_parse")
	}
}

// BenchmarkHandlerReject measures the 401 path beside the noop harness:
// garbage (refused by the structural checks), an expired token (refused
// before any key lookup) and a forged HS256 signature (refused by the
// signature check). Sent again and again, as these are, they are answered
// by the negative cache; the -first-seen variants cycle through more
// distinct tokens than it holds, so each one is parsed and checked.
func BenchmarkHandlerReject(b *testing.B) {
	clock := newTestClock().Now
	app := provisionApp(b, clock, map[string]*Validator{"test": hsValidator()})
	h := provisionHandler(b, app, &Handler{Validators: []string{"test"}})
	expired := claims()
	expired["exp"] = testNow.Add(-time.Hour).Unix()
	forged := sign(b, jwt.SigningMethodHS256, []byte("another-secret-another-secret-000"), claims(), nil)

	var noop benchPerOp
	b.Run("noop", func(b *testing.B) {
		hh := newBenchHarness(hs256(b, claims()))
		noop = benchMeasure(b, func() { _ = hh.serve(benchNoop{}) })
	})
	for _, c := range []struct{ name, token string }{
		{"garbage", "not-a-jwt"},
		{"expired", hs256(b, expired)},
		{"forged", forged},
	} {
		b.Run(c.name, func(b *testing.B) {
			hh := newBenchHarness(c.token)
			if err := hh.serve(h); err == nil {
				b.Fatal("token accepted")
			}
			m := benchMeasure(b, func() {
				if err := hh.serve(h); err == nil {
					b.Fatal("token accepted")
				}
			})
			if noop.ns > 0 {
				b.ReportMetric(m.ns-noop.ns, "ns_over_noop")
				b.ReportMetric(m.allocs-noop.allocs, "allocs_over_noop")
			}
		})
	}
	for _, c := range []struct {
		name string
		key  []byte
		exp  time.Time
	}{
		{"expired-first-seen", []byte(testSecret), testNow.Add(-time.Hour)},
		{"forged-first-seen", []byte("another-secret-another-secret-000"), testNow.Add(time.Hour)},
	} {
		b.Run(c.name, func(b *testing.B) {
			headers := make([]string, 4*refusalSlots)
			for i := range headers {
				cl := claims()
				cl["exp"], cl["jti"] = c.exp.Unix(), strconv.Itoa(i)
				headers[i] = "Bearer " + sign(b, jwt.SigningMethodHS256, c.key, cl, nil)
			}
			hh := newBenchHarness("")
			auth := hh.r.Header["Authorization"]
			i := 0
			m := benchMeasure(b, func() {
				auth[0] = headers[i] // no allocation: the slice is reused
				if i++; i == len(headers) {
					i = 0
				}
				if err := hh.serve(h); err == nil {
					b.Fatal("token accepted")
				}
			})
			if noop.ns > 0 {
				b.ReportMetric(m.ns-noop.ns, "ns_over_noop")
				b.ReportMetric(m.allocs-noop.allocs, "allocs_over_noop")
			}
		})
	}
}

// benchIdentities returns n distinct identities with token-sized keys.
func benchIdentities(n int) []*identity {
	ids := make([]*identity, n)
	pad := make([]byte, 150)
	for i := range pad {
		pad[i] = 'a' + byte(i%26)
	}
	payload := jsonObject(`{"iss":"iss","aud":"aud","sub":"alice","exp":1795000000}`)
	for i := range ids {
		tok := "eyJhbGciOiJIUzI1NiJ9." + string(pad) + "." + strconv.Itoa(i)
		ids[i] = &identity{token: tok, payload: payload}
	}
	return ids
}

// BenchmarkCache measures the token cache beside a sync.Map doing the same
// work:
//
//	hit                 get of a present token
//	miss-put            get that misses, then put (the first-seen path)
//	evict-parallel      b.RunParallel: 4x more tokens than capacity, so most
//	                    puts evict; 90% gets, 10% puts
func BenchmarkCache(b *testing.B) {
	const size = 10000
	b.Run("hit", func(b *testing.B) {
		ids := benchIdentities(1000)
		c := newTokenCache(size)
		for _, id := range ids {
			c.putToken(id)
		}
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			if c.getToken(ids[i].token) == nil {
				b.Fatal("miss")
			}
			i = (i + 1) % len(ids)
		}
	})
	b.Run("hit-syncmap", func(b *testing.B) {
		ids := benchIdentities(1000)
		var m sync.Map
		for _, id := range ids {
			m.Store(id.token, id)
		}
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := m.Load(ids[i].token); !ok {
				b.Fatal("miss")
			}
			i = (i + 1) % len(ids)
		}
	})
	b.Run("miss-put", func(b *testing.B) {
		ids := benchIdentities(4 * size)
		c := newTokenCache(size)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			id := ids[i]
			if c.getToken(id.token) == nil {
				c.putToken(id)
			}
			if i++; i == len(ids) {
				i = 0
			}
		}
	})
	b.Run("miss-put-syncmap", func(b *testing.B) {
		ids := benchIdentities(4 * size)
		var m sync.Map
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			id := ids[i]
			if _, ok := m.Load(id.token); !ok {
				m.Store(id.token, id)
			}
			if i++; i == len(ids) {
				i = 0
				m.Clear() // unbounded otherwise: the cache evicts instead
			}
		}
	})
	evictParallel := func(b *testing.B, get func(string) bool, put func(*identity)) {
		ids := benchIdentities(4 * size)
		var next atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919)) // spread the goroutines
			for pb.Next() {
				i = (i + 1) % len(ids)
				id := ids[i]
				if !get(id.token) && i%10 == 0 {
					put(id)
				}
			}
		})
	}
	b.Run("evict-parallel", func(b *testing.B) {
		c := newTokenCache(size)
		evictParallel(b, func(t string) bool { return c.getToken(t) != nil }, c.putToken)
	})
	b.Run("evict-parallel-syncmap", func(b *testing.B) {
		var m sync.Map
		evictParallel(b, func(t string) bool { _, ok := m.Load(t); return ok },
			func(id *identity) { m.Store(id.token, id) })
	})
}
