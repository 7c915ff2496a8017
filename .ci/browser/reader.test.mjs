// The reader in a real Chromium (Debian's, driven by playwright-core): run by .ci/browser-tests
// against the service binary on a fresh database. Every test also fails on a console error,
// a page error, or a request to another origin.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";

const require = createRequire(`${process.env.TOOLS ?? process.cwd()}/`);
const { chromium } = require("playwright-core");

const BASE = process.env.SIGNALS_URL;
const KEY = process.env.SIGNALS_KEY;
const SHOTS = process.env.SHOTS;
const ORIGIN = new URL(BASE).origin;

// The seed (shared/seed/example-signal.txt), as a script would post it.
const SEED = {
  slug: "deepseek-targets-45b-valuation",
  title: "DeepSeek targets $45B valuation in its first funding round following highly efficient LLM releases",
  summary:
    "DeepSeek's $45B valuation validates algorithmic efficiency over brute-force compute scaling. By achieving frontier-level performance with architectural innovations like latent attention and fine-grained MoE routing, they proved hardware constraints can be offset by systems engineering. This forces the industry to pivot from pure scale to rigorous algorithmic optimization.",
  body: "DeepSeek, the Chinese AI research lab that disrupted the generative AI landscape in early 2025, is reportedly targeting a $45 billion valuation in its inaugural funding round. This massive valuation reflects the market's recognition of a fundamental shift in AI development: the rise of algorithmic efficiency as a counterweight to brute-force compute scaling.",
  score: 7,
  category: "Industry",
  published_at: "2026-05-06T18:02:00Z",
  sections: [
    { heading: "Technical Context", body: "DeepSeek's meteoric rise is driven by heavily optimized model architectures, most notably their implementation of Multi-head Latent Attention (MLA) and the DeepSeekMoE (Mixture of Experts) architecture." },
    { heading: "Why It Matters", body: "From an engineering perspective, DeepSeek's success is a wake-up call. This $45B valuation validates a \"smart scaling\" approach." },
    { heading: "What to Watch Next", body: "Keep an eye on how US-based labs pivot their research pipelines." },
  ],
  tags: ["DeepSeek", "LLM", "Algorithmic Efficiency", "Venture Capital", "AI Architecture"],
  source_url: "https://example.com/original-story",
};

async function post(path, body) {
  const res = await fetch(`${BASE}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}` },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.ok, `${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

let browser;
const problems = [];

/// A page that records console errors, page errors and requests to other origins.
async function open(context, path) {
  const page = await context.newPage();
  page.on("console", (m) => {
    // The 404 page the tests ask for on purpose is reported by Chromium as a failed load.
    if (m.type() === "error" && !m.location().url.endsWith("/s/no-such-signal")) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => {
    const url = r.url();
    if (!url.startsWith("data:") && new URL(url).origin !== ORIGIN) problems.push(`request to another origin: ${url}`);
  });
  if (path) await page.goto(`${BASE}${path}`);
  return page;
}

before(async () => {
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  await post("/v1/signals", SEED);
  const categories = ["Research", "Policy", "Security", "Hardware"];
  const items = Array.from({ length: 45 }, (_, i) => ({
    slug: `signal-${i}`,
    title: `Signal number ${i} about ${categories[i % 4]}`,
    summary: `Why signal ${i} matters.`,
    score: i % 11,
    category: categories[i % 4],
    published_at: new Date(Date.UTC(2026, 4, 1, 0, i)).toISOString(),
    tags: [`tag${i % 3}`],
  }));
  items.push({ slug: "markup", title: "<script>alert('x')</script> & <b>bold</b>", score: 3, category: "Research" });
  await post("/v1/signals/batch", { items });
});

after(async () => {
  await browser?.close();
  assert.deepEqual(problems, [], "no console errors, page errors or requests to other origins");
});

test("the feed shows the seed as the seed does, light and small", async () => {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await open(context);
  const responses = [];
  page.on("response", (r) => responses.push(r));
  await page.goto(`${BASE}/`, { waitUntil: "load" });
  const seed = page.locator("#feed > li", { hasText: "DeepSeek targets $45B" });
  await seed.waitFor();
  const meta = await seed.locator(".meta").innerText();
  assert.equal(meta, "7/10 · Industry · 6 May 2026, 18:02 UTC");
  assert.equal(await seed.locator("h2 a").getAttribute("href"), `/s/${SEED.slug}`);
  assert.match(await seed.locator(".summary").innerText(), /validates algorithmic efficiency/);
  // Escaped: the title with markup is text.
  assert.equal(await page.locator("#feed h2 a", { hasText: "<script>" }).count(), 1);

  // One HTML response and at most three files, each with a validator, under 100 KB in all.
  const firstView = responses.filter((r) => ["document", "stylesheet", "script", "image", "font"].includes(r.request().resourceType()));
  assert.equal(firstView.filter((r) => r.request().resourceType() === "document").length, 1);
  assert.ok(firstView.length <= 4, `first view: ${firstView.map((r) => r.url()).join(", ")}`);
  let bytes = 0;
  for (const r of firstView) {
    assert.ok(r.headers().etag, `${r.url()} has an ETag`);
    const sizes = await r.request().sizes();
    bytes += sizes.responseBodySize + sizes.responseHeadersSize;
  }
  console.log(`first view: ${firstView.length} responses, ${bytes} bytes transferred`);
  assert.ok(bytes < 100 * 1024, `${bytes} bytes`);
  const fcp = await page.evaluate(() => performance.getEntriesByName("first-contentful-paint")[0]?.startTime);
  console.log(`time to first contentful paint: ${fcp?.toFixed(0)} ms`);
  await page.screenshot({ path: `${SHOTS}/feed-desktop.png` });
  await context.close();
});

test("filters change the list and the URL, and back and forward work", async () => {
  const context = await browser.newContext();
  const page = await open(context, "/");
  await page.selectOption("select[name=min_score]", "8");
  await page.waitForURL(/min_score=8/);
  const scores = await page.locator("#feed .score").allInnerTexts();
  assert.ok(scores.length > 0);
  for (const s of scores) assert.ok(parseInt(s, 10) >= 8, s);
  await page.selectOption("select[name=category]", "Research");
  await page.waitForURL(/category=Research/);
  assert.match(page.url(), /min_score=8/);
  const categories = await page.locator("#feed .category").allInnerTexts();
  assert.ok(categories.length > 0);
  for (const c of categories) assert.equal(c, "Research");
  await page.goBack();
  await page.waitForURL((u) => !u.search.includes("category"));
  assert.ok((await page.locator("#feed .category").allInnerTexts()).some((c) => c !== "Research"));
  await page.goForward();
  await page.waitForURL(/category=Research/);
  // A tag link of a signal page leads to the feed filtered by it.
  await page.goto(`${BASE}/?tag=tag1`);
  const count = await page.locator("#feed > li").count();
  assert.equal(count, 15);
  await context.close();
});

test("scrolling loads the next pages with no duplicate and no layout shift", async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await open(context, "/");
  await page.evaluate(() => {
    window.__shift = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (!e.hadRecentInput) window.__shift += e.value;
    }).observe({ type: "layout-shift", buffered: false });
  });
  assert.equal(await page.locator("#feed > li").count(), 20);
  for (const want of [40, 47]) {
    await page.mouse.wheel(0, 100000);
    await page.waitForFunction((n) => document.querySelectorAll("#feed > li").length >= n, want);
  }
  const ids = await page.locator("#feed > li").evaluateAll((lis) => lis.map((li) => li.dataset.id));
  assert.equal(ids.length, 47);
  assert.equal(new Set(ids).size, 47, "no duplicate");
  assert.equal(await page.locator("#more").count(), 0, "the last page has no More link");
  const shift = await page.evaluate(() => window.__shift);
  console.log(`layout shift while loading more: ${shift}`);
  assert.ok(shift < 0.01, `layout shift ${shift}`);
  await context.close();
});

test("a signal posted through the API is announced on an open feed within 2 s", async () => {
  const context = await browser.newContext();
  const page = await open(context, "/?min_score=9&since=2020-01-01T00:00:00Z");
  await page.waitForFunction(() => document.getElementById("feed").dataset.stream);
  // Let the stream connect.
  await page.waitForTimeout(500);
  const started = Date.now();
  await post("/v1/signals", { title: "Fresh from the wire", score: 9, category: "Policy" });
  await page.locator("#live button", { hasText: "1 new signal" }).waitFor({ timeout: 2000 });
  console.log(`announced after ${Date.now() - started} ms`);
  // One that does not match the page's filters is not counted.
  await post("/v1/signals", { title: "Too low to show", score: 2, category: "Policy" });
  // Nor one older than the page's times (the stream has no time filters: the page checks them).
  await post("/v1/signals", { title: "Too old to show", score: 9, category: "Policy", published_at: "2019-05-06T18:02:00Z" });
  await page.waitForTimeout(500);
  assert.equal(await page.locator("#live button").innerText(), "1 new signal");
  await page.locator("#live button").click();
  await page.locator("#feed > li:first-child", { hasText: "Fresh from the wire" }).waitFor();
  assert.ok(await page.locator("#live").isHidden());
  await context.close();
});

test("a signal's page reads without JavaScript, and an unknown slug is a 404 page", async () => {
  const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1440, height: 900 } });
  const page = await open(context, `/s/${SEED.slug}`);
  assert.equal(await page.title(), `${SEED.title} · Signals`);
  const description = await page.locator("meta[name=description]").getAttribute("content");
  assert.ok(description.startsWith("DeepSeek's $45B valuation"));
  await page.getByRole("link", { name: "Back to feed" }).waitFor();
  assert.equal(await page.locator(".meta").innerText(), "7/10 · Industry · 6 May 2026, 18:02 UTC");
  assert.equal(await page.locator("h1").innerText(), SEED.title);
  assert.match(await page.locator("article .summary").innerText(), /validates algorithmic efficiency/);
  assert.match(await page.locator("article").innerText(), /reportedly targeting a \$45 billion valuation/);
  assert.deepEqual(await page.locator("article section h2").allInnerTexts(), SEED.sections.map((s) => s.heading));
  const tags = page.locator("ul.tags a");
  assert.deepEqual(await tags.allInnerTexts(), SEED.tags);
  assert.equal(await tags.first().getAttribute("href"), "/?tag=DeepSeek");
  await page.screenshot({ path: `${SHOTS}/signal-desktop.png`, fullPage: true });
  const missing = await page.goto(`${BASE}/s/no-such-signal`);
  assert.equal(missing.status(), 404);
  assert.match(await page.locator("main").innerText(), /no signal at this address/i);
  await context.close();
});

test("readable at 360 px, in dark mode, and usable from the keyboard", async () => {
  const context = await browser.newContext({ viewport: { width: 360, height: 780 }, colorScheme: "dark" });
  const page = await open(context, "/");
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `no sideways scrolling at 360 px (${width})`);
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(background, "rgb(255, 255, 255)", "dark from the system setting");
  await page.screenshot({ path: `${SHOTS}/feed-mobile.png` });
  // Tab to the first signal's title link and open it with Enter.
  const title = await page.locator("#feed > li:first-child h2 a").innerText();
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press("Tab");
    if ((await page.evaluate(() => document.activeElement?.textContent)) === title) break;
  }
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/s\//);
  await page.screenshot({ path: `${SHOTS}/signal-mobile.png`, fullPage: true });
  await page.goto(`${BASE}/s/${SEED.slug}`);
  const signalWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(signalWidth <= 360, `the signal page fits 360 px (${signalWidth})`);
  await page.screenshot({ path: `${SHOTS}/signal-mobile.png`, fullPage: true });
  await context.close();
});
