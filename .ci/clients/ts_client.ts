// Drive the service through openapi-fetch typed by the `paths` that openapi-typescript generated
// from openapi/openapi.json (./schema.d.ts, generated next to this file by .ci/checkers).
// Type-checked with `tsc --noEmit` (strict), then compiled and run with node.
//
// Environment: SIGNALS_URL (base URL of the running service), SIGNALS_KEY (a write or admin key).
// Creates two signals in a category of its own, reads one back by id and by slug, lists with
// min_score and checks what comes back. Exits non-zero on the first mismatch.

import createClient from "openapi-fetch";
import { randomUUID } from "node:crypto";
import type { components, paths } from "./schema.js";

type Signal = components["schemas"]["Signal"];
type SignalInput = components["schemas"]["SignalInput"];

function check(cond: boolean, what: string): asserts cond {
  if (!cond) {
    console.error(`ts client: FAILED: ${what}`);
    process.exit(1);
  }
}

const baseUrl = process.env.SIGNALS_URL;
const key = process.env.SIGNALS_KEY;
check(baseUrl !== undefined && key !== undefined, "SIGNALS_URL and SIGNALS_KEY must be set");

const writer = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });
const reader = createClient<paths>({ baseUrl }); // reads are public

const run = randomUUID().slice(0, 12);
const category = `Checker Ts ${run}`;
const publishedAt = "2026-05-06T20:02:00+02:00"; // stored and returned in UTC

const highIn: SignalInput = {
  title: `TypeScript client signal ${run}`,
  score: 9,
  category,
  published_at: publishedAt,
  summary: "Created by openapi-fetch.",
  body: "The lede paragraph.",
  sections: [
    { heading: "Technical Context", body: "First section." },
    { heading: "Why It Matters", body: "Second section." },
  ],
  tags: ["Checker", "TypeScript"],
  source_url: "https://example.com/ts-client",
};
const lowIn: SignalInput = { title: `TypeScript client low signal ${run}`, score: 2, category };

// create
const created = await writer.POST("/v1/signals", { body: highIn });
check(created.response.status === 201, `create: status ${created.response.status}: ${JSON.stringify(created.error)}`);
check(created.data !== undefined, "create: no data");
const high: Signal = created.data;
check(created.response.headers.get("location") === `/v1/signals/${high.id}`,
  `create: Location ${created.response.headers.get("location")}`);
check(!!created.response.headers.get("etag"), "create: no ETag");
check(high.title === highIn.title, `create: title ${high.title}`);
check(high.score === 9, `create: score ${high.score}`);
check(high.category === category, `create: category ${high.category}`);
check(high.published_at === "2026-05-06T18:02:00Z", `create: published_at ${high.published_at}`);
check(JSON.stringify(high.sections) === JSON.stringify(highIn.sections), `create: sections ${JSON.stringify(high.sections)}`);
check(JSON.stringify(high.tags) === JSON.stringify(highIn.tags), `create: tags ${JSON.stringify(high.tags)}`);
check(high.source_url === "https://example.com/ts-client", `create: source_url ${high.source_url}`);
check(high.slug.length > 0, "create: empty slug");

const createdLow = await writer.POST("/v1/signals", { body: lowIn });
check(createdLow.response.status === 201 && createdLow.data !== undefined,
  `create low: status ${createdLow.response.status}: ${JSON.stringify(createdLow.error)}`);
const low: Signal = createdLow.data;

// get by id and by slug
for (const idOrSlug of [high.id, high.slug]) {
  const got = await reader.GET("/v1/signals/{id_or_slug}", { params: { path: { id_or_slug: idOrSlug } } });
  check(got.response.status === 200, `get ${idOrSlug}: status ${got.response.status}: ${JSON.stringify(got.error)}`);
  check(got.data !== undefined, `get ${idOrSlug}: no data`);
  check(JSON.stringify(got.data) === JSON.stringify(high), `get ${idOrSlug}: ${JSON.stringify(got.data)}`);
  check(!!got.response.headers.get("etag"), `get ${idOrSlug}: no ETag`);
}

// list with min_score
const listed = await reader.GET("/v1/signals", {
  params: { query: { min_score: 5, category: [category], include_total: true } },
});
check(listed.response.status === 200, `list: status ${listed.response.status}: ${JSON.stringify(listed.error)}`);
check(listed.data !== undefined, "list: no data");
// List items are Signal | SignalFields (with `fields=` only some fields come back).
const ids = listed.data.items.map((s) => s.id);
check(JSON.stringify(ids) === JSON.stringify([high.id]), `list min_score=5: ids ${JSON.stringify(ids)}`);
check(listed.data.items.every((s) => (s.score ?? -1) >= 5), "list min_score=5: a score below 5");
check(listed.data.total === 1, `list min_score=5: total ${listed.data.total}`);
check(listed.data.next_cursor == null, `list min_score=5: next_cursor ${listed.data.next_cursor}`);

const all = await reader.GET("/v1/signals", { params: { query: { min_score: 0, category: [category] } } });
check(all.data !== undefined, `list min_score=0: status ${all.response.status}: ${JSON.stringify(all.error)}`);
const allIds = all.data.items.map((s) => s.id).sort();
check(JSON.stringify(allIds) === JSON.stringify([high.id, low.id].sort()), `list min_score=0: ids ${JSON.stringify(allIds)}`);

console.log(`ts client: ok (created ${high.id} and ${low.id}, read by id and slug, listed with min_score)`);
