#!/usr/bin/env bash
# Installs what caddyfile/console_browser_test.go needs: Debian's chromium and
# playwright-core from npm (into caddyfile/testdata/browser/node_modules, which
# .gitignore ignores; playwright-core downloads no browser of its own).
# Idempotent, and never fails: when something cannot be installed it prints a
# warning and the browser test skips, saying why.
set -u
cd "$(dirname "$0")/.."

PLAYWRIGHT_CORE_VERSION=1.65.1
node_dir=caddyfile/testdata/browser

warn() { echo "warning: install-browser: $*" >&2; }

if command -v chromium >/dev/null 2>&1; then
	echo "install-browser: chromium present: $(chromium --version 2>/dev/null | head -n1)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "install-browser: installing chromium"
	# dpkg unpacks through $TMPDIR: keep it off /tmp, which parallel test
	# runs may clean while the install runs.
	apt_tmp=$(mktemp -d /var/tmp/install-browser.XXXXXX 2>/dev/null || mktemp -d)
	if ! { TMPDIR=$apt_tmp apt-get update -qq &&
		TMPDIR=$apt_tmp DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/tmp/install-browser-apt.log 2>&1; then
		warn "apt-get install chromium failed (log: /tmp/install-browser-apt.log)"
	fi
	rm -rf "$apt_tmp"
else
	warn "chromium is missing and apt-get cannot run as this user"
fi

installed=$(node -p "require('./$node_dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$installed" = "$PLAYWRIGHT_CORE_VERSION" ]; then
	echo "install-browser: playwright-core $installed present"
elif ! command -v npm >/dev/null 2>&1; then
	warn "npm is missing: cannot install playwright-core"
else
	echo "install-browser: installing playwright-core@$PLAYWRIGHT_CORE_VERSION into $node_dir"
	if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-save --no-package-lock --no-audit --no-fund \
		--loglevel=error --prefix "$node_dir" "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/tmp/install-browser-npm.log 2>&1; then
		warn "npm install playwright-core failed (log: /tmp/install-browser-npm.log)"
	fi
fi
exit 0
