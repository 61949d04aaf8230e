package jwtauth

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file reads JWT headers and payloads without building a map. A token's
// header and payload are small JSON objects of which we need a handful of
// top-level members; walking the bytes once is both faster than
// encoding/json into map[string]any and stricter, because it sees every key:
// duplicated or case-colliding security-relevant names are rejected instead of
// being silently merged as encoding/json would do.

var (
	errJSONNotObject = errors.New("not a JSON object")
	errJSONSyntax    = errors.New("malformed JSON")
)

// jsonObject is the raw bytes of a JSON object that has already passed
// validJSON. All accessors assume validity.
type jsonObject []byte

// each calls fn for every top-level member, with the raw (still quoted) key and
// the raw value. It stops early when fn returns false.
func (o jsonObject) each(fn func(rawKey, rawVal []byte) bool) error {
	i := skipSpace(o, 0)
	if i >= len(o) || o[i] != '{' {
		return errJSONNotObject
	}
	i = skipSpace(o, i+1)
	if i < len(o) && o[i] == '}' {
		return nil
	}
	for i < len(o) {
		ks := i
		ke, err := skipString(o, i)
		if err != nil {
			return err
		}
		i = skipSpace(o, ke)
		if i >= len(o) || o[i] != ':' {
			return errJSONSyntax
		}
		vs := skipSpace(o, i+1)
		ve, err := skipValue(o, vs)
		if err != nil {
			return err
		}
		if !fn(o[ks:ke], o[vs:ve]) {
			return nil
		}
		i = skipSpace(o, ve)
		if i >= len(o) {
			return errJSONSyntax
		}
		if o[i] == '}' {
			return nil
		}
		if o[i] != ',' {
			return errJSONSyntax
		}
		i = skipSpace(o, i+1)
	}
	return errJSONSyntax
}

// get returns the raw value of the top-level member named exactly name. When
// the name repeats, the last member wins: RFC 7519 §4 allows only that or
// rejection, and it is what encoding/json, and so most upstreams reading a
// forwarded payload, see. (Duplicates of the claims a validator relies on
// never get here: checkClaims refuses them.)
func (o jsonObject) get(name string) ([]byte, bool) {
	var out []byte
	found := false
	_ = o.each(func(k, v []byte) bool {
		if keyEquals(k, name) {
			out, found = v, true
		}
		return true
	})
	return out, found
}

// keyEquals reports whether the raw quoted key k decodes to name.
func keyEquals(k []byte, name string) bool {
	if len(k) == len(name)+2 && string(k[1:len(k)-1]) == name {
		return true
	}
	if !hasEscape(k) {
		return false
	}
	s, ok := decodeString(k)
	return ok && s == name
}

// rawKey returns a member name's bytes without quotes. It allocates only for
// a name with escapes, which it decodes; callers compare the result with
// string(...) conversions, which Go does without allocating.
func rawKey(k []byte) []byte {
	if !hasEscape(k) {
		return k[1 : len(k)-1]
	}
	s, _ := decodeString(k)
	return []byte(s)
}

// stringIn reports whether raw is a JSON string equal to one of list,
// without allocating unless the string holds escapes.
func stringIn(raw []byte, list []string) bool {
	if len(raw) < 2 || raw[0] != '"' {
		return false
	}
	b := raw[1 : len(raw)-1]
	if hasEscape(raw) {
		s, ok := decodeString(raw)
		if !ok {
			return false
		}
		b = []byte(s)
	}
	for _, v := range list {
		if string(b) == v {
			return true
		}
	}
	return false
}

// decodeKey returns the decoded key; it allocates only for escaped keys.
func decodeKey(k []byte) string {
	if !hasEscape(k) {
		return string(k[1 : len(k)-1])
	}
	s, _ := decodeString(k)
	return s
}

func hasEscape(raw []byte) bool {
	for _, c := range raw {
		if c == '\\' {
			return true
		}
	}
	return false
}

// decodeString decodes a raw JSON string value.
func decodeString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if !hasEscape(raw) {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// decodeNumber reads a raw JSON number as seconds. Strings, booleans and
// anything else are refused: a numeric date is a JSON number (RFC 7519 §2).
func decodeNumber(raw []byte) (float64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	// fast path: plain non-negative integers, the common case
	var n int64
	plain := len(raw) <= 15
	for _, c := range raw {
		if c < '0' || c > '9' {
			plain = false
			break
		}
		n = n*10 + int64(c-'0')
	}
	if plain {
		return float64(n), true
	}
	// only the JSON number grammar's characters: strconv would also take
	// "-Inf", hex floats and underscores
	if raw[0] == '-' && (len(raw) < 2 || raw[1] < '0' || raw[1] > '9') {
		return 0, false
	}
	for _, c := range raw {
		if (c < '0' || c > '9') && c != '-' && c != '+' && c != '.' && c != 'e' && c != 'E' {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

// claimString renders a raw claim value as a placeholder or header value:
// strings unquoted, numbers and booleans verbatim, arrays and objects as
// compact JSON.
func claimString(raw []byte) string {
	if len(raw) > 0 && raw[0] == '"' {
		s, _ := decodeString(raw)
		return s
	}
	return string(raw)
}

// claimHas reports whether any of the strings in raw (a string, or an array
// of strings) equals want. For space-delimited claims such as scope and scp,
// a single string is split on spaces (RFC 8693 §4.2).
func claimHas(raw []byte, spaceDelimited bool, want []string) bool {
	if len(raw) == 0 {
		return false
	}
	if raw[0] == '"' && spaceDelimited {
		str, ok := decodeString(raw)
		if !ok {
			return false
		}
		for _, f := range strings.Fields(str) {
			if slices.Contains(want, f) {
				return true
			}
		}
		return false
	}
	if raw[0] == '"' {
		return stringIn(raw, want)
	}
	if raw[0] != '[' {
		return false
	}
	// an array: compare each string element in place
	for i := skipSpace(raw, 1); i < len(raw) && raw[i] != ']'; {
		e, err := skipValue(raw, i)
		if err != nil {
			return false
		}
		if stringIn(raw[i:e], want) {
			return true
		}
		i = skipSpace(raw, e)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return false
}

// stringOrStrings reports whether raw is a JSON string or an array whose
// elements are all strings (RFC 7519 §4.1.3 for aud).
func stringOrStrings(raw []byte) bool {
	if len(raw) == 0 {
		return false
	}
	if raw[0] != '[' {
		return raw[0] == '"'
	}
	for i := skipSpace(raw, 1); i < len(raw) && raw[i] != ']'; {
		if raw[i] != '"' {
			return false
		}
		e, err := skipString(raw, i)
		if err != nil {
			return false
		}
		i = skipSpace(raw, e)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return true
}

// isScalar reports whether raw is a JSON string or number.
func isScalar(raw []byte) bool {
	return len(raw) > 0 && raw[0] != '{' && raw[0] != '[' && string(raw) != "null" && string(raw) != "true" && string(raw) != "false"
}

// maxNumericDate is 9999-12-31T23:59:59Z. No real token is dated beyond it,
// and refusing it keeps every accepted date exact in a time.Time.
const maxNumericDate = 253402300799

// numericDateClaim reads the exp, nbf or iat claim raw: a JSON number from 0
// to maxNumericDate. A negative, non-finite or absurdly large date is
// refused, not clamped: it can only come from a broken or hostile issuer.
func numericDateClaim(raw []byte, name string) (float64, error) {
	f, ok := decodeNumber(raw)
	if !ok {
		return 0, invalidToken(reasonInvalid, ErrTokenInvalidClaims, name+" is not a number")
	}
	if !(f >= 0 && f <= maxNumericDate) { // also false for NaN
		return 0, invalidToken(reasonInvalid, ErrTokenInvalidClaims, name+" out of range")
	}
	return f, nil
}

// numericDate converts seconds since the epoch, clamping absurd values.
func numericDate(f float64) time.Time {
	if f > 1e12 || math.IsNaN(f) {
		f = 1e12
	}
	if f < -1e12 {
		f = -1e12
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func skipString(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errJSONSyntax
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		}
	}
	return 0, errJSONSyntax
}

func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errJSONSyntax
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				e, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errJSONSyntax
	default:
		s := i
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if i == s {
					return 0, errJSONSyntax
				}
				return i, nil
			}
			i++
		}
		if i == s {
			return 0, errJSONSyntax
		}
		return i, nil
	}
}

// maxJSONDepth is encoding/json's nesting limit, which validJSON keeps.
const maxJSONDepth = 10000

// validJSON reports whether b is one JSON value with optional whitespace
// around it: what json.Valid reports, in one pass without its per-byte
// state machine. Like json.Valid it does not check UTF-8.
func validJSON(b []byte) bool {
	i, ok := validValue(b, skipSpace(b, 0), 0)
	return ok && skipSpace(b, i) == len(b)
}

// validValue checks the value at b[i:] and returns the index after it.
func validValue(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; c {
	case '{', '[':
		return validContainer(b, i, depth+1)
	case '"':
		return validString(b, i)
	case 't':
		return validLiteral(b, i, "true")
	case 'f':
		return validLiteral(b, i, "false")
	case 'n':
		return validLiteral(b, i, "null")
	}
	return validNumber(b, i)
}

// validContainer checks the object or array opening at b[i].
func validContainer(b []byte, i, depth int) (int, bool) {
	if depth > maxJSONDepth {
		return i, false
	}
	object := b[i] == '{'
	end := byte(']')
	if object {
		end = '}'
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == end {
		return i + 1, true
	}
	for {
		var ok bool
		if object {
			if i >= len(b) || b[i] != '"' {
				return i, false
			}
			if i, ok = validString(b, i); !ok {
				return i, false
			}
			if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
				return i, false
			}
			i = skipSpace(b, i+1)
		}
		if i, ok = validValue(b, i, depth); !ok {
			return i, false
		}
		if i = skipSpace(b, i); i >= len(b) {
			return i, false
		}
		switch b[i] {
		case end:
			return i + 1, true
		case ',':
			i = skipSpace(b, i+1)
		default:
			return i, false
		}
	}
}

// validString checks the string opening at b[i]: no control characters,
// only the escapes JSON defines.
func validString(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return i, false
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func validLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// validNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func validNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
