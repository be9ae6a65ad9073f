// Drives the Wharf Manager's console in headless Chromium, as an administrator would: log in
// with a password and a one-time code, create an account with a key and a rule, ask the rule
// tester, then (after the caller has the account upload a file over SFTP) see the upload on
// the dashboard and in the events, lift a ban, and check that an auditor sees the pages but
// is refused every change, and change the event handlers on the configuration page (check,
// see the diff, apply). Saves a screenshot of each page. Prints "READY" when the account
// exists and "APPLIED" when the new configuration is applied, and after each waits for a
// line on standard input; prints one JSON line at the end with what it saw, which the
// pytest caller checks.
//
// usage: node manager.mjs BASE_URL ADMIN PASSWORD CODE ACCOUNT KEY_FILE AUDITOR AUDITOR_PASSWORD BANNED OUT_DIR
import { launchChromium } from "./launch.mjs";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [base, admin, password, code, account, keyFile, auditor, auditorPassword, banned, out] =
  process.argv.slice(2);
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once("line", resolve));
const shot = (page, name) => page.screenshot({ path: join(out, `manager-${name}.png`), fullPage: true });

const browser = await launchChromium();
const result = {};
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("dialog", (d) => d.accept());

  await page.goto(base + "/");
  result.loginUrl = new URL(page.url()).pathname;
  await shot(page, "01-login");
  await page.fill("input[name=name]", admin);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.locator("input[name=code]").waitFor();
  await shot(page, "02-code");
  await page.fill("input[name=code]", code);
  await Promise.all([page.waitForURL(base + "/"), page.click("button[type=submit]")]);
  result.dashboardTitle = await page.textContent("h1");
  result.chart = await page.locator("svg.chart rect").count();
  await shot(page, "03-dashboard");

  // A new account with a key and a rule of its own.
  await page.click("a[href='/accounts']");
  await page.fill("input[name=name]", account);
  await page.fill("textarea[name=key]", readFileSync(keyFile, "utf8").trim());
  await page.fill("input[name=groups]", "partners");
  await page.fill("textarea[name=rules]", "/drop allow list,mkdir\n/drop/** allow list,write");
  await Promise.all([page.waitForURL(`**/accounts/${account}`), page.click("form[method=post][action='/accounts'] button[type=submit]")]);
  result.accountTitle = await page.textContent("h1");
  result.keyListed = await page.locator("section", { hasText: "Keys" }).locator("code").count();
  await shot(page, "04-account");
  // Its group, with the new member listed.
  await page.goto(base + "/groups/partners");
  result.groupMembers = await page.textContent("#members");
  await shot(page, "04-group");
  await page.goto(base + `/accounts/${account}`);

  // The rule tester, for a path the account's rule allows and one nothing allows.
  await page.selectOption("select[name=verb]", "write");
  await page.fill("input[name=path]", "/drop/invoice.csv");
  await page.click("form[method=get] button[type=submit]");
  result.allowed = await page.textContent("#verdict");
  await shot(page, "05-tester-allowed");
  await page.selectOption("select[name=verb]", "write");
  await page.fill("input[name=path]", "/invoice.csv");
  await page.click("form[method=get] button[type=submit]");
  result.refused = await page.textContent("#verdict");
  await shot(page, "06-tester-refused");

  console.log("READY");
  await nextLine();

  // The upload the caller made shows on the dashboard and in the events.
  await page.goto(base + "/");
  result.dashboardEvents = await page.locator("section", { hasText: "Latest events" }).textContent();
  result.transfers = await page.textContent("#transfers");
  await shot(page, "07-dashboard-upload");
  // The caller's SFTP session, open with its upload in flight.
  await page.goto(base + "/sessions");
  result.sessions = await page.textContent("#sessions");
  await shot(page, "07-sessions");
  await page.goto(base + `/events?account=${account}`);
  result.events = await page.locator("table").last().textContent();
  result.exportLinks = await page.locator("a[href^='/api/v1/events']").count();
  // The live tail: a change made in another tab shows up here without a reload.
  const other = await context.newPage();
  await other.goto(base + `/accounts/${account}`);
  await other.click("form:has(input[value=disable]) button");
  await page.locator("tr.live", { hasText: "account.updated" }).first().waitFor({ timeout: 15000 });
  result.liveRow = await page.locator("tr.live").first().textContent();
  await other.click("form:has(input[value=enable]) button");
  await other.close();
  await shot(page, "08-events");

  // Lift the ban the caller set.
  await page.goto(base + "/bans");
  result.bannedListed = await page.locator("td", { hasText: banned }).count();
  await shot(page, "09-bans");
  await page.click(`form:has(input[name=address][value='${banned}/32']) button`);
  await page.waitForURL("**/bans");
  result.bannedAfterLift = await page.locator("td", { hasText: banned }).count();
  // A handler added on the configuration page: checked (with its diff), then applied.
  await page.goto(base + "/configuration");
  result.configurationProblems = await page.textContent("#issues");
  const current = await page.inputValue("textarea[name=text]");
  await page.fill("textarea[name=text]", current +
    '\n[[handler]]\nname = "unique-names"\non = ["upload.finished"]\npath = "/drop/*"\n\n[handler.uuid-prefix]\n');
  await page.click("button[value=check]");
  result.diff = await page.textContent("#diff");
  await shot(page, "10-configuration-diff");
  await page.click("button[value=apply]");
  result.applied = await page.textContent("#outcome");
  await shot(page, "11-configuration-applied");
  console.log("APPLIED");
  await nextLine();
  // The cluster's shared sections: none published yet, so the file's own are offered.
  await page.goto(base + "/configuration/cluster");
  result.clusterRevision = await page.textContent("#revision");
  await page.click("button[value=check]");
  result.clusterProblems = await page.textContent("#issues");
  await shot(page, "11b-cluster-configuration");
  await page.goto(base + "/admins");
  await shot(page, "12-admins");
  await page.goto(base + "/me");
  await shot(page, "13-me");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(base + "/");
  await shot(page, "14-phone");
  await Promise.all([page.waitForURL("**/login"), page.click("header .logout button")]);
  result.afterLogout = new URL(page.url()).pathname;
  result.consoleErrors = errors;

  // An auditor: every page, no change.
  const auditorContext = await browser.newContext({ ignoreHTTPSErrors: true });
  const view = await auditorContext.newPage();
  await view.goto(base + "/login");
  await view.fill("input[name=name]", auditor);
  await view.fill("input[name=password]", auditorPassword);
  await Promise.all([view.waitForURL(base + "/"), view.click("button[type=submit]")]);
  result.auditorPages = {};
  for (const path of ["/", "/accounts", `/accounts/${account}`, "/groups", "/groups/partners", "/events", "/sessions", "/bans", "/jobs", "/admins", "/me"]) {
    const response = await view.goto(base + path);
    result.auditorPages[path] = response.status();
  }
  // No form to change anything on the account pages (its own page keeps password and codes).
  result.auditorForms = 0;
  for (const path of ["/accounts", `/accounts/${account}`, "/groups", "/groups/partners", "/sessions", "/bans", "/admins"]) {
    await view.goto(base + path);
    result.auditorForms += await view.locator("main form[method=post]").count();
  }
  await shot(view, "15-auditor");
  // The forms are not shown; a change sent anyway (with the session's own CSRF token) is refused.
  const refusedStatus = await view.evaluate(async (name) => {
    const csrf = document.querySelector("meta[name=csrf-token]").content;
    const body = new URLSearchParams({ csrf, action: "disable" });
    const response = await fetch(`/accounts/${name}`, { method: "POST", body });
    return response.status;
  }, account);
  result.auditorChange = refusedStatus;
  await view.goto(base + `/accounts/${account}`);
  await shot(view, "16-auditor-account");
  result.auditorConfiguration = (await view.goto(base + "/configuration")).status();
  result.auditorClusterConfiguration = (await view.goto(base + "/configuration/cluster")).status();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(0);
