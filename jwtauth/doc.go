// Package jwtauth implements the caddy-jwtauth modules: the jwtauth app,
// which holds named validators and issuers, the jwt_auth handler, which
// enforces validators on routes, and the jwt_issuer handler, which issues the
// tokens.
//
// # Modules
//
//   - jwtauth (app.go): the app and the Caddyfile global option of the same
//     name; it holds the named validators and issuers, and starts and stops
//     the issuers' stores.
//   - http.handlers.jwt_auth (handler.go): the jwt_auth directive; it
//     enforces validators on a route.
//   - http.handlers.jwt_issuer (issuer_handler.go): the jwt_issuer
//     directive; it serves an issuer's odoo_jwt-compatible endpoints.
//   - admin.api.jwtauth (adminapi.go): the sessions of the running app on
//     Caddy's admin endpoint, used by `caddy jwtauth sessions`.
//
// # Placeholders
//
// A request that jwt_auth lets through carries:
//
//   - {http.auth.user.id}: the user ID (the validator's user_id rule);
//   - {http.auth.user.<claim>}: any payload claim, as caddyauth names them;
//   - {http.auth.jwt.claims.<claim>}: the same claim, under its JWT name;
//   - {http.auth.jwt.validator}: the name of the validator that accepted;
//   - {http.auth.jwt.partner_id}: the partner ID (the partner_id rule).
//
// A refused one carries {http.auth.jwt.error}: missing, malformed, invalid,
// expired or forbidden, for handle_errors.
//
// # Files
//
// A request to jwt_auth reads top-down: handler.go → extract.go →
// verify.go → jose.go and claims.go → cookie.go.
//
//   - app.go: the app, its lookups by name, Start and Stop.
//   - caddyfile.go: the grammar of the app, validators and jwt_auth, and
//     the shared option rules (once, oneArg, ...).
//   - handler.go: jwt_auth; placeholders, forwarded claims, the answer to a
//     refusal.
//   - extract.go: where a token is found (header, cookie, query).
//   - validator.go: the Validator config: defaults, checks, provisioning.
//   - verify.go: the verification pipeline, cached entry point first, one
//     function per registered claim.
//   - jose.go: the strict compact-JWS reader; claims.go: the JSON scanner
//     that reads headers and payloads without a map.
//   - keys.go: algorithms and key sets; jwks.go: remote JWKS and refresh.
//   - cache.go: the verified-token cache, a pure data structure.
//   - cookie.go: the identity cookie (cookie mode) and its key.
//   - errors.go: refusal reasons, sentinel errors, RFC 6750 challenges.
//   - issuer.go: the Issuer config and lifecycle (provision, start,
//     cleanup).
//   - issuer_caddyfile.go: the grammar of issuer, its store and jwt_issuer.
//   - issuer_handler.go: jwt_issuer, its dispatch and endpoints, and the
//     one place where endpoint errors become answers.
//   - issuer_wire.go: the Odoo wire format: plain JSON and the JSON-RPC
//     envelope, request parameters, error answers.
//   - issuer_users.go: credentials: the fake hash, the password check;
//     users.go: the users file format; users_reload.go: its live reload;
//     hashcost.go: which hash is the slowest.
//   - issuer_keys.go: signing keys, issuer.json, access-token minting.
//   - issuer_sessions.go, issuer_store.go, issuer_backends.go: sessions and
//     the store that keeps them (store_dir or Redis), shared across reloads.
//   - issuer_revocation.go: the deny-list, and the Issuer's side of
//     localIssuer (declared in verify.go), which bound validators ask.
//   - issuer_limit.go: the login limiter; issuer_errlog.go: rate-limited
//     store-failure logs; audit.go: the security audit log; metrics.go:
//     Prometheus metrics.
//   - console.go: the test console at <path_prefix>/login.
//   - command.go: `caddy jwtauth` and its user subcommands;
//     command_sessions.go and command_token.go: its sessions and token
//     subcommands (mintFromIssuerDir lives beside the latter).
//   - files.go: crash-safe writes and load-or-create of generated files.
//
// Engines that need no Caddy live behind package walls in internal/:
//
//   - internal/sessions: the sessions.Store interface, its errors and
//     token format; internal/sessions/boltstore (the embedded bbolt store in
//     store_dir) and internal/sessions/redisstore (Redis, one Lua script
//     per operation, and the revocation feed); internal/sessions/sessionstest:
//     the conformance suite every backend passes.
//   - internal/limiter: the login limiter interface and its in-memory
//     engine; internal/limiter/limitertest: its conformance suite. The Redis
//     limiter is in redisstore.
//   - internal/testsummary: what .ci/run pipes `go test -json` through, to
//     print the skipped tests last.
//
// Test support outside the walls, because caddyfile/'s end-to-end tests
// use it too: redistest starts a private redis-server for a test.
package jwtauth
