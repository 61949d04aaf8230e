package caddyfile_test

import (
	"io"
	"net/http"
	"strings"
)

// e2eSend is the one HTTP client of the end-to-end tests: it sends a
// request with c and reads the whole answer. A non-empty body goes as JSON
// unless headers set Content-Type; headers alternate name and value and
// are added in order, verbatim, so a test can repeat one. res is nil when
// the request failed; a failed read returns res with err.
func e2eSend(c *http.Client, method, url, body string, headers ...string) (res *http.Response, b string, err error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return nil, "", err
	}
	typed := false
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1])
		typed = typed || strings.EqualFold(headers[i], "Content-Type")
	}
	if body != "" && !typed {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err = c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res, string(raw), err
}
