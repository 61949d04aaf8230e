// Drives the jwt_issuer console in headless Chromium through playwright-core
// and prints what it saw as JSON on stdout; console_browser_test.go asserts
// on it. Run by the Go test; not meant to be run by hand, but it can be:
//
//   CONSOLE_URL=http://localhost:8080/api/login USER_DATA_DIR=$(mktemp -d) \
//     node caddyfile/testdata/browser/console.js
//
// Environment: CONSOLE_URL, USER_DATA_DIR (a fresh, empty directory),
// CHROMIUM (default /usr/bin/chromium), SCREENSHOT (optional PNG path),
// LOGIN and PASSWORD (default demo / demo).
"use strict";

const { chromium } = require("playwright-core");

const env = (name, def) => {
  const v = process.env[name];
  if (v === undefined || v === "") {
    if (def === undefined) throw new Error(`${name} is required`);
    return def;
  }
  return v;
};

async function main() {
  const url = env("CONSOLE_URL");
  const context = await chromium.launchPersistentContext(env("USER_DATA_DIR"), {
    executablePath: env("CHROMIUM", "/usr/bin/chromium"),
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
    viewport: { width: 1280, height: 1000 },
  });
  const out = { steps: [], consoleErrors: [], pageErrors: [] };
  try {
    const page = context.pages()[0] || (await context.newPage());
    // Generous: each login hashes a password, which is slow under -race
    // on a busy machine. A page that is broken fails fast anyway (below).
    page.setDefaultTimeout(120000);
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") out.consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => out.pageErrors.push(String(e)));

    const resp = await page.goto(url);
    out.pageStatus = resp.status();
    out.csp = resp.headers()["content-security-policy"] || "";
    out.defaults = await page.evaluate(() => ({
      host: document.getElementById("host").value,
      prefix: document.getElementById("prefix").value,
      protectedURL: document.getElementById("protected-url").value,
      origin: location.origin,
    }));
    if (!out.defaults.host) {
      throw new Error("the console's script did not run; browser console: " + JSON.stringify(out.consoleErrors));
    }

    const text = (sel) => page.locator(sel).textContent();
    // click presses a button and waits until the page reports the action
    // finished (the status element's data-seq moves on).
    const click = async (step, id) => {
      const before = Number((await page.locator("#status").getAttribute("data-seq")) || 0);
      await page.click("#" + id);
      await page.waitForFunction(
        (n) => Number(document.getElementById("status").dataset.seq || 0) > n,
        before,
      );
      const s = {
        step,
        status: await text("#status"),
        body: await text("#response-body"),
        headers: await text("#response-headers"),
        userId: await text("#user-id"),
        tokenState: await text("#token-state"),
        claims: await text("#claims"),
      };
      out.steps.push(s);
      return s;
    };

    await click("protected-before-login", "btn-protected");
    // Another origin is refused by the page itself (connect-src 'self').
    await page.fill("#host", "http://127.0.0.1:9");
    await click("other-origin", "btn-authenticate");
    await page.fill("#host", out.defaults.host);
    await page.fill("#login", env("LOGIN", "demo"));
    await page.fill("#password", env("PASSWORD", "demo"));
    await click("authenticate", "btn-authenticate");
    await click("protected", "btn-protected");
    const shot = process.env.SCREENSHOT;
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    out.cookiesAfterLogin = (await context.cookies()).map((c) => ({
      name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite, path: c.path,
    }));
    out.pageCookie = await page.evaluate(() => document.cookie);
    out.webStorage = await page.evaluate(() => localStorage.length + sessionStorage.length);
    await click("refresh", "btn-refresh");
    await click("rotate", "btn-rotate");
    await click("protected-after-rotate", "btn-protected");
    await click("revoke", "btn-revoke");
    out.cookiesAfterRevoke = (await context.cookies()).map((c) => c.name);
    await click("refresh-after-revoke", "btn-refresh");
    await click("protected-after-revoke", "btn-protected");
    // Odoo's JSON-RPC envelope: the page wraps the body and unwraps "result".
    await page.check("#jsonrpc");
    await click("authenticate-jsonrpc", "btn-authenticate");
    await click("protected-jsonrpc", "btn-protected");
  } finally {
    await context.close();
  }
  process.stdout.write(JSON.stringify(out, null, 2) + "\n");
}

main().catch((e) => {
  process.stderr.write(String((e && e.stack) || e) + "\n");
  process.exit(1);
});
