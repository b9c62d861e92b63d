// Drives the Parallelopedia search page in headless Chromium (Debian's, through
// playwright-core): type "Anar", see "Anarchism" among the results, click it, see the
// article text fetched with a ranged request. Usage: node search.mjs http://HOST:PORT/
// Exit 0 on success; a message and exit 1 otherwise.
import { chromium } from "playwright-core";

const url = process.argv[2];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const ranged = [];
  page.on("request", (r) => { if (r.url().endsWith("/xml")) ranged.push(r.headers()["range"]); });
  await page.goto(url);
  await page.locator("#q").pressSequentially("Anar", { delay: 30 });
  const hit = page.locator("#results li").filter({ has: page.locator(".t", { hasText: /^Anarchism$/ }) }).first();
  await hit.waitFor({ timeout: 10000 });
  await hit.click();
  await page.locator("#text").filter({ hasText: "is a [[political philosophy]]" }).waitFor({ timeout: 10000 });
  const title = await page.locator("#title").textContent();
  if (title !== "Anarchism") throw new Error(`article title ${JSON.stringify(title)}`);
  if (!ranged.length || !/^bytes=\d+-\d+$/.test(ranged[0])) throw new Error(`no ranged request: ${ranged}`);
  console.log(`ok: typed Anar, clicked Anarchism, fetched ${ranged[0]}, article shown`);
} catch (e) {
  console.error(`browser test failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
