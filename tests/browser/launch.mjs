// Starts Debian's headless Chromium for the web-client scripts, with the flags that keep it
// from reaching anything but the Wharf under test (no sync, no updates, no QUIC).
import { chromium } from "playwright-core";

export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
