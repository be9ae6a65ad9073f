// Logs in to the Wharf web client with a password and then a one-time code (the second
// step), in headless Chromium: a wrong code first, then the right one. Prints one JSON line
// with what it saw; the pytest caller checks it.
//
// usage: node second-factor.mjs BASE_URL USER PASSWORD WRONG_CODE CODE OUT_DIR
import { launchChromium } from "./launch.mjs";
import { join } from "node:path";

const [base, user, password, wrongCode, code, out] = process.argv.slice(2);
const browser = await launchChromium();
const result = {};
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(base + "/login");
  await page.fill("input[name=user]", user);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");
  await page.locator("input[name=code]").waitFor();
  result.codeTitle = await page.textContent("h2");
  result.codeAutocomplete = await page.getAttribute("input[name=code]", "autocomplete");
  result.urlAfterPassword = new URL(page.url()).pathname;
  await page.screenshot({ path: join(out, "8-code.png"), fullPage: true });
  await page.fill("input[name=code]", wrongCode);
  await page.click("button[type=submit]");
  result.wrongCode = (await page.textContent(".error")) || "";
  // The refused code's page is a 401, which Chromium reports in the console; what matters
  // from here is that the folder page loads cleanly.
  errors.length = 0;
  await page.fill("input[name=code]", code);
  await Promise.all([page.waitForURL("**/browse/"), page.click("button[type=submit]")]);
  result.afterCode = new URL(page.url()).pathname;
  result.consoleErrors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
