// SPDX-License-Identifier: MIT
// Drives llamalb's status page in Debian's headless chromium through
// puppeteer-core (tests/integration/t70-status-page.py starts the balancer
// and sims and answers this script's requests on stdin/stdout).
//
// Usage: node status_page.js ADMIN_URL TOKEN SCREENSHOT.png
// Prints one JSON object per line: {"ok":bool,"name":"..."} for a check,
// {"note":"..."} for a comment, {"ask":"eject"} when the test should eject
// backend "b" (it answers with a line on stdin), {"done":true} at the end.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");
const puppeteer = require("puppeteer-core");

const [base, TOKEN, shot] = process.argv.slice(2);
const origin = new URL(base).origin;
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const check = (cond, name) => out({ ok: !!cond, name });
const note = (s) => out({ note: String(s) });

const rl = readline.createInterface({ input: process.stdin });
const lines = [];
let waiter = null;
rl.on("line", (l) => { if (waiter) { const w = waiter; waiter = null; w(l); } else lines.push(l); });
const ask = (what) => new Promise((resolve) => {
  out({ ask: what });
  if (lines.length) resolve(lines.shift()); else waiter = resolve;
});

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "llamalb-chromium-"));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    userDataDir: profile,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--disable-extensions", "--no-default-browser-check",
           "--force-color-profile=srgb"],
    defaultViewport: { width: 1280, height: 860 },
    timeout: 30000,
  });
  try {
    const page = await browser.newPage();
    const requests = [], consoleErrors = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning")
        consoleErrors.push(m.type() + ": " + m.text() + " @ " + ((m.location() || {}).url || ""));
    });
    page.on("pageerror", (e) => consoleErrors.push("pageerror: " + e.message));
    const visible = (sel) => page.$eval(sel, (e) => !e.classList.contains("hide") &&
                                        getComputedStyle(e).display !== "none");
    const rows = () => page.$$eval("#backends tbody tr", (trs) =>
      trs.map((tr) => ({ name: tr.dataset.backend, state: tr.dataset.state,
                         text: tr.innerText })));

    // 1. No token: only the login box.
    await page.goto(base + "/", { waitUntil: "load", timeout: 15000 });
    await page.waitForSelector("#login:not(.hide)", { timeout: 10000 });
    check(await visible("#login"), "without a token the login box shows");
    check(!(await visible("#app")), "... and the dashboard does not");
    check((await rows()).length === 0, "... nor any backend");

    // 2. A wrong token is refused and not kept.
    await page.type("#token", "not-the-token-not-the-token");
    await page.click("#signin");
    await page.waitForFunction(() => /refused/.test(document.getElementById("loginerr").textContent),
                               { timeout: 10000 });
    check(true, "a wrong token is refused");
    check(await page.evaluate(() => sessionStorage.length === 0), "... and not stored");

    // 3. The right one shows the backends.
    check(await page.$eval("#token", (e) => e.value === ""), "... and the box is emptied");
    await page.type("#token", TOKEN);
    await page.click("#signin");
    await page.waitForFunction(() => document.querySelectorAll("#backends tbody tr").length >= 2,
                               { timeout: 10000 });
    let r = await rows();
    check(r.length === 2 && r.map((x) => x.name).sort().join() === "a,b", "both backends listed");
    check(r.every((x) => x.state === "up"), "both up");
    check(await page.evaluate((t) => sessionStorage.getItem("llamalb.token") === t, TOKEN),
          "the token is kept in sessionStorage");
    check(await page.evaluate(() => document.cookie === ""), "no cookie");
    check(!page.url().includes(TOKEN) && requests.every((u) => !u.includes(TOKEN)),
          "the token is in no URL");
    const models = await page.$$eval("#models tbody tr", (t) => t.map((x) => x.dataset.model));
    check(models.includes("m1"), "per-model rows (m1)");
    const hdr = await page.$eval("header", (e) => e.innerText);
    check(/v\d+\.\d+/.test(hdr) && /policy least/.test(hdr) && /worker/.test(hdr),
          "build shown (version, policy, workers)");
    check(/role active/.test(hdr), "the replica role shown (active: it follows no one)");

    // 4. A reload in the same tab needs no token and logs nothing.
    const before = consoleErrors.length;
    await page.reload({ waitUntil: "load" });
    await page.waitForFunction(() => document.querySelectorAll("#backends tbody tr").length >= 2,
                               { timeout: 10000 });
    check(!(await visible("#login")), "after a reload the tab is still signed in");
    check(consoleErrors.length === before, "a signed-in load logs no console error or warning");

    // 5. Ejection shows within a few polls.
    await ask("eject");
    try {
      await page.waitForFunction(() => {
        const tr = document.querySelector('#backends tr[data-backend="b"]');
        return tr && tr.dataset.state === "ejected";
      }, { timeout: 12000 });
      check(true, "the page shows backend b ejected");
    } catch (e) {
      check(false, "the page shows backend b ejected");
    }
    r = await rows();
    check(r.find((x) => x.name === "a").state === "up", "a stays up");
    // Let the charts gather a few points, then the picture.
    await ask("traffic");
    await new Promise((res) => setTimeout(res, Number(process.env.SHOT_WAIT_MS || 4000)));
    await page.screenshot({ path: shot, fullPage: true });
    check(fs.statSync(shot).size > 10000, "screenshot saved");

    // 6. Sign out: back to the login box, the token gone.
    await page.click("#signout");
    check(await visible("#login") && !(await visible("#app")), "sign out shows the login box");
    check(await page.evaluate(() => sessionStorage.length === 0), "... and forgets the token");

    const outside = requests.filter((u) => !u.startsWith(origin + "/") && !u.startsWith("data:"));
    check(outside.length === 0, "no request leaves the admin origin");
    if (outside.length) note("outside: " + outside.join(" "));
    // Only the refused token's 401s (sign-in attempts) may show as errors.
    const unexpected = consoleErrors.filter((e) =>
      !/status of 401/.test(e) || !e.includes(origin + "/api/stats"));
    check(unexpected.length === 0, "no console error but the refused tokens' 401s");
    unexpected.forEach(note);
    note("requests: " + requests.length + ", distinct paths: " +
         [...new Set(requests.map((u) => u.startsWith(origin) ? new URL(u).pathname : u))].join(" "));
  } finally {
    await browser.close();
  }
}

main().then(() => { out({ done: true }); process.exit(0); },
            (e) => { out({ ok: false, name: "browser script: " + (e && e.stack || e) }); process.exit(1); });
