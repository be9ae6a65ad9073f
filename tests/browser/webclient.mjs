// Drives the Wharf web client in headless Chromium: log in, upload files (picker and drag
// and drop) and watch their progress bars, download one back, try a refused upload, sort,
// rename, delete, make a folder, log out. Saves a screenshot of
// each page. Prints one JSON line with what it saw; the pytest caller checks it.
//
// usage: node webclient.mjs BASE_URL USER PASSWORD UPLOAD_FILE REFUSED_FILE OUT_DIR
import { launchChromium } from "./launch.mjs";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [base, user, password, uploadFile, refusedFile, out] = process.argv.slice(2);
const sha256 = (path) => createHash("sha256").update(readFileSync(path)).digest("hex");

const browser = await launchChromium();
const result = {};
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true,
                                              viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  await page.goto(base + "/");
  result.loginUrl = new URL(page.url()).pathname;
  await page.screenshot({ path: join(out, "1-login.png"), fullPage: true });

  await page.fill("input[name=user]", user);
  await page.fill("input[name=password]", "wrong-password");
  await page.click("button[type=submit]");
  result.badLogin = (await page.textContent(".error")) || "";
  await page.screenshot({ path: join(out, "2-login-refused.png"), fullPage: true });

  await page.fill("input[name=user]", user);
  await page.fill("input[name=password]", password);
  await Promise.all([page.waitForURL("**/browse/"), page.click("button[type=submit]")]);
  await page.screenshot({ path: join(out, "3-folder.png"), fullPage: true });

  // Two files at once through the picker, each with its own progress bar.
  const name = uploadFile.split("/").pop();
  const notes = join(out, "notes.txt");
  writeFileSync(notes, "second file of a multi-file upload\n");
  await page.setInputFiles("#picker", [uploadFile, notes]);
  await page.locator("#uploads li.ok").nth(1).waitFor({ timeout: 30000 });
  result.pickedOk = await page.locator("#uploads li.ok .file").allTextContents();
  const done = page.locator("#uploads li.ok", { hasText: name });
  result.progress = await done.locator("progress").evaluate((p) => [p.value, p.max]);
  result.uploadState = await done.locator(".state").textContent();
  await page.locator('tr[data-name="notes.txt"]').waitFor();
  await page.locator(`tr[data-name="${name}"]`).waitFor();
  await page.screenshot({ path: join(out, "4-uploaded.png"), fullPage: true });

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.click(`tr[data-name="${name}"] a`),
  ]);
  const saved = join(out, "downloaded-" + name);
  await download.saveAs(saved);
  result.downloadSha = sha256(saved);

  await page.setInputFiles("#picker", refusedFile);
  const refused = page.locator("#uploads li.refused");
  await refused.waitFor({ timeout: 30000 });
  result.refusedState = await refused.locator(".state").textContent();
  // The page says how the batch went once it has listed the folder again.
  await page.locator("#messages", { hasText: "not uploaded" }).waitFor({ timeout: 30000 })
    .catch(() => {});
  result.message = await page.textContent("#messages");
  await page.screenshot({ path: join(out, "5-refused.png"), fullPage: true });

  // Drag and drop two files onto the listing.
  const dropped = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["dropped on the list\n"], "dropped.txt", { type: "text/plain" }));
    dt.items.add(new File(["x".repeat(3000)], "dropped-too.txt", { type: "text/plain" }));
    return dt;
  });
  await page.dispatchEvent("#drop", "drop", { dataTransfer: dropped });
  await page.locator('tr[data-name="dropped.txt"]').waitFor();
  await page.locator('tr[data-name="dropped-too.txt"]').waitFor();

  // Sorting by size, then again for the reverse order.
  const names = () => page.locator("#entries tbody tr[data-kind=file]").evaluateAll(
    (rows) => rows.map((r) => r.dataset.name));
  await page.click("button[data-sort=size]");
  result.bySize = await names();
  await page.click("button[data-sort=size]");
  result.bySizeReversed = await names();

  // Rename and delete answer dialogs: a prompt for the name, a confirmation.
  let answer = "renamed.txt";
  page.on("dialog", (d) => (d.type() === "confirm" ? d.accept() : d.accept(answer)));
  await page.click('tr[data-name="dropped.txt"] button.rename');
  await page.locator('tr[data-name="renamed.txt"]').waitFor();
  result.confirmSeen = false;
  page.once("dialog", (d) => { result.confirmSeen = d.type() === "confirm"; });
  await page.click('tr[data-name="renamed.txt"] button.delete');
  await page.locator('tr[data-name="renamed.txt"]').waitFor({ state: "detached" });
  await page.screenshot({ path: join(out, "5b-renamed-deleted.png"), fullPage: true });

  answer = "reports";
  await page.click("#new-folder");
  await page.locator('tr[data-name="reports"]').waitFor();
  await page.click('tr[data-name="reports"] a');
  await page.waitForURL("**/browse/reports/");
  await page.screenshot({ path: join(out, "6-subfolder.png"), fullPage: true });

  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(out, "7-phone.png"), fullPage: true });

  await Promise.all([page.waitForURL("**/login"), page.click("#logout")]);
  await page.goto(base + "/browse/");
  result.afterLogout = new URL(page.url()).pathname;
  // The wrong password (401) and the refused .exe (403) are expected to fail.
  result.consoleErrors = errors.filter((e) => !/status of (401|403)/.test(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
