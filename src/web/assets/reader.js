// The Signals reader, made better with a little script; every page works without it.
// - Choosing a filter applies it at once (it is a plain GET form: the URL holds the view, so a
//   link shares it and back and forward work).
// - More signals load at the end of the page: the "More signals" link (which carries the
//   list's next_cursor) is fetched and its cards appended.
// - New signals arrive from /v1/signals/stream with the page's filters: a notice counts them,
//   and showing them puts them on top (the page does not jump while one reads).
"use strict";
(() => {
  const feed = document.getElementById("feed");
  const form = document.querySelector("form.filters");
  if (form) {
    form.addEventListener("change", (event) => {
      if (event.target instanceof HTMLSelectElement) form.requestSubmit();
    });
    // Empty fields stay out of the URL.
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) {
        if (String(value).trim() !== "") params.append(name, String(value).trim());
      }
      const query = params.toString();
      location.assign(query ? `/?${query}` : "/");
    });
  }
  if (!feed) return;

  // The cards of a feed page (the server renders them: one template for both) and its next link.
  async function cardsOf(url) {
    const res = await fetch(url, { headers: { Accept: "text/html" } });
    if (!res.ok) throw new Error(`${res.status} from ${url}`);
    const page = new DOMParser().parseFromString(await res.text(), "text/html");
    const next = page.getElementById("more");
    return {
      cards: [...page.querySelectorAll("#feed > li")],
      next: next ? next.getAttribute("href") : null,
    };
  }
  const shown = () => new Set([...feed.children].map((li) => li.dataset.id));

  const more = document.getElementById("more");
  if (more && "IntersectionObserver" in window) {
    // The link stays in place as what is watched, out of sight: the list grows above it, and
    // nothing the reader sees moves.
    document.documentElement.classList.add("more-on-scroll");
    let loading = false;
    const observer = new IntersectionObserver(async (entries) => {
      if (loading || !entries.some((e) => e.isIntersecting)) return;
      loading = true;
      try {
        const { cards, next } = await cardsOf(more.href);
        const have = shown();
        feed.append(...cards.filter((li) => !have.has(li.dataset.id)).map((li) => document.adoptNode(li)));
        if (next) {
          more.href = next;
        } else {
          observer.disconnect();
          more.closest("nav").remove();
        }
      } catch {
        // The link still works by hand.
      } finally {
        loading = false;
      }
    }, { rootMargin: "400px 0px" });
    observer.observe(more);
  }

  const notice = document.getElementById("live");
  const stream = feed.dataset.stream;
  if (notice && stream && "EventSource" in window) {
    const button = notice.querySelector("button");
    let fresh = 0;
    const source = new EventSource(stream);
    const since = feed.dataset.since ? Date.parse(feed.dataset.since) : -Infinity;
    const until = feed.dataset.until ? Date.parse(feed.dataset.until) : Infinity;
    source.addEventListener("signal.created", (event) => {
      const at = Date.parse(JSON.parse(event.data).published_at);
      if (!(at >= since && at < until)) return;
      fresh += 1;
      button.textContent = fresh === 1 ? "1 new signal" : `${fresh} new signals`;
      notice.hidden = false;
    });
    button.addEventListener("click", async () => {
      const first = new URL(location.href);
      first.searchParams.delete("cursor");
      try {
        const { cards } = await cardsOf(first);
        const have = shown();
        const added = cards.filter((li) => !have.has(li.dataset.id)).map((li) => document.adoptNode(li));
        feed.prepend(...added);
        fresh = 0;
        notice.hidden = true;
        window.scrollTo({ top: 0 });
        added[0]?.querySelector("a")?.focus({ preventScroll: true });
      } catch {
        location.reload();
      }
    });
    addEventListener("pagehide", () => source.close());
  }
})();
