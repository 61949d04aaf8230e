package jwtauth

import (
	"encoding/base64"
	"strings"
)

// This file reads the compact JWS serialization (RFC 7515 §7.1) strictly:
// exactly three base64url segments without padding, and a header whose
// security-relevant members appear once, in one spelling.

var b64 = base64.RawURLEncoding.Strict()

// header holds what we read from a JOSE header.
type header struct {
	alg *algInfo
	kid []byte // points into the decoded header, which is never reused
}

// jwsChars is the alphabet of a compact JWS: base64url and the dots. A table
// lookup per byte is several times faster than the equivalent comparisons.
var jwsChars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") {
		t[c] = true
	}
	return t
}()

// splitJWS returns the positions of the two dots of a compact JWS, refusing
// any other shape and any byte outside base64url.
func splitJWS(tok string) (d1, d2 int, err error) {
	d1 = strings.IndexByte(tok, '.')
	if d1 < 0 {
		return 0, 0, errNotJWS
	}
	d2 = strings.IndexByte(tok[d1+1:], '.')
	if d2 < 0 {
		return 0, 0, errNotJWS
	}
	d2 += d1 + 1
	if strings.IndexByte(tok[d2+1:], '.') >= 0 {
		return 0, 0, errTooManySegments
	}
	for i := 0; i < len(tok); i++ {
		if !jwsChars[tok[i]] {
			return 0, 0, errNotB64
		}
	}
	return d1, d2, nil
}

func decodeSegment(buf []byte, seg string) ([]byte, error) {
	if b64.DecodedLen(len(seg)) > len(buf) {
		return b64.DecodeString(seg)
	}
	n, err := b64.Decode(buf, []byte(seg))
	return buf[:n], err
}

// parseHeader reads alg and kid, refusing crit, duplicated or case-colliding
// members, an alg outside the allow-list and an unexpected typ. jku, x5u, jwk
// and x5c are ignored: keys come only from configuration.
func (v *Validator) parseHeader(raw []byte) (header, error) {
	var h header
	if !validJSON(raw) {
		return h, errHeaderNotJSON
	}
	var alg, typ []byte
	var seen uint8
	var bad string
	err := jsonObject(raw).each(func(k, val []byte) bool {
		name := rawKey(k)
		for i, want := range [...]string{"alg", "kid", "typ", "crit"} {
			if string(name) == want {
				if seen&(1<<i) != 0 {
					bad = "duplicate " + want + " header"
					return false
				}
				seen |= 1 << i
				switch i {
				case 0:
					alg = val
				case 1:
					if len(val) < 2 || val[0] != '"' {
						bad = "kid is not a string"
						return false
					}
					h.kid = rawKey(val) // a string value decodes like a key
				case 2:
					typ = val
				case 3:
					bad = "crit header is not supported"
					return false
				}
			} else if strings.EqualFold(string(name), want) {
				bad = "header " + string(name) + " collides with " + want
				return false
			}
		}
		return true
	})
	if err != nil {
		return h, errHeaderNotObject
	}
	if bad != "" {
		return h, malformed(bad)
	}
	if len(alg) < 2 || alg[0] != '"' {
		return h, errAlgMissing
	}
	h.alg = lookupAlgRaw(alg)
	if h.alg == nil || !v.allowed.has(h.alg) {
		return h, errAlgNotAllowed
	}
	if len(v.Types) > 0 {
		t, ok := decodeString(typ)
		if !ok || !typeAllowed(v.Types, t) {
			return h, errTypNotAllowed
		}
	}
	return h, nil
}

func typeAllowed(allowed []string, t string) bool {
	t = strings.TrimPrefix(strings.ToLower(t), "application/")
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimPrefix(strings.ToLower(a), "application/"), t) {
			return true
		}
	}
	return false
}
