package jwtauth

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "jwtauth",
		Usage: "user add|passwd|disable|enable --file <users.json> <login> | sessions list|revoke | token --issuer-dir <dir> --sub <sub>",
		Short: "Manages jwt_issuer users files and sessions, and mints test tokens",
		Long: `
Tools for the jwtauth app (jwt_issuer and jwt_auth).

  caddy jwtauth user add --file users.json [--user-id N] [--claim k=v]... [--algorithm bcrypt|argon2id] LOGIN
  caddy jwtauth user passwd --file users.json [--algorithm bcrypt|argon2id] LOGIN
  caddy jwtauth user disable --file users.json LOGIN
  caddy jwtauth user enable --file users.json LOGIN
  caddy jwtauth sessions list [--issuer NAME] [--login LOGIN] [--address ADDR]
  caddy jwtauth sessions revoke --issuer NAME (--sid SID | --login LOGIN) [--address ADDR]
  caddy jwtauth token --issuer-dir DIR --sub SUB [--claim k=v]... [--ttl 5m]

Passwords are prompted for twice when stdin is a terminal, or read as one line
from stdin otherwise, as 'caddy hash-password' does; they never appear on the
command line. They are hashed with caddyauth's bcrypt or argon2id, with the
algorithm and parameters of the slowest hash already in the file (so that no
login is faster to check than an unknown one), or, in a file without one (of
the --algorithm given), with the defaults of 'caddy hash-password' (bcrypt
when no --algorithm is given). The users file is created with mode
0600 when missing and always replaced atomically.

A running issuer picks up a users-file change by itself within its
users_reload_interval (default 5s), without a config reload; changing,
disabling or removing a user then ends that user's sessions.

The sessions commands talk to a running Caddy through its admin API (as
'caddy reload' does), so they work while Caddy holds the session store.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(userCommand(), sessionsCommand(), tokenCommand())
		},
	})
}

func userCommand() *cobra.Command {
	user := &cobra.Command{
		Use:   "user add|passwd|disable|enable --file <users.json> <login>",
		Short: "Adds a user, changes a password, disables or enables a user",
		Long: `
Edits a jwt_issuer users file, always replacing it atomically. A running
Caddy picks the change up by itself within the issuer's users_reload_interval
(default 5s); a changed, disabled or removed user then loses its sessions.
`,
	}
	fileFlag := func(c *cobra.Command) {
		c.Flags().StringP("file", "f", "", "The users file (JSON); required")
	}
	algFlag := func(c *cobra.Command) {
		c.Flags().StringP("algorithm", "a", "", "Password hash algorithm: bcrypt or argon2id; default: as the slowest hash in the file (bcrypt in a new file)")
	}

	add := &cobra.Command{
		Use:   "add --file <users.json> [--user-id <n>] [--claim <k=v>]... [--algorithm <bcrypt|argon2id>] <login>",
		Short: "Adds a user, prompting for the password; creates the file if missing",
		Long: `
Adds LOGIN to the users file, prompting for its password.

--user-id
    The user_id claim of the user's access tokens (odoo_jwt's res.users id).
    Default: one more than the largest user_id in the file, or 1.

--claim k=v
    An extra claim for the user's access tokens, such as email=demo@example.com,
    partner_id=7 or roles=["admin"]. The value is read as JSON when it is valid
    JSON, as a string otherwise ('code="0042"' forces a string). Repeatable.
    Claims the issuer sets itself (iss, sub, aud, exp, nbf, iat, jti, sid,
    user_id, login), in any letter case, are refused.
`,
		Args: cobra.ExactArgs(1),
	}
	fileFlag(add)
	algFlag(add)
	add.Flags().String("user-id", "", "The user's user_id (integer); default: the largest in the file + 1")
	add.Flags().StringArray("claim", nil, "An extra access-token claim, k=v (v is JSON or a string); repeatable")
	add.RunE = caddycmd.WrapCommandFuncForCobra(cmdUserAdd)

	passwd := &cobra.Command{
		Use:   "passwd --file <users.json> [--algorithm <bcrypt|argon2id>] <login>",
		Short: "Sets a user's password, prompting for it",
		Args:  cobra.ExactArgs(1),
	}
	fileFlag(passwd)
	algFlag(passwd)
	passwd.RunE = caddycmd.WrapCommandFuncForCobra(cmdUserPasswd)

	disable := &cobra.Command{
		Use:   "disable --file <users.json> <login>",
		Short: "Disables a user: the running server refuses its logins and ends its sessions within users_reload_interval",
		Args:  cobra.ExactArgs(1),
	}
	fileFlag(disable)
	disable.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		return cmdUserSetDisabled(fl, true)
	})

	enable := &cobra.Command{
		Use:   "enable --file <users.json> <login>",
		Short: "Enables a disabled user again",
		Args:  cobra.ExactArgs(1),
	}
	fileFlag(enable)
	enable.RunE = caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		return cmdUserSetDisabled(fl, false)
	})

	user.AddCommand(add, passwd, disable, enable)
	return user
}

// cmdUserAdd implements `caddy jwtauth user add`.
func cmdUserAdd(fl caddycmd.Flags) (int, error) {
	path, login, err := fileAndLogin(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	uf, err := LoadUsersFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		uf = new(UsersFile)
	case err != nil:
		return caddy.ExitCodeFailedStartup, err
	}
	if uf.Find(login) != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("%s: user %q already exists (use 'passwd' to change the password)", path, login)
	}

	userID, err := newUserID(uf, fl.String("user-id"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	claimArgs, err := fl.GetStringArray("claim")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	claims, err := parseClaimArgs(claimArgs)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	for k := range claims {
		if isReservedClaim(k) { // LoadUsersFile of the issuer would refuse it
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--claim %s: the issuer sets this claim itself", k)
		}
	}
	var rawClaims json.RawMessage
	if len(claims) > 0 {
		if rawClaims, err = json.Marshal(claims); err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	}

	hash, err := promptAndHash(uf, fl.String("algorithm"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	uf.Users = append(uf.Users, User{Login: login, PasswordHash: hash, UserID: userID, Claims: rawClaims})
	if err := uf.Save(path); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Fprintf(os.Stderr, "added user %q (user_id %s) to %s\n", login, userID, path)
	return caddy.ExitCodeSuccess, nil
}

// cmdUserPasswd implements `caddy jwtauth user passwd`.
func cmdUserPasswd(fl caddycmd.Flags) (int, error) {
	return editUser(fl, "changed the password of %q in %s\n", func(uf *UsersFile, u *User) error {
		hash, err := promptAndHash(uf, fl.String("algorithm"))
		u.PasswordHash = hash
		return err
	})
}

// editUser loads the users file, applies edit to the named user and saves
// the file atomically.
func editUser(fl caddycmd.Flags, done string, edit func(*UsersFile, *User) error) (int, error) {
	path, login, err := fileAndLogin(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	uf, err := LoadUsersFile(path)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	u := uf.Find(login)
	if u == nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("%s: no user %q", path, login)
	}
	if err := edit(uf, u); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if err := uf.Save(path); err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Fprintf(os.Stderr, done, login, path)
	return caddy.ExitCodeSuccess, nil
}

// cmdUserSetDisabled implements `caddy jwtauth user disable` and `enable`.
func cmdUserSetDisabled(fl caddycmd.Flags, disabled bool) (int, error) {
	done := "enabled user %q in %s\n"
	if disabled {
		done = "disabled user %q in %s\n"
	}
	return editUser(fl, done, func(_ *UsersFile, u *User) error {
		u.Disabled = disabled
		return nil
	})
}

// fileAndLogin returns the --file flag and the single LOGIN argument.
func fileAndLogin(fl caddycmd.Flags) (string, string, error) {
	path := fl.String("file")
	if path == "" {
		return "", "", errors.New("--file is required")
	}
	if fl.NArg() != 1 {
		return "", "", fmt.Errorf("expected exactly one LOGIN argument, got %d", fl.NArg())
	}
	login := fl.Arg(0)
	if err := checkLogin(login); err != nil {
		return "", "", err
	}
	return path, login, nil
}

// checkLogin refuses logins that would be ambiguous or unprintable.
func checkLogin(login string) error {
	switch {
	case login == "":
		return errors.New("login is empty")
	case len(login) > 256:
		return errors.New("login is longer than 256 bytes")
	case !utf8.ValidString(login):
		return errors.New("login is not valid UTF-8")
	case strings.TrimSpace(login) != login:
		return errors.New("login starts or ends with white space")
	}
	for _, r := range login {
		if unicode.IsControl(r) {
			return errors.New("login contains a control character")
		}
	}
	return nil
}

// newUserID returns the --user-id flag, or one more than the largest
// integer user_id of the file, and refuses a user_id already in use.
func newUserID(uf *UsersFile, flag string) (json.Number, error) {
	if flag == "" {
		var maxID int64
		for _, u := range uf.Users {
			if n, err := strconv.ParseInt(u.UserID.String(), 10, 64); err == nil && n > maxID {
				maxID = n
			}
		}
		return json.Number(strconv.FormatInt(maxID+1, 10)), nil
	}
	n, err := strconv.ParseInt(flag, 10, 64)
	if err != nil || n < 0 {
		return "", fmt.Errorf("--user-id %q: want a non-negative integer", flag)
	}
	id := json.Number(strconv.FormatInt(n, 10))
	for _, u := range uf.Users {
		if u.UserID == id {
			return "", fmt.Errorf("--user-id %s: already used by %q", id, u.Login)
		}
	}
	return id, nil
}

// parseClaimArgs parses repeated k=v flags. v is taken as JSON when it is
// valid JSON, as a plain string otherwise.
func parseClaimArgs(args []string) (map[string]any, error) {
	if len(args) == 0 {
		return nil, nil
	}
	claims := make(map[string]any, len(args))
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--claim %q: want key=value", arg)
		}
		if _, dup := claims[k]; dup {
			return nil, fmt.Errorf("--claim %s given twice", k)
		}
		var val any = v
		if json.Valid([]byte(v)) {
			dec := json.NewDecoder(strings.NewReader(v))
			dec.UseNumber()
			if err := dec.Decode(&val); err != nil {
				return nil, fmt.Errorf("--claim %s: %w", k, err)
			}
		}
		claims[k] = val
	}
	return claims, nil
}

// Defaults of `caddy hash-password` for argon2id (caddyauth's unexported
// defaultArgon2id* constants; TestHashDefaultsMatchCaddy keeps them equal).
const (
	argon2idTime    = 1
	argon2idMemory  = 46 * 1024
	argon2idThreads = 1
	argon2idKeyLen  = 32
	argon2idSaltLen = 16
)

// hashPassword hashes with caddyauth's hashers, using `caddy
// hash-password`'s defaults: bcrypt cost 14 (BcryptHash's default), or
// argon2id t=1, m=46 MiB, p=1, 32-byte key and a fresh 16-byte salt.
func hashPassword(algorithm string, password []byte) (string, error) {
	if len(password) == 0 {
		return "", errors.New("the password is empty")
	}
	switch algorithm {
	case "bcrypt":
		if len(password) > maxBcryptPassword {
			return "", fmt.Errorf("the password is %d bytes long; bcrypt takes at most %d (use --algorithm argon2id for longer ones)",
				len(password), maxBcryptPassword)
		}
		h, err := caddyauth.BcryptHash{}.Hash(password)
		return string(h), err
	case "argon2id":
		return hashArgon2id(password, argon2idMemory, argon2idTime, argon2idThreads, argon2idKeyLen)
	}
	return "", fmt.Errorf("unknown --algorithm %q: want bcrypt or argon2id", algorithm)
}

// promptAndHash reads the password and hashes it like the slowest hash of
// uf of the given algorithm (any, when algorithm is empty), so that a new
// hash never makes a login faster to check than an unknown one; with none
// such in the file, with `caddy hash-password`'s defaults for algorithm
// (bcrypt when empty).
func promptAndHash(uf *UsersFile, algorithm string) (string, error) {
	if algorithm != "" && algorithm != "bcrypt" && algorithm != "argon2id" {
		return "", fmt.Errorf("unknown --algorithm %q: want bcrypt or argon2id", algorithm)
	}
	var hashes [][]byte
	for _, u := range uf.Users {
		h := []byte(u.PasswordHash)
		if _, err := bcrypt.Cost(h); algorithm == "" || (err == nil) == (algorithm == "bcrypt") {
			hashes = append(hashes, h)
		}
	}
	password, err := readPassword(os.Stdin)
	if err != nil {
		return "", err
	}
	defer clear(password)
	if i := slowestHash(hashes); i >= 0 {
		if len(password) == 0 {
			return "", errors.New("the password is empty")
		}
		return hashLike(hashes[i], password)
	}
	if algorithm == "" {
		algorithm = "bcrypt"
	}
	return hashPassword(algorithm, password)
}

// readPassword reads a password the way `caddy hash-password` does: on a
// terminal, twice without echo; otherwise one line from in, without its
// line ending (\n or \r\n).
func readPassword(in *os.File) ([]byte, error) {
	fd := int(in.Fd())
	if term.IsTerminal(fd) {
		// Restore the terminal's echo if interrupted at the prompt.
		state, err := term.GetState(fd)
		if err != nil {
			return nil, err
		}
		c := make(chan os.Signal, 1)
		signal.Notify(c, os.Interrupt)
		done := make(chan struct{})
		defer close(done)
		defer signal.Stop(c)
		go func() {
			select {
			case <-c:
				_ = term.Restore(fd, state)
				os.Exit(caddy.ExitCodeFailedStartup)
			case <-done:
			}
		}()

		fmt.Fprint(os.Stderr, "Enter password: ")
		password, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(os.Stderr, "Confirm password: ")
		confirmation, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		defer clear(confirmation)
		if !bytes.Equal(password, confirmation) {
			clear(password)
			return nil, errors.New("passwords do not match")
		}
		if len(password) == 0 {
			return nil, errors.New("the password is empty")
		}
		return password, nil
	}

	line, err := bufio.NewReader(in).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if trimmed, ok := bytes.CutSuffix(line, []byte("\n")); ok {
		line = bytes.TrimSuffix(trimmed, []byte("\r"))
	}
	if len(line) == 0 {
		return nil, errors.New("the password is empty (write it as one line on stdin)")
	}
	return line, nil
}
