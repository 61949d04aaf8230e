package jwtauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"
)

// itBenchState opens an issuer state over n live sessions of 1000 users,
// written in large batches (one fsync each) and indexed by a reopen.
func itBenchState(b *testing.B, n int) *issuerState {
	b.Helper()
	dir := b.TempDir()
	s, err := openStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; {
		var ops []storeOp
		for ; i < n && len(ops) < 5000; i++ {
			sid := fmt.Sprintf("bench-%08d", i)
			h := sha256.Sum256([]byte(sid))
			rec := sessionRecord{
				SID: sid, Login: fmt.Sprintf("user%d", i%1000), UserID: "1", FP: "fp",
				Created: testNow.UnixNano(), LastUsed: testNow.UnixNano(), Current: hex.EncodeToString(h[:]),
			}
			val, _ := json.Marshal(rec)
			ops = append(ops, storeOp{Key: sessionKeyPrefix + sid, Value: val})
		}
		if err := s.Apply(ops...); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	st, err := loadIssuerState(dir, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Destruct() })
	if st.count() != n {
		b.Fatalf("%d sessions indexed, want %d", st.count(), n)
	}
	return st
}

// BenchmarkIssuerLogin measures what a login writes once the password is
// checked: a new session (token, record, durable write, indexes), at 1k and
// 100k live sessions. The 1k case is the baseline of the 100k one.
func BenchmarkIssuerLogin(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			st := itBenchState(b, n)
			i := 0
			for b.Loop() {
				u := &issuerUser{login: fmt.Sprintf("new%d", i), userID: "2", fp: "fp"}
				if _, _, err := st.create(u, testNow); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkIssuerRotate measures a refresh-token rotation (lookup, reuse
// checks, new token, durable write, index update) at 1k and 100k live
// sessions.
func BenchmarkIssuerRotate(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			st := itBenchState(b, n)
			u := &issuerUser{login: "rotating", userID: "3", fp: "fp"}
			now := testNow
			p := &sessionPolicy{refreshTTL: 1000 * time.Hour, idle: 1000 * time.Hour,
				user: func(string) *issuerUser { return u }, now: func() time.Time { return now }}
			s, tok, err := st.create(u, now)
			if err != nil {
				b.Fatal(err)
			}
			sid := s.rec.SID
			for b.Loop() {
				now = now.Add(time.Second)
				_, next, err := st.rotate(tok, sid, p, now)
				if err != nil {
					b.Fatal(err)
				}
				tok = next
			}
		})
	}
}
